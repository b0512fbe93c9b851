"""Conversions between raygent's schema and the OpenAI chat-completions wire format.

Pure functions and two small stateful codecs (no I/O, no SDK): the OpenAI-compatible backend
uses them to build requests and read replies, the HTTP ingress to read requests and write
replies, so both sides agree on one mapping. Both directions are covered:

  request:   Messages/ToolSpecs/GenerationParams <-> request dict      (to_request / from_request)
  response:  Completion <-> `chat.completion` dict             (completion_to_response / completion_from_response)
  stream:    Deltas <-> `chat.completion.chunk` dicts                    (ChunkEncoder / ChunkDecoder)
  errors:    {"error": {"message", "type", "param", "code"}}              (error_body / WireError)

Streaming semantics (raygent's Delta contract): text in non-final deltas is answer text; the
final delta carries finish_reason, usage and parsed tool calls, and text beside tool calls is a
thought. On the wire the thought becomes `content` sent before the tool-call deltas; when
decoding, content is passed on as it arrives (the wire cannot say in advance whether calls will
follow), so a round trip keeps the concatenated text, calls, finish reason and usage.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from raygent.llm_pool.formats.common import CallShapeError, call_error, decode_arguments, find_spec
from raygent.schema import Artifact, Completion, Delta, GenerationParams, Message, ToolCall, ToolSpec, Usage

__all__ = [
    "ChatRequest",
    "ChunkDecoder",
    "ChunkEncoder",
    "SSE_DONE",
    "WireError",
    "accumulate_chunks",
    "completion_from_response",
    "completion_to_response",
    "decode_stream",
    "encode_stream",
    "error_body",
    "error_response",
    "error_type_for_status",
    "finish_reason_to_openai",
    "from_request",
    "message_from_openai",
    "models_response",
    "messages_to_openai",
    "new_completion_id",
    "sse_error_event",
    "sse_event",
    "to_request",
    "tool_choice_from_openai",
    "tool_choice_to_openai",
    "tools_to_openai",
    "usage_from_openai",
    "usage_to_openai",
]

#: the terminating Server-Sent Event of an OpenAI stream
SSE_DONE = b"data: [DONE]\n\n"

_FINISH_TO_OPENAI = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "error": "stop",
                     "function_call": "tool_calls", "content_filter": "content_filter"}
_FINISH_FROM_OPENAI = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
                       "content_filter": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable_error"}


# -- errors -------------------------------------------------------------------------------------
def error_type_for_status(status: int) -> str:
    """OpenAI's error `type` for an HTTP status (server_error for any unlisted 5xx)."""
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, type: str | None = None, param: str | None = None, code: str | int | None = None,
               *, status: int = 400) -> dict[str, Any]:
    """The JSON body OpenAI returns with an error status: {"error": {message, type, param, code}}."""
    return {"error": {"message": message, "type": type or error_type_for_status(status), "param": param,
                      "code": code}}


class WireError(ValueError):
    """A request or reply that does not fit the OpenAI wire format; carries the HTTP answer to give."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400,
                 type: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.type = type or error_type_for_status(status)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code, status=self.status)


def error_response(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(HTTP status, OpenAI error body) for an exception raised while serving a request.

    WireError keeps its status and param; raygent BackendErrors pass on their status (401, 429,
    503, ...); a bad value (ValueError) is a 400; anything else a 500 that names the exception.
    """
    if isinstance(exc, WireError):
        return exc.status, exc.body()
    from raygent.llm_pool.errors import BackendError

    if isinstance(exc, BackendError):
        status = exc.status if 400 <= exc.status < 600 else 502
        return status, error_body(str(exc), status=status, code=type(exc).__name__)
    if isinstance(exc, ValueError):
        return 400, error_body(str(exc), status=400)
    if _is_actor_death(exc):  # a process behind the request died (Ray restarts it): retry, not a bug
        return 503, error_body(f"{type(exc).__name__}: {exc} (a server process died while handling this request; "
                               f"retry shortly)", status=503, code="component_unavailable")
    return 500, error_body(f"{type(exc).__name__}: {exc}", status=500)


def _is_actor_death(exc: BaseException) -> bool:
    """A Ray actor (a Serve replica, a raygent component) died or is restarting under the call."""
    try:
        from ray.exceptions import RayActorError
    except ImportError:  # pragma: no cover - ray is a core dependency
        return False
    return isinstance(exc, RayActorError)


