"""Any OpenAI-compatible chat server through the official `openai` SDK.

One backend reaches OpenAI, vLLM (`vllm serve`, Ray Serve LLM), the llama.cpp server, Ollama,
DashScope's compatible mode, ModelScope's inference API and raygent's own ingress: they all speak
chat-completions. Tools go in the native `tools` / `tool_choice` fields by default; for servers
without native tool support a text tool-call format (hermes, react, msagent) renders the tools
into the prompt and parses the reply, exactly as the local backends do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

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
from raygent.llm_pool.formats import HermesFormat, ToolCallFormat, get_format
from raygent.llm_pool.text_tools import opens_like_call, parse_completion, render_plain
from raygent.schema import Completion, Delta, GenerationParams, Message, ToolSpec

OPENAI_URL = "https://api.openai.com/v1"
_TAG = "<tool_call>"
_HERMES = HermesFormat()
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def _is_local(url: str) -> bool:
    return (urlparse(url).hostname or "") in _LOCAL_HOSTS


class OpenAICompatibleChatModel(ChatModel):
    """Chat with tools and streaming on any OpenAI-compatible endpoint.

    model: the model name the server knows (e.g. "gpt-4o-mini", "Qwen/Qwen2.5-7B-Instruct").
    base_url: the API root ending in /v1 (default: $OPENAI_BASE_URL or OpenAI's).
    api_key / api_key_env: the key, or the environment variable holding it. A local server
        (127.0.0.1/localhost) needs none; pass api_key="EMPTY" for a remote one without auth.
    headers: extra HTTP headers sent with every request (e.g. a gateway's routing header).
    format: "native" (OpenAI tools) or a text format ("hermes", "react", "msagent") for servers
        that ignore `tools`.
    stream_usage: ask for a usage chunk when streaming (stream_options.include_usage); turn off
        for servers that reject stream_options.
    extra_body: additional JSON fields for every request (server-specific options, e.g. vLLM's
        `top_k` or DashScope's `enable_thinking`).
    text_fallback: in native mode, read `<tool_call>` tags in a reply that has no structured calls
        (servers that put the tools into the chat template but do not parse the reply).
    """

    backend_name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", headers: Mapping[str, str] | None = None,
                 format: str | ToolCallFormat = "native", timeout: float = 120.0, max_retries: int = 2,
                 stream_usage: bool = True, extra_body: Mapping[str, Any] | None = None,
                 text_fallback: bool = True, model_name: str | None = None):
        if not model:
            raise BackendConfigError("the OpenAI-compatible backend needs `model`: the model name the server serves")
        self.model = model
        self.model_name = model_name or model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.api_key_env = api_key_env
        self._api_key = api_key
        self.headers = dict(headers or {})
        self.format = get_format(format)
        self.timeout = timeout
        self.max_retries = max_retries
        self.stream_usage = stream_usage
        self.extra_body = dict(extra_body or {})
        self.text_fallback = text_fallback
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # -- client ------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:  # a client holds sockets: rebuild it where unpickled
        return {**self.__dict__, "_client": None, "_client_loop": None}

    def api_key(self) -> str:
        key = self._api_key or os.environ.get(self.api_key_env)
        if key:
            return key
        if _is_local(self.base_url):
            return "EMPTY"
        raise BackendConfigError(
            f"no API key for {self.base_url}: set {self.api_key_env} (in the environment or .env), or pass "
            f"api_key='EMPTY' if the server needs none", url=self.base_url, backend=self.backend_name)

    def client(self) -> Any:
        """The AsyncOpenAI client of the running event loop (clients are bound to the loop they ran on)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            try:
                from openai import AsyncOpenAI
            except ImportError as exc:
                raise BackendConfigError("the OpenAI-compatible backend needs the openai SDK: "
                                         "pip install 'raygent[openai]'", backend=self.backend_name) from exc
            self._client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key(), timeout=self.timeout,
                                       max_retries=self.max_retries, default_headers=self.headers or None)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- requests ----------------------------------------------------------------------------
    @property
    def native_tools(self) -> bool:
        return self.format.name == "native"

    def build_request(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                      params: GenerationParams, *, stream: bool) -> dict[str, Any]:
        """The request body sent to the server (text formats put the tools into the messages)."""
        if self.native_tools:
            body = wire.to_request(messages, tools, params, model=self.model, stream=stream,
                                   include_usage=self.stream_usage)
        else:
            plain, stop = render_plain(self.format, messages, tools, params)
            body = wire.to_request([], None, params.model_copy(update={"stop": stop}), model=self.model,
                                   stream=stream, include_usage=self.stream_usage)
            body["messages"] = plain
        return body

    def _kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(body)
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        return kwargs

    def _reader(self, tools: Sequence[ToolSpec] | None, params: GenerationParams) -> ToolCallFormat | None:
        """The text format replies are parsed with: the configured one, or (native mode, with
        `text_fallback`) hermes for servers that render tools into the prompt but return the model's
        `<tool_call>` text unparsed (llama.cpp server, vLLM without --tool-call-parser)."""
        if not tools or params.tool_choice == "none":
            return None
        if not self.native_tools:
            return self.format
        return _HERMES if self.text_fallback else None

    def _parse_text(self, completion: Completion, tools: Sequence[ToolSpec] | None,
                    params: GenerationParams) -> Completion:
        reader = self._reader(tools, params)
        if reader is None or completion.tool_calls:
            return completion
        if self.native_tools and _TAG not in completion.text:
            return completion
        return parse_completion(reader, completion, tools, params)

    def _hold_back(self, text: str, tools: Sequence[ToolSpec] | None, params: GenerationParams) -> bool | None:
        """Whether a streamed reply is (True), is not (False), or may still become (None) a text tool call."""
        if self._reader(tools, params) is None:
            return False
        stripped = text.lstrip()
        if not stripped:
            return None
        if not self.native_tools:
            return opens_like_call(stripped)
        if stripped.startswith(_TAG):
            return True
        return None if _TAG.startswith(stripped) else False

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        p = as_params(params)
        body = self.build_request(messages, tools, p, stream=False)
        try:
            response = await self.client().chat.completions.create(**self._kwargs(body))
            completion = wire.completion_from_response(response, tools if self.native_tools else None)
        except Exception as exc:
            raise self._map_error(exc) from exc
        completion = completion.model_copy(update={"model": completion.model or self.model})
        return self._parse_text(completion, tools, p)

    async def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                     params: GenerationParams | dict | None = None) -> AsyncIterator[Delta]:
        """Content streams as it arrives; native tool-call fragments are joined into the final Delta.

        A reply that opens like a text tool call (text formats, or `<tool_call>` in native mode with
        text_fallback) is held back and delivered parsed in the final Delta, as the local backends do.
        """
        p = as_params(params)
        body = self.build_request(messages, tools, p, stream=True)
        decoder = wire.ChunkDecoder(tools if self.native_tools else None)
        held: bool | None = None
        emitted = 0
        try:
            response = await self.client().chat.completions.create(**self._kwargs(body))
            async for chunk in response:
                if decoder.feed(chunk) is None:
                    continue
                if held is None:
                    held = self._hold_back(decoder.text, tools, p)
                if held is False and len(decoder.text) > emitted:
                    yield Delta(text=decoder.text[emitted:])
                    emitted = len(decoder.text)
        except Exception as exc:
            raise self._map_error(exc) from exc
        final = decoder.finish()
        completion = self._parse_text(decoder.completion(), tools, p)
        if not held and emitted < len(decoder.text):  # text held while undecided
            yield Delta(text=decoder.text[emitted:])
        yield Delta(text=completion.text if held else "", tool_calls=completion.tool_calls,
                    finish_reason=completion.finish_reason, usage=final.usage,
                    parse_errors=[*completion.parse_errors])

    # -- errors ------------------------------------------------------------------------------
    def _map_error(self, exc: BaseException) -> BaseException:
        """openai SDK exceptions -> raygent BackendErrors that name the URL and what to check."""
        if isinstance(exc, BackendError):
            return exc
        try:
            import openai
        except ImportError:  # pragma: no cover - client() already required it
            return exc
        url = self.base_url
        kw = {"url": url, "backend": self.backend_name}
        if isinstance(exc, wire.WireError):
            return BackendServerError(f"{url} answered something that is not an OpenAI chat completion: {exc}",
                                      **kw)
        if isinstance(exc, openai.APITimeoutError):
            return BackendConnectionError(f"no answer from {url} within {self.timeout:g} s (after "
                                          f"{self.max_retries} retries): check that the server is up and not "
                                          f"overloaded, or raise `timeout`", **kw)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return BackendConnectionError(f"cannot connect to {url} ({type(cause).__name__}: {cause}): check that "
                                          f"the server is running and that base_url is right (it should end in "
                                          f"/v1)", **kw)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _error_message(exc)
            if status in (401, 403):
                return BackendAuthError(f"{url} refused the credentials (HTTP {status}: {detail}): check the API "
                                        f"key in {self.api_key_env} (or `api_key`) and its access to model "
                                        f"{self.model!r}", status=status, **kw)
            if status == 429:
                return BackendRateLimitError(f"{url} is rate limiting or the quota is used up (HTTP 429: {detail}): "
                                             f"slow down, or check the account's quota", status=status, **kw)
            if status == 404:
                return BackendRequestError(f"{url} does not know model {self.model!r} or the chat endpoint (HTTP "
                                           f"404: {detail}): check the model name and that base_url ends in /v1",
                                           status=status, **kw)
            if 400 <= status < 500:
                hint = ("; if the server does not support native tools, use format='hermes' (or 'react')"
                        if self.native_tools and "tool" in detail.lower() else "")
                return BackendRequestError(f"{url} rejected the request for model {self.model!r} (HTTP {status}: "
                                           f"{detail}){hint}", status=status, **kw)
            return BackendServerError(f"{url} failed (HTTP {status}: {detail}) after {self.max_retries} retries: "
                                      f"check the server's logs", status=502, **kw)
        if isinstance(exc, openai.APIError):  # an error event inside a stream that had started
            return BackendServerError(f"{url} reported an error mid-stream: {_error_message(exc)}", **kw)
        if isinstance(exc, openai.OpenAIError):
            return BackendError(f"OpenAI-compatible request to {url} failed: {exc}", **kw)
        return exc


def _error_message(exc: Any) -> str:
    """The server's own message from an OpenAI-shaped error body, else the SDK's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(exc, "message", exc))
