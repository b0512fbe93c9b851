"""Helpers shared by the text tool-call formats: decoded JSON -> ToolCall, name matching, rendering.

Models mix up the call shapes they saw in training (OpenAI, Hermes, MSAgent, LangChain), so
every format accepts all of them; errors are phrased for the model, which gets them back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from raygent.llm_pool.formats.jsonrepair import JSONRepairError, find_json_objects, loads_lenient
from raygent.schema import Message, ToolCall, ToolSpec

__all__ = [
    "CallShapeError",
    "call_error",
    "NAME_KEYS",
    "ARG_KEYS",
    "find_spec",
    "resolve_tool_name",
    "single_string_param",
    "decode_arguments",
    "to_tool_call",
    "coerce_calls",
    "looks_like_call",
    "render_tool_specs",
    "dumps",
    "parse_json_block",
    "remove_spans",
    "extract_untagged_calls",
    "render_turns",
    "content_and_calls",
    "with_tools_section",
]

#: keys that may carry the tool name, in order of preference
NAME_KEYS = ("name", "api_name", "tool_name", "tool", "function_name", "action", "function")
#: keys that may carry the arguments, in order of preference
ARG_KEYS = ("arguments", "parameters", "args", "tool_input", "action_input", "input", "params", "kwargs")
#: keys ignored when arguments are given flat next to the name
_META_KEYS = {"type", "id", "call_id", "thought", "thoughts", "reasoning", "url"}

_QUOTE_START = "\"'\u201c\u2018"
_JSONISH_START = "{[\uff5b\uff3b" + _QUOTE_START
CALL_EXAMPLE = '{"name": "<tool name>", "arguments": {<argument name>: <value>, ...}}'


class CallShapeError(ValueError):
    """A decoded object cannot be used as a tool call; str(e) is meant for the model."""


def dumps(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text readable (Chinese arguments stay Chinese)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def find_spec(name: str, tools: Sequence[ToolSpec] | None) -> ToolSpec | None:
    return next((t for t in tools or () if t.name == name), None)


def resolve_tool_name(name: str, tools: Sequence[ToolSpec] | None) -> str:
    """Map `name` onto an offered tool ignoring case and '-'/'_'/space, if exactly one matches.

    An unknown name is kept as written: the tool registry reports unknown tools to the model.
    """
    name = name.strip().strip("`'\"").strip()
    if not tools or any(t.name == name for t in tools):
        return name
    for candidate in (name, re.sub(r"^(functions?|tools?)\.", "", name)):
        hits = [t.name for t in tools if _norm(t.name) == _norm(candidate)]
        if len(hits) == 1:
            return hits[0]
    return name


def single_string_param(spec: ToolSpec | None) -> str | None:
    """The parameter a plain-text input should fill: the tool's only (required) string parameter."""
    if spec is None:
        return None
    props: dict[str, Any] = spec.parameters.get("properties") or {}
    required = [p for p in spec.parameters.get("required") or [] if p in props]
    for names in (list(props), required):
        if len(names) == 1 and (props[names[0]] or {}).get("type", "string") == "string":
            return names[0]
    return None