# -- small pieces -------------------------------------------------------------------------------
def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _as_dict(obj: Any) -> dict[str, Any]:
    """A dict from a dict or an SDK object (openai's pydantic models)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=False)
    raise WireError(f"expected a JSON object, got {type(obj).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def tools_to_openai(tools: Sequence[ToolSpec] | None) -> list[dict[str, Any]]:
    return [t.to_openai() for t in tools or ()]


def tool_choice_to_openai(choice: str) -> str | dict[str, Any]:
    """"auto" / "none" / "required" pass through; a tool name becomes a named-function choice."""
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def tool_choice_from_openai(choice: Any, tools: Sequence[ToolSpec] | None = None, *,
                            param: str = "tool_choice") -> str:
    """OpenAI tool_choice (a string or {"type": "function", "function": {"name"}}) -> raygent's string."""
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return choice
        raise WireError(f"{param} must be 'auto', 'none', 'required' or a function object, got {choice!r}",
                        param=param, code="invalid_value")
    obj = _as_dict(choice)
    name = (obj.get("function") or {}).get("name") if isinstance(obj.get("function"), Mapping) else obj.get("name")
    if not name or not isinstance(name, str):
        raise WireError(f"{param} object must name a function: {{\"type\": \"function\", \"function\": "
                        f"{{\"name\": ...}}}}", param=param, code="invalid_value")
    if tools is not None and find_spec(name, tools) is None:
        raise WireError(f"{param} names function {name!r}, which is not among the tools: "
                        f"{[t.name for t in tools]}", param=param, code="invalid_value")
    return name


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                           "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens}
    if usage.cached_prompt_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_prompt_tokens}
    return out


def usage_from_openai(data: Any) -> Usage | None:
    if data is None:
        return None
    d = _as_dict(data)
    details = d.get("prompt_tokens_details") or {}
    prompt, out = int(d.get("prompt_tokens") or 0), int(d.get("completion_tokens") or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=out, total_tokens=int(d.get("total_tokens") or prompt + out),
                 cached_prompt_tokens=int(_as_dict(details).get("cached_tokens") or 0))


def finish_reason_to_openai(reason: str | None) -> str:
    return _FINISH_TO_OPENAI.get(reason or "stop", "stop")


