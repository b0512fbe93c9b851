"""Hermes / Qwen2.5 tool calls: `<tool_call>{"name": ..., "arguments": ...}</tool_call>`.

The prompt text mirrors Qwen2.5's own chat template, so Qwen models (and NousResearch Hermes
fine-tunes) see the exact wording they were trained on.
"""

from __future__ import annotations

import re
from typing import Any

from raygent.llm_pool.formats.base import ParsedReply, ToolCallFormat
from raygent.llm_pool.formats.common import (
    content_and_calls,
    CallShapeError,
    call_error,
    decode_arguments,
    dumps,
    extract_untagged_calls,
    find_spec,
    parse_json_block,
    remove_spans,
    render_tool_specs,
    render_turns,
    resolve_tool_name,
    with_tools_section,
)
from raygent.llm_pool.formats.jsonrepair import JSONRepairError, loads_lenient
from raygent.schema import Message, ToolCall, ToolSpec

_OPEN = re.compile(r"<\s*tool_?call\s*>", re.I)
_CLOSE = re.compile(r"<\s*[/\\]\s*tool_?call\s*>", re.I)
_RESPONSE = re.compile(r"<\s*tool_response\s*>", re.I)
_FUNC = re.compile(r"<function\s*=\s*([^>\s]+?)\s*>(.*?)(?:<\s*/\s*function\s*>|(?=<function\s*=)|\Z)", re.S)
_PARAM = re.compile(
    r"<parameter\s*=\s*([^>\s]+?)\s*>(.*?)(?:<\s*/\s*parameter\s*>|(?=<parameter\s*=)|(?=<\s*/\s*function)|\Z)", re.S
)
EXAMPLE = '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'

_Span = tuple[int, int, list[ToolCall], list[str]]


class HermesFormat(ToolCallFormat):
    """Qwen2.5 / Hermes `<tool_call>` tags; also reads the untagged calls small models write."""

    name = "hermes"
    #: the model must not invent tool output
    stop = ["<tool_response>"]

    def render_tools(self, tools: list[ToolSpec]) -> str:
        if not tools:
            return ""
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            f"{render_tool_specs(tools, openai=True)}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            f"<tool_call></tool_call> XML tags:\n{EXAMPLE}"
        )

    def render_call(self, call: ToolCall) -> str:
        return f"<tool_call>\n{dumps({'name': call.name, 'arguments': call.arguments})}\n</tool_call>"

    def render_messages(self, messages: list[Message], tools: list[ToolSpec] | None) -> list[dict[str, Any]]:
        """Calls become `<tool_call>` text; consecutive tool results one user turn of `<tool_response>` blocks."""
        turns = render_turns(
            messages,
            lambda m: content_and_calls(m, self.render_call),
            lambda m: f"<tool_response>\n{m.content or ''}\n</tool_response>",
        )
        return with_tools_section(turns, self.render_tools(tools or []))

    def _parse(self, text: str, tools: list[ToolSpec] | None) -> ParsedReply:
        invented = _RESPONSE.search(text)
        if invented and _OPEN.search(text, 0, invented.start()):  # a result written before the tool ran
            text = text[: invented.start()]
        spans: list[_Span] = []
        i = 0
        while m := _OPEN.search(text, i):
            close, nxt = _CLOSE.search(text, m.end()), _OPEN.search(text, m.end())
            if close and (not nxt or close.start() < nxt.start()):
                inner, end = text[m.end() : close.start()], close.end()
            else:  # unclosed block: runs to the next <tool_call> or the end
                end = nxt.start() if nxt else len(text)
                inner = text[m.end() : end]
            if _FUNC.search(inner):
                calls, errors = _function_calls(inner, tools)
            else:
                calls, errors = parse_json_block(inner, tools, "<tool_call>", EXAMPLE)
            spans.append((m.start(), end, calls, errors))
            i = end
        for f in _FUNC.finditer(text):  # <function=name>{...}</function> outside the tags
            if not any(s <= f.start() < e for s, e, _, _ in spans):
                calls, errors = _function_calls(f.group(), tools)
                spans.append((f.start(), f.end(), calls, errors))
        if spans:
            spans.sort(key=lambda s: s[0])
            stray = [(c.start(), c.end()) for c in _CLOSE.finditer(text)]
            return ParsedReply(
                text=remove_spans(text, [(s, e) for s, e, _, _ in spans] + stray),
                tool_calls=[c for s in spans for c in s[2]],
                errors=[x for s in spans for x in s[3]],
            )
        bare = _CLOSE.sub("", text)  # a closing tag with no opening one
        calls, errors, rest = extract_untagged_calls(bare, tools, EXAMPLE)
        return ParsedReply(text=rest, tool_calls=calls, errors=errors)


def _function_calls(chunk: str, tools: list[ToolSpec] | None) -> tuple[list[ToolCall], list[str]]:
    """`<function=name>{json}</function>` (Llama 3.1) or `<function=name><parameter=k>v</parameter>` (Qwen3)."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    for f in _FUNC.finditer(chunk):
        name = resolve_tool_name(f.group(1), tools)
        spec = find_spec(name, tools)
        body = f.group(2)
        try:
            if _PARAM.search(body):
                args = {p.group(1): _param_value(p.group(2), p.group(1), spec) for p in _PARAM.finditer(body)}
            else:
                args = decode_arguments(body.strip() or None, spec)
            calls.append(ToolCall(name=name, arguments=args))
        except CallShapeError as e:
            errors.append(call_error(f"<function={name}>", str(e), EXAMPLE))
    return calls, errors


def _param_value(raw: str, param: str, spec: ToolSpec | None) -> Any:
    """A `<parameter>` value is text; decode it as JSON unless the schema says string."""
    value = raw.strip("\n")
    props = (spec.parameters.get("properties") or {}) if spec else {}
    if (props.get(param) or {}).get("type", "string") == "string":
        return value
    try:
        return loads_lenient(value)
    except JSONRepairError:
        return value