def decode_arguments(raw: Any, spec: ToolSpec | None = None) -> dict[str, Any]:
    """Arguments as given by the model (object, JSON string, plain text, nothing) -> a dict."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        if text[:1] in _JSONISH_START or text.startswith("```"):
            try:
                value = loads_lenient(text)
            except JSONRepairError as e:
                if text[:1] not in _QUOTE_START:
                    raise CallShapeError(f"the arguments are not valid JSON ({e})") from None
                value = text
        else:  # plain text (don't dig JSON out of "print([1, 2])"); may fill a single string parameter
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}  # literal_eval may give non-string keys
        raw = value
    param = single_string_param(spec)
    if param is not None and isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return {param: raw if isinstance(raw, str) else str(raw)}
    raise CallShapeError(f'the arguments must be a JSON object like {{"<argument name>": <value>}}, got {dumps(raw)[:80]}')


def _pick(obj: dict[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for k in keys:
        if k in obj:
            return k, obj[k]
    return None, None


def to_tool_call(obj: Any, tools: Sequence[ToolSpec] | None = None) -> ToolCall:
    """Normalise one decoded call object into a ToolCall, or raise CallShapeError (model-facing).

    Accepted: {"name","arguments"|"parameters"}, {"api_name","parameters"} (MSAgent),
    {"function": {"name","arguments"}} (OpenAI), {"tool"|"action", "args"|"tool_input"|...}
    (LangChain), arguments as a JSON string, and arguments written flat next to the name.
    """
    if not isinstance(obj, dict):
        raise CallShapeError(f"a tool call must be a JSON object like {CALL_EXAMPLE}")
    call_id = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else None
    inner = obj.get("function")
    if isinstance(inner, dict):  # OpenAI: {"type": "function", "function": {...}}
        obj = inner
    name_key, name = _pick(obj, [k for k in NAME_KEYS if isinstance(obj.get(k), str) and obj[k].strip()])
    if name_key is None:
        raise CallShapeError(f"the tool call has no tool name; write it as {CALL_EXAMPLE}")
    name = resolve_tool_name(str(name), tools)
    if not name:
        raise CallShapeError(f"the tool call has an empty tool name; write it as {CALL_EXAMPLE}")
    args_key, raw_args = _pick(obj, ARG_KEYS)
    if args_key is None:  # {"name": "get_weather", "city": "Paris"}
        raw_args = {k: v for k, v in obj.items() if k not in NAME_KEYS and k not in _META_KEYS}
    try:
        arguments = decode_arguments(raw_args, find_spec(name, tools))
    except CallShapeError as e:
        raise CallShapeError(f"tool call {name!r}: {e}") from None
    return ToolCall(name=name, arguments=arguments, **({"id": call_id} if call_id else {}))


def coerce_calls(
    obj: Any, tools: Sequence[ToolSpec] | None = None, where: str = "your reply", example: str = CALL_EXAMPLE
) -> tuple[list[ToolCall], list[str]]:
    """One decoded value -> calls and model-facing errors; accepts a list of calls and {"tool_calls": [...]}."""
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list):
        obj = obj["tool_calls"]
    calls: list[ToolCall] = []
    errors: list[str] = []
    for item in obj if isinstance(obj, list) else [obj]:
        try:
            calls.append(to_tool_call(item, tools))
        except CallShapeError as e:
            errors.append(call_error(where, str(e), example))
    return calls, errors


def looks_like_call(obj: Any, tools: Sequence[ToolSpec] | None = None, *, strict: bool = False) -> bool:
    """Whether an untagged JSON value is meant as a tool call rather than a JSON answer.

    It is when it has a name key and an arguments key (or an OpenAI "function" object), or its
    name is an offered tool. `strict` (for JSON found inside prose) requires an offered tool name.
    """
    if isinstance(obj, list):
        return bool(obj) and all(looks_like_call(o, tools, strict=strict) for o in obj)
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("tool_calls"), list):
        return looks_like_call(obj["tool_calls"], tools, strict=strict)
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = next((obj[k] for k in NAME_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
    if name is None:
        return False
    offered = tools is not None and find_spec(resolve_tool_name(name, tools), tools) is not None
    if strict:
        return offered and any(k in obj for k in ARG_KEYS)
    return offered or any(k in obj for k in ARG_KEYS)


def render_tool_specs(tools: Sequence[ToolSpec], *, openai: bool = False, sep: str = "\n") -> str:
    """Tool specs as compact JSON, one per line by default, for prompt sections."""
    rows = [
        t.to_openai() if openai else {"name": t.name, "description": t.description, "parameters": t.parameters}
        for t in tools
    ]
    return sep.join(dumps(r) for r in rows)


# --- block and untagged-call extraction, shared by the tag formats ---------------------------

_CALLISH = re.compile(r"[\"'\u201c]?(?:name|api_name|tool_name|function|tool|action)[\"'\u201d]?\s*[:\uff1a]")
_FENCE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n?(.*?)(?:```|\Z)", re.S)


def call_error(where: str, detail: str, example: str = CALL_EXAMPLE) -> str:
    """The model-facing text for an unreadable call: where, why, and the expected syntax."""
    return f"Could not read the tool call in {where}: {detail}. Write each call as {example}."


def parse_json_block(
    inner: str, tools: Sequence[ToolSpec] | None, where: str, example: str
) -> tuple[list[ToolCall], list[str]]:
    """The calls in the body of one call block (one object, several, or a list); errors for the rest."""
    if not inner.strip():
        return [], [call_error(where, "the block is empty", example)]
    found = find_json_objects(inner)
    calls: list[ToolCall] = []
    errors: list[str] = []
    for value, _, _ in found:
        c, e = coerce_calls(value, tools, where, example)
        calls, errors = calls + c, errors + e
    leftover = inner
    for _, start, end in reversed(found):
        leftover = leftover[:start] + leftover[end:]
    if found and not re.search(r"[{\uff5b]", leftover):
        return calls, errors
    try:  # nothing (or something unreadable) besides the objects: say why
        value = loads_lenient(leftover if found else inner)
    except JSONRepairError as e:
        return calls, errors + [call_error(where, str(e), example)]
    if found and not isinstance(value, (dict, list)):
        return calls, errors
    c, e = coerce_calls(value, tools, where, example)
    return calls + c, errors + e


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` without the given (start, end) spans, stripped, blank-line runs collapsed."""
    out, pos = [], 0
    for start, end in sorted(spans):
        if start >= pos:
            out.append(text[pos:start])
            pos = end
    out.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()


