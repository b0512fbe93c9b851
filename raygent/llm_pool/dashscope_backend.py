"""Qwen (and other DashScope models) through the official `dashscope` SDK's native API.

Uses `AioGeneration.call` on DashScope's own text-generation endpoint
(/api/v1/services/aigc/text-generation/generation) with `result_format="message"`, native
`tools` / `tool_choice`, and incremental SSE streaming (`X-DashScope-SSE: enable`), so each
streamed event carries only the new text or tool-call fragment. (DashScope's OpenAI-compatible
mode is reachable through OpenAICompatibleChatModel instead.)

The API key comes from `api_key`, $DASHSCOPE_API_KEY, a `.env` file (nearest one upwards from the
working directory), or the SDK's own key file, in that order.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from raygent.llm_pool import openai_wire as wire
from raygent.llm_pool.base import ChatModel, as_params
from raygent.llm_pool.errors import (
    BackendAuthError,
    BackendConfigError,
    BackendConnectionError,
    BackendError,
    BackendRateLimitError,
    BackendRequestError,
    BackendServerError,
)
from raygent.llm_pool.formats import ToolCallFormat, get_format
from raygent.llm_pool.text_tools import opens_like_call, parse_completion, render_plain
from raygent.schema import Completion, Delta, GenerationParams, Message, ToolSpec, Usage

API_KEY_ENV = "DASHSCOPE_API_KEY"


def dotenv_value(name: str) -> str | None:
    """`name` from the nearest .env file (the environment itself is not changed)."""
    try:
        from dotenv import dotenv_values, find_dotenv
    except ImportError:  # pragma: no cover - python-dotenv is a core dependency
        return None
    found = find_dotenv(usecwd=True)
    return (dotenv_values(found).get(name) or None) if found else None


def _plain(obj: Any) -> Any:
    """The SDK's DictMixin objects -> plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def usage_from_dashscope(usage: Any) -> Usage | None:
    u = _plain(usage) or {}
    if not u:
        return None
    prompt = int(u.get("input_tokens") or u.get("prompt_tokens") or 0)
    out = int(u.get("output_tokens") or u.get("completion_tokens") or 0)
    cached = int(((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=out, total_tokens=int(u.get("total_tokens") or prompt + out),
                 cached_prompt_tokens=cached)


class DashScopeChatModel(ChatModel):
    """Chat with tools and streaming on DashScope (qwen-plus, qwen-max, qwen-turbo, qwen3-*, ...).

    model: the DashScope model name.
    api_key / api_key_env: the key, or the variable holding it (default DASHSCOPE_API_KEY).
    base_url: the native API root (default: dashscope.base_http_api_url, which the SDK reads from
        $DASHSCOPE_HTTP_BASE_URL); e.g. the international endpoint
        https://dashscope-intl.aliyuncs.com/api/v1.
    format: "native" (DashScope tools) or a text format for models without tool support (the
        seed's modelscope-agent-llm-v1 spoke "msagent").
    workspace: a DashScope workspace id (sent as X-DashScope-WorkSpace).
    extra_parameters: other generation parameters (top_k, repetition_penalty, enable_search, ...).
    """

    backend_name = "dashscope"

    def __init__(self, model: str = "qwen-plus", *, api_key: str | None = None, api_key_env: str = API_KEY_ENV,
                 base_url: str | None = None, format: str | ToolCallFormat = "native", timeout: float = 120.0,
                 workspace: str | None = None, extra_parameters: Mapping[str, Any] | None = None,
                 model_name: str | None = None):
        if not model:
            raise BackendConfigError("the DashScope backend needs `model` (e.g. 'qwen-plus')", backend="dashscope")
        self.model = model
        self.model_name = model_name or model
        self._api_key = api_key
        self.api_key_env = api_key_env
        self.base_url = base_url.rstrip("/") if base_url else None
        self.format = get_format(format)
        self.timeout = timeout
        self.workspace = workspace
        self.extra_parameters = dict(extra_parameters or {})

    # -- configuration -----------------------------------------------------------------------
    def _sdk(self) -> Any:
        try:
            import dashscope
            from dashscope.aigc.generation import AioGeneration
        except ImportError as exc:
            raise BackendConfigError("the DashScope backend needs the dashscope SDK: pip install 'raygent[dashscope]'",
                                     backend=self.backend_name) from exc
        return dashscope, AioGeneration

    @property
    def url(self) -> str:
        """The API root requests go to (for messages; the SDK appends the service path)."""
        if self.base_url:
            return self.base_url
        dashscope, _ = self._sdk()
        return str(dashscope.base_http_api_url).rstrip("/")

    def api_key(self) -> str:
        key = self._api_key or os.environ.get(self.api_key_env) or dotenv_value(self.api_key_env)
        if key:
            return key
        try:
            from dashscope.common.api_key import get_default_api_key

            return get_default_api_key()  # the SDK's key file (~/.dashscope/api_key)
        except Exception:
            raise BackendConfigError(
                f"no DashScope API key: set {self.api_key_env} in the environment or a .env file (get one at "
                f"https://dashscope.console.aliyun.com/apiKey), or pass api_key=", url=self.url,
                backend=self.backend_name) from None

    @property
    def native_tools(self) -> bool:
        return self.format.name == "native"

    # -- requests ----------------------------------------------------------------------------
    def build_call(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, params: GenerationParams,
                   *, stream: bool) -> dict[str, Any]:
        """Keyword arguments for AioGeneration.call (what the SDK puts into input/parameters)."""
        kwargs: dict[str, Any] = {"model": self.model, "api_key": self.api_key(), "result_format": "message",
                                  "temperature": params.temperature, "top_p": params.top_p,
                                  "max_tokens": params.max_tokens, "request_timeout": self.timeout}
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if self.base_url:
            kwargs["base_address"] = self.base_url
        if self.workspace:
            kwargs["workspace"] = self.workspace
        if stream:
            kwargs.update(stream=True, incremental_output=True)
        if self.native_tools:
            msgs = wire.messages_to_openai(messages)
            for m in msgs:  # DashScope wants "" rather than null beside tool calls
                if m["content"] is None:
                    m["content"] = ""
            kwargs["messages"] = msgs
            stop = list(params.stop)
            if tools:
                kwargs["tools"] = wire.tools_to_openai(tools)
                kwargs["tool_choice"] = self._tool_choice(params.tool_choice, tools)
        else:
            kwargs["messages"], stop = render_plain(self.format, messages, tools, params)
        if stop:
            kwargs["stop"] = stop
        kwargs.update(self.extra_parameters)
        return kwargs

    @staticmethod
    def _tool_choice(choice: str, tools: Sequence[ToolSpec]) -> str | dict[str, Any]:
        """DashScope takes "auto", "none" or a named function; "required" with one tool names it."""
        if choice == "required":
            return wire.tool_choice_to_openai(tools[0].name) if len(tools) == 1 else "auto"
        return wire.tool_choice_to_openai(choice)

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        _, AioGeneration = self._sdk()
        try:
            return await AioGeneration.call(**kwargs)
        except Exception as exc:
            raise self._map_exception(exc) from exc

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        p = as_params(params)
        response = await self._call(self.build_call(messages, tools, p, stream=False))
        self._check(response)
        output = _plain(response.output) or {}
        choices = output.get("choices") or []
        if not choices:  # result_format "text" shape, in case a model ignores result_format
            choices = [{"message": {"role": "assistant", "content": output.get("text") or ""},
                        "finish_reason": output.get("finish_reason")}]
        body = {"model": self.model, "choices": [{"index": 0, "message": choices[0].get("message") or {},
                                                  "finish_reason": choices[0].get("finish_reason")}]}
        completion = wire.completion_from_response(body, tools if self.native_tools else None)
        completion = completion.model_copy(update={"usage": usage_from_dashscope(response.usage) or Usage()})
        return completion if self.native_tools else parse_completion(self.format, completion, tools, p)

    async def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                     params: GenerationParams | dict | None = None) -> AsyncIterator[Delta]:
        """Incremental SSE events -> Deltas; tool-call fragments are joined into the final Delta."""
        p = as_params(params)
        responses = await self._call(self.build_call(messages, tools, p, stream=True))
        decoder = wire.ChunkDecoder(tools if self.native_tools else None)
        parse_text = not self.native_tools and bool(tools) and p.tool_choice != "none"
        held: bool | None = None if parse_text else False
        emitted = 0
        try:
            async for response in responses:
                self._check(response)
                output = _plain(response.output) or {}
                choices = output.get("choices") or [{"message": {"content": output.get("text") or ""},
                                                     "finish_reason": output.get("finish_reason")}]
                choice = choices[0]
                finish = choice.get("finish_reason")
                chunk = {"model": self.model,
                         "choices": [{"index": 0, "delta": choice.get("message") or {},
                                      "finish_reason": None if finish in (None, "null", "") else finish}]}
                usage = usage_from_dashscope(response.usage)
                if usage is not None:
                    chunk["usage"] = wire.usage_to_openai(usage)
                if decoder.feed(chunk) is None:
                    continue
                if held is None and decoder.text.strip():
                    held = opens_like_call(decoder.text)
                if held is False:
                    yield Delta(text=decoder.text[emitted:])
                    emitted = len(decoder.text)
        except BackendError:
            raise
        except Exception as exc:
            raise self._map_exception(exc) from exc
        final = decoder.finish()
        if parse_text:
            completion = parse_completion(self.format, decoder.completion(), tools, p)
            yield Delta(text=completion.text if held else "", tool_calls=completion.tool_calls,
                        finish_reason=completion.finish_reason, usage=final.usage,
                        parse_errors=completion.parse_errors)
            return
        if emitted < len(decoder.text):
            yield Delta(text=decoder.text[emitted:])
        yield final

    async def aclose(self) -> None:
        """Close the SDK's shared HTTP session of this event loop (it is otherwise closed at exit)."""
        from dashscope.api_entities.aio_session import close_shared_aio_session

        await close_shared_aio_session()

    # -- errors ------------------------------------------------------------------------------
    def _check(self, response: Any) -> None:
        """The SDK returns errors as responses (status_code, code, message): raise them as BackendErrors."""
        status = int(getattr(response, "status_code", 200) or 200)
        if status == 200:
            return
        code = getattr(response, "code", None) or "Unknown"
        message = getattr(response, "message", None) or ""
        request_id = getattr(response, "request_id", None)
        detail = f"HTTP {status} {code}: {message}" + (f"; request_id {request_id}" if request_id else "")
        kw = {"url": self.url, "backend": self.backend_name, "status": status}
        if status in (401, 403) or code in ("InvalidApiKey", "AccessDenied"):
            raise BackendAuthError(f"DashScope at {self.url} refused the credentials ({detail}): check "
                                   f"{self.api_key_env} (environment or .env) and the key's access to model "
                                   f"{self.model!r}", **kw)
        if status == 429 or str(code).startswith("Throttling"):
            raise BackendRateLimitError(f"DashScope at {self.url} is rate limiting ({detail}): slow down, or check "
                                        f"the account's quota", **kw)
        if status == 404 or code == "ModelNotFound":
            raise BackendRequestError(f"DashScope at {self.url} does not know model {self.model!r} ({detail}): "
                                      f"check the model name", **kw)
        if 400 <= status < 500:
            raise BackendRequestError(f"DashScope at {self.url} rejected the request for model {self.model!r} "
                                      f"({detail})", **kw)
        raise BackendServerError(f"DashScope at {self.url} failed ({detail}): try again later", **kw)

    def _map_exception(self, exc: BaseException) -> BaseException:
        if isinstance(exc, BackendError):
            return exc
        try:
            import aiohttp
        except ImportError:  # pragma: no cover
            aiohttp = None
        kw = {"url": self.url, "backend": self.backend_name}
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or (
                aiohttp is not None and isinstance(exc, aiohttp.ServerTimeoutError)):
            return BackendConnectionError(f"no answer from DashScope at {self.url} within {self.timeout:g} s: check "
                                          f"the network, or raise `timeout`", **kw)
        if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
            return BackendConnectionError(f"cannot connect to DashScope at {self.url} ({type(exc).__name__}: {exc}): "
                                          f"check the network and base_url / DASHSCOPE_HTTP_BASE_URL", **kw)
        if type(exc).__module__.startswith("dashscope"):
            return BackendRequestError(f"the dashscope SDK refused the request: {type(exc).__name__}: {exc}", **kw)
        return exc