def _finish_from_openai(reason: str | None, has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    mapped = _FINISH_FROM_OPENAI.get(reason or "stop", "stop")
    return "stop" if mapped == "tool_calls" else mapped  # "tool_calls" with no readable call


# -- messages -----------------------------------------------------------------------------------
def messages_to_openai(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """raygent Messages -> OpenAI messages (assistant calls with JSON-string arguments)."""
    out = []
    for m in messages:
        d = m.to_openai()
        if m.role == "assistant" and m.tool_calls and not m.content:
            d["content"] = None
        elif d["content"] is None:
            d["content"] = ""
        if m.role != "tool":
            d.pop("tool_call_id", None)
        out.append(d)
    return out


def _content_text(content: Any, where: str) -> tuple[str | None, list[Artifact]]:
    """OpenAI content: a string, null, or a list of parts (text parts joined, images kept as artifacts)."""
    if content is None or isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise WireError(f"{where}.content must be a string, null or a list of content parts",
                        param=f"{where}.content", code="invalid_type")
    texts: list[str] = []
    artifacts: list[Artifact] = []
    for j, part in enumerate(content):
        p = _as_dict(part)
        kind = p.get("type")
        if kind in ("text", "input_text", "refusal"):
            texts.append(str(p.get("text") or p.get("refusal") or ""))
        elif kind == "image_url":
            url = p.get("image_url")
            url = _as_dict(url).get("url") if isinstance(url, Mapping) else url
            if url:
                artifacts.append(Artifact(kind="image", uri=str(url)))
        elif kind == "input_audio":
            audio = _as_dict(p.get("input_audio"))
            artifacts.append(Artifact(kind="audio", uri=f"data:audio/{audio.get('format', 'wav')};base64,"
                                                       f"{audio.get('data', '')}"))
        else:
            raise WireError(f"{where}.content[{j}] has unsupported type {kind!r} (text, image_url, input_audio)",
                            param=f"{where}.content[{j}].type", code="invalid_value")
    return "\n".join(texts), artifacts


def _tool_call_from_openai(obj: Any, where: str, tools: Sequence[ToolSpec] | None) -> ToolCall:
    d = _as_dict(obj)
    fn = _as_dict(d.get("function"))
    name = fn.get("name")
    if not name:
        raise WireError(f"{where}.function.name is missing", param=f"{where}.function.name", code="missing_field")
    try:
        args = decode_arguments(fn.get("arguments"), find_spec(name, tools))
    except CallShapeError as e:
        raise WireError(f"{where}.function.arguments: {e}", param=f"{where}.function.arguments",
                        code="invalid_value") from None
    return ToolCall(id=d.get("id") or ToolCall(name=name).id, name=name, arguments=args)


def message_from_openai(obj: Any, index: int = 0, tools: Sequence[ToolSpec] | None = None) -> Message:
    """One OpenAI message (any role, incl. assistant tool_calls, tool results, legacy function) -> Message."""
    where = f"messages[{index}]"
    d = _as_dict(obj)
    role = d.get("role")
    if role == "developer":
        role = "system"
    if role == "function":  # the legacy function-result role
        role = "tool"
        d.setdefault("tool_call_id", d.get("name") or "")
    if role not in ("system", "user", "assistant", "tool"):
        raise WireError(f"{where}.role must be one of system, developer, user, assistant, tool; got {role!r}",
                        param=f"{where}.role", code="invalid_value")
    content, artifacts = _content_text(d.get("content"), where)
    calls = None
    if role == "assistant":
        raw_calls = d.get("tool_calls") or []
        if d.get("function_call"):  # legacy single call
            raw_calls = [*raw_calls, {"id": None, "type": "function", "function": d["function_call"]}]
        calls = [_tool_call_from_openai(c, f"{where}.tool_calls[{j}]", tools) for j, c in enumerate(raw_calls)] or None
    if role == "tool" and d.get("tool_call_id") is None:
        raise WireError(f"{where}: a tool message needs tool_call_id", param=f"{where}.tool_call_id",
                        code="missing_field")
    return Message(role=role, content=content, name=d.get("name"), tool_calls=calls,
                   tool_call_id=d.get("tool_call_id") if role == "tool" else None, artifacts=artifacts)


def _tools_from_openai(tools: Any, functions: Any) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for j, t in enumerate(tools or []):
        d = _as_dict(t)
        if d.get("type", "function") != "function":
            raise WireError(f"tools[{j}].type {d.get('type')!r} is not supported (only 'function')",
                            param=f"tools[{j}].type", code="invalid_value")
        fn = _as_dict(d.get("function"))
        if not fn.get("name"):
            raise WireError(f"tools[{j}].function.name is missing", param=f"tools[{j}].function.name",
                            code="missing_field")
        specs.append(_spec(fn))
    for j, fn in enumerate(functions or []):  # the legacy `functions` field
        f = _as_dict(fn)
        if not f.get("name"):
            raise WireError(f"functions[{j}].name is missing", param=f"functions[{j}].name", code="missing_field")
        specs.append(_spec(f))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise WireError(f"tool names must be unique, got {names}", param="tools", code="invalid_value")
    return specs


def _spec(fn: dict[str, Any]) -> ToolSpec:
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(params, Mapping):
        raise WireError(f"function {fn['name']!r}: parameters must be a JSON schema object", param="tools",
                        code="invalid_type")
    return ToolSpec(name=fn["name"], description=fn.get("description") or "", parameters=dict(params))


# -- requests -----------------------------------------------------------------------------------
def to_request(messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
               params: GenerationParams | None = None, *, model: str, stream: bool = False,
               include_usage: bool = True) -> dict[str, Any]:
    """Our request -> an OpenAI chat-completions request body (tools/tool_choice only with tools)."""
    p = params or GenerationParams()
    body: dict[str, Any] = {"model": model, "messages": messages_to_openai(messages),
                            "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}
    if p.stop:
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    if tools:
        body["tools"] = tools_to_openai(tools)
        body["tool_choice"] = tool_choice_to_openai(p.tool_choice)
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return body


class ChatRequest(BaseModel):
    """An OpenAI chat-completions request read into raygent's types."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    params: GenerationParams = Field(default_factory=GenerationParams)
    stream: bool = False
    include_usage: bool = False
    user: str | None = None


def _number(body: dict[str, Any], key: str, kind: type, lo: float | None = None, hi: float | None = None) -> Any:
    value = body[key]
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if wrong_type or (kind is int and not float(value).is_integer()):
        raise WireError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}",
                        param=key, code="invalid_type")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise WireError(f"{key} must be between {lo} and {hi}, got {value}", param=key, code="invalid_value")
    return kind(value)


def from_request(body: Any, defaults: GenerationParams | None = None) -> ChatRequest:
    """An OpenAI request body -> ChatRequest. Raises WireError (HTTP 400, OpenAI error shape) on bad input.

    Fields the body leaves out take `defaults` (raygent's GenerationParams by default).
    """
    if not isinstance(body, Mapping):
        raise WireError("the request body must be a JSON object")
    body = dict(body)
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise WireError("messages must be a non-empty list", param="messages",
                        code="missing_field" if raw_messages is None else "invalid_value")
    if body.get("n") not in (None, 1):
        raise WireError("only n=1 is supported", param="n", code="invalid_value")
    tools = _tools_from_openai(body.get("tools"), body.get("functions"))
    messages = [message_from_openai(m, i, tools) for i, m in enumerate(raw_messages)]
    values = (defaults or GenerationParams()).model_dump()
    if body.get("temperature") is not None:
        values["temperature"] = _number(body, "temperature", float, 0, 2)
    if body.get("top_p") is not None:
        values["top_p"] = _number(body, "top_p", float, 0, 1)
    for key in ("max_completion_tokens", "max_tokens"):  # the newer name wins
        if body.get(key) is not None:
            values["max_tokens"] = _number(body, key, int, 1, None)
            break
    if body.get("seed") is not None:
        values["seed"] = _number(body, "seed", int)
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise WireError("stop must be a string or a list of strings", param="stop", code="invalid_type")
        values["stop"] = stop
    choice = body.get("tool_choice")
    if choice is None and body.get("function_call") is not None:
        choice = body["function_call"]
        choice = choice if isinstance(choice, str) else {"type": "function", "function": _as_dict(choice)}
    if choice is not None:
        values["tool_choice"] = tool_choice_from_openai(choice, tools)
    if values["tool_choice"] not in ("auto", "none") and not tools:
        raise WireError(f"tool_choice {values['tool_choice']!r} needs tools", param="tool_choice",
                        code="invalid_value")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise WireError("stream must be a boolean", param="stream", code="invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise WireError("stream_options must be an object", param="stream_options", code="invalid_type")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise WireError("model must be a string", param="model", code="invalid_type")
    return ChatRequest(model=model, messages=messages, tools=tools, params=GenerationParams(**values), stream=stream,
                       include_usage=bool(options.get("include_usage")), user=body.get("user"))


# -- whole responses ----------------------------------------------------------------------------
def completion_to_response(completion: Completion, *, model: str | None = None, id: str | None = None,
                           created: int | None = None) -> dict[str, Any]:
    """A Completion -> an OpenAI `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant",
                               "content": completion.text if completion.text or not completion.tool_calls else None}
    if completion.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in completion.tool_calls]
    reason = "tool_calls" if completion.tool_calls else finish_reason_to_openai(completion.finish_reason)
    out: dict[str, Any] = {
        "id": id or new_completion_id(), "object": "chat.completion", "created": created or int(time.time()),
        "model": model or completion.model,
        "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
        "usage": usage_to_openai(completion.usage),
    }
    if completion.parse_errors:  # a raygent extension; OpenAI clients ignore unknown keys
        out["raygent"] = {"parse_errors": list(completion.parse_errors)}
    return out


def _calls_from_wire(raw_calls: Iterable[Any], tools: Sequence[ToolSpec] | None) -> tuple[list[ToolCall], list[str]]:
    """Calls a server returned; unreadable arguments become model-facing parse errors, not exceptions."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    for raw in raw_calls:
        d = _as_dict(raw)
        fn = _as_dict(d.get("function"))
        name = fn.get("name") or ""
        if not name:
            errors.append(call_error("a tool call", "it has no function name"))
            continue
        try:
            args = decode_arguments(fn.get("arguments"), find_spec(name, tools))
        except CallShapeError as e:
            errors.append(call_error(f"the call to {name}", str(e)))
            continue
        calls.append(ToolCall(id=d.get("id") or ToolCall(name=name).id, name=name, arguments=args))
    return calls, errors


def completion_from_response(data: Any, tools: Sequence[ToolSpec] | None = None) -> Completion:
    """An OpenAI `chat.completion` object (dict or SDK object) -> Completion."""
    d = _as_dict(data)
    choices = d.get("choices") or []
    if not choices:
        raise WireError("the response has no choices", status=502)
    choice = _as_dict(choices[0])
    message = _as_dict(choice.get("message"))
    raw_calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        raw_calls.append({"function": message["function_call"]})
    calls, errors = _calls_from_wire(raw_calls, tools)
    text = message.get("content") or ""
    if isinstance(text, list):
        text = _content_text(text, "choices[0].message")[0] or ""
    errors = [*errors, *((d.get("raygent") or {}).get("parse_errors") or [])]
    return Completion(text=text, tool_calls=calls, usage=usage_from_openai(d.get("usage")) or Usage(),
                      finish_reason=_finish_from_openai(choice.get("finish_reason"), bool(calls)),
                      model=d.get("model") or "", raw=text, parse_errors=errors)


# -- streams ------------------------------------------------------------------------------------
class ChunkEncoder:
    """raygent Deltas -> `chat.completion.chunk` dicts, one stream per encoder.

    The first chunk carries the assistant role; answer text becomes content deltas; the final
    Delta's text goes out as content, then each tool call as a header chunk (index, id, name, empty
    arguments) and an arguments chunk, then a chunk with the finish reason, then (include_usage)
    a usage chunk with no choices, as OpenAI does with stream_options.include_usage.
    """

    def __init__(self, model: str, *, id: str | None = None, created: int | None = None,
                 include_usage: bool = False):
        self.model = model
        self.id = id or new_completion_id()
        self.created = created or int(time.time())
        self.include_usage = include_usage
        self._started = False
        self.finished = False

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model,
                               "choices": [] if delta is None else
                               [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if self.include_usage:
            out["usage"] = None
        out.update(extra)
        return out

    def start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def encode(self, delta: Delta) -> list[dict[str, Any]]:
        if self.finished:
            raise ValueError("the stream already ended with a final delta")
        chunks = self.start()
        if delta.text:
            chunks.append(self._chunk({"content": delta.text}))
        for i, call in enumerate(delta.tool_calls):
            chunks.append(self._chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                                       "function": {"name": call.name, "arguments": ""}}]}))
            chunks.append(self._chunk({"tool_calls": [{"index": i, "function": {
                "arguments": _dumps(call.arguments)}}]}))
        if delta.finish_reason is not None:
            self.finished = True
            reason = "tool_calls" if delta.tool_calls else finish_reason_to_openai(delta.finish_reason)
            extra = {"raygent": {"parse_errors": list(delta.parse_errors)}} if delta.parse_errors else {}
            chunks.append(self._chunk({}, reason, **extra))
            if self.include_usage:
                usage = usage_to_openai(delta.usage or Usage())
                chunks.append(self._chunk(None, usage=usage))
        return chunks


async def encode_stream(deltas: AsyncIterable[Delta], model: str, *, include_usage: bool = False,
                        id: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """Async Deltas -> chunk dicts; a stream that ends without a final Delta gets finish_reason 'stop'."""
    enc = ChunkEncoder(model, id=id, include_usage=include_usage)
    for chunk in enc.start():
        yield chunk
    async for delta in deltas:
        for chunk in enc.encode(delta):
            yield chunk
    if not enc.finished:
        for chunk in enc.encode(Delta(finish_reason="stop")):
            yield chunk


def sse_event(chunk: Mapping[str, Any]) -> bytes:
    """One Server-Sent Event as OpenAI frames it: `data: {json}\\n\\n`."""
    return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def sse_error_event(exc: BaseException) -> bytes:
    """An error that happens after a stream started (the status line is already sent): one SSE event
    with OpenAI's error body; ChunkDecoder and the openai SDK raise it on the client side."""
    return sse_event(error_response(exc)[1])


def models_response(names: Sequence[str], *, owned_by: str = "raygent", created: int | None = None) -> dict[str, Any]:
    """The body of `GET /v1/models` for the given model names."""
    when = created or int(time.time())
    return {"object": "list", "data": [{"id": n, "object": "model", "created": when, "owned_by": owned_by}
                                       for n in names]}


class ChunkDecoder:
    """`chat.completion.chunk` dicts (or SDK chunk objects) -> raygent Deltas and a Completion.

    `feed` returns the content Delta a chunk carries (or None); tool-call fragments are joined by
    index (id and name from the first fragment, arguments concatenated). `finish` returns the final
    Delta (parsed calls, finish reason, usage) once the stream has ended, since the usage chunk
    comes after the finish-reason chunk.
    """

    def __init__(self, tools: Sequence[ToolSpec] | None = None):
        self.tools = list(tools or [])
        self.text = ""
        self.model = ""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.parse_errors: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    def feed(self, chunk: Any) -> Delta | None:
        d = _as_dict(chunk)
        if "error" in d and not d.get("choices"):
            err = _as_dict(d["error"])
            raise WireError(f"the server reported an error mid-stream: {err.get('message') or err}",
                            status=502, code=err.get("code"))
        self.model = d.get("model") or self.model
        if d.get("usage"):
            self.usage = usage_from_openai(d["usage"])
        self.parse_errors += list((d.get("raygent") or {}).get("parse_errors") or [])
        piece = ""
        for choice in d.get("choices") or []:
            c = _as_dict(choice)
            if c.get("index", 0) != 0:
                continue
            delta = _as_dict(c.get("delta"))
            if delta.get("content"):
                piece += delta["content"]
            for frag in delta.get("tool_calls") or []:
                self._merge_call(_as_dict(frag))
            if delta.get("function_call"):
                self._merge_call({"index": 0, "function": _as_dict(delta["function_call"])})
            if c.get("finish_reason"):
                self.finish_reason = c["finish_reason"]
        if piece:
            self.text += piece
            return Delta(text=piece)
        return None

    def _merge_call(self, frag: dict[str, Any]) -> None:
        index = frag.get("index")
        if index is None:  # some servers omit it on single calls
            index = len(self._calls) - 1 if (self._calls and not frag.get("id")) else len(self._calls)
        slot = self._calls.setdefault(int(index), {"id": None, "name": "", "arguments": ""})
        if frag.get("id"):
            slot["id"] = frag["id"]
        fn = _as_dict(frag.get("function"))
        if fn.get("name"):
            slot["name"] = slot["name"] or fn["name"]
        args = fn.get("arguments")
        if isinstance(args, Mapping):  # a server that sends whole objects instead of text fragments
            slot["arguments"] = _dumps(args)
        elif args:
            slot["arguments"] += args

    def _parsed_calls(self) -> tuple[list[ToolCall], list[str]]:
        raw = [{"id": s["id"], "function": {"name": s["name"], "arguments": s["arguments"]}}
               for _, s in sorted(self._calls.items())]
        return _calls_from_wire(raw, self.tools)

    def finish(self) -> Delta:
        calls, errors = self._parsed_calls()
        return Delta(tool_calls=calls, finish_reason=_finish_from_openai(self.finish_reason, bool(calls)),
                     usage=self.usage or Usage(), parse_errors=[*errors, *self.parse_errors])

    def completion(self) -> Completion:
        final = self.finish()
        return Completion(text=self.text, tool_calls=final.tool_calls, usage=final.usage or Usage(),
                          finish_reason=final.finish_reason, model=self.model, raw=self.text,  # type: ignore[arg-type]
                          parse_errors=final.parse_errors)


async def decode_stream(chunks: AsyncIterable[Any], tools: Sequence[ToolSpec] | None = None) -> AsyncIterator[Delta]:
    """Async chunks -> Deltas: content as it arrives, then one final Delta."""
    dec = ChunkDecoder(tools)
    async for chunk in chunks:
        delta = dec.feed(chunk)
        if delta is not None:
            yield delta
    yield dec.finish()


def accumulate_chunks(chunks: Iterable[Any], tools: Sequence[ToolSpec] | None = None) -> Completion:
    """A whole (sync) chunk stream -> the Completion it spells."""
    dec = ChunkDecoder(tools)
    for chunk in chunks:
        dec.feed(chunk)
    return dec.completion()