def extract_untagged_calls(
    text: str, tools: Sequence[ToolSpec] | None, example: str
) -> tuple[list[ToolCall], list[str], str]:
    """Calls written without the format's tags: returns (calls, errors, remaining text).

    Small models (measured on Qwen2.5-0.5B) often answer with a ```json fenced call object, or
    a bare call object as the whole reply. JSON inside prose counts only when it names an
    offered tool and has an arguments key, so JSON answers are not mistaken for calls.
    """
    stripped = text.strip()
    # 1. fenced blocks holding a call
    calls: list[ToolCall] = []
    errors: list[str] = []
    spans: list[tuple[int, int]] = []
    for m in _FENCE_BLOCK.finditer(text):
        body = m.group(2).strip()
        if not body[:1] or body[:1] not in "{[\uff5b\uff3b":
            continue
        try:
            value = loads_lenient(body)
        except JSONRepairError as e:
            if _CALLISH.search(body):
                errors.append(call_error("the ``` block", str(e), example))
                spans.append(m.span())
            continue
        if looks_like_call(value, tools):
            c, e = coerce_calls(value, tools, "the ``` block", example)
            calls, errors = calls + c, errors + e
            spans.append(m.span())
    if calls or errors:
        return calls, errors, remove_spans(text, spans)
    # 2. the whole reply is one JSON value
    if stripped[:1] in ("{", "[", "\uff5b", "\uff3b"):
        try:
            value = loads_lenient(stripped)
        except JSONRepairError as e:
            if _CALLISH.search(stripped[:200]):
                return [], [call_error("your reply", str(e), example)], ""
            value = None
        whole = stripped[-1:] in ("}", "]", "\uff5d", "\uff3d")
        if whole and value is not None and looks_like_call(value, tools):
            c, e = coerce_calls(value, tools, "your reply", example)
            return c, e, ""
    # 3. call objects inside prose
    for value, start, end in find_json_objects(text):
        if looks_like_call(value, tools, strict=True):
            c, e = coerce_calls(value, tools, "your reply", example)
            calls, errors = calls + c, errors + e
            spans.append((start, end))
    return calls, errors, remove_spans(text, spans) if spans else stripped


# --- rendering of structured turns into plain chat turns --------------------------------------


def render_turns(
    messages: Sequence[Message],
    render_calls: Callable[[Message], str],
    render_result: Callable[[Message], str],
) -> list[dict[str, Any]]:
    """Messages -> [{'role','content'}]: assistant calls become text, consecutive tool results one user turn.

    Results go in a user turn because chat templates only accept system/user/assistant roles
    and many reject two assistant turns in a row.
    """
    out: list[dict[str, Any]] = []
    prev_tool = False
    for m in messages:
        if m.role == "tool":
            if prev_tool:
                out[-1]["content"] += "\n" + render_result(m)
            else:
                out.append({"role": "user", "content": render_result(m)})
        elif m.role == "assistant" and m.tool_calls:
            out.append({"role": "assistant", "content": render_calls(m)})
        else:
            out.append({"role": m.role, "content": m.content or ""})
        prev_tool = m.role == "tool"
    return out


def content_and_calls(m: Message, render_call: Callable[[ToolCall], str]) -> str:
    """An assistant turn as text: its content (if any), then one rendered block per call."""
    parts = [m.content.strip()] if (m.content or "").strip() else []
    return "\n".join(parts + [render_call(c) for c in m.tool_calls or []])


def with_tools_section(out: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
    """Append the tools section to the first system message, creating one if there is none."""
    if not section:
        return out
    if out and out[0]["role"] == "system":
        base = (out[0]["content"] or "").rstrip()
        out[0] = {**out[0], "content": f"{base}\n\n{section}" if base else section}
        return out
    return [{"role": "system", "content": section}, *out]
