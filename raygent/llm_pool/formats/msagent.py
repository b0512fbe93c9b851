"""ModelScope-Agent (MSAgent-Bench, arXiv 2309.00986) think/exec tags.

A call is `<|startofthink|>```JSON\\n{"api_name": ..., "parameters": {...}}\\n```<|endofthink|>`
and the tool output comes back as `<|startofexec|>```JSON\\n{result}\\n```<|endofexec|>`.

Tool results are rendered as a *user* turn holding the exec blocks, not as a continuation of the
assistant turn as in MSAgent-Bench: chat templates cannot portably leave an assistant turn open,
and a fresh turn per result works with every template (the model then writes its answer or its
next call as a new assistant turn).
"""

from __future__ import annotations

import re
from typing import Any

from raygent.llm_pool.formats.base import ParsedReply, ToolCallFormat
from raygent.llm_pool.formats.common import (
    content_and_calls,
    dumps,
    extract_untagged_calls,
    parse_json_block,
    remove_spans,
    render_tool_specs,
    render_turns,
    with_tools_section,
)
from raygent.schema import Message, ToolCall, ToolSpec

THINK_OPEN, THINK_CLOSE = "<|startofthink|>", "<|endofthink|>"
EXEC_OPEN, EXEC_CLOSE = "<|startofexec|>", "<|endofexec|>"
_THINK_OPEN = re.compile(r"<\|?\s*start_?of_?think\s*\|?>", re.I)
_THINK_CLOSE = re.compile(r"<\|?\s*/?\s*end_?of_?think\s*\|?>", re.I)
_EXEC_OPEN = re.compile(r"<\|?\s*start_?of_?exec\s*\|?>", re.I)
_EXEC_BLOCK = re.compile(r"<\|?\s*start_?of_?exec\s*\|?>.*?(?:<\|?\s*end_?of_?exec\s*\|?>|\Z)", re.I | re.S)
EXAMPLE = f'{THINK_OPEN}```JSON\n{{"api_name": <tool-name>, "parameters": <args-json-object>}}\n```{THINK_CLOSE}'


class MSAgentFormat(ToolCallFormat):
    """MSAgent think-tags; stops at the exec tag so the model never invents a tool result."""

    name = "msagent"
    #: stop where the tool output would begin: the call's closing tag is still generated
    stop = [EXEC_OPEN]

    def render_tools(self, tools: list[ToolSpec]) -> str:
        if not tools:
            return ""
        return (
            "# Tools\n\nYou can call the following tools, each described as JSON (name, description, "
            f"parameters as a JSON schema) within <tool_list></tool_list>:\n<tool_list>\n{render_tool_specs(tools)}\n"
            "</tool_list>\n\nIf a tool is needed, write the request as a JSON object with the fields api_name and "
            f"parameters between {THINK_OPEN} and {THINK_CLOSE}, exactly like this:\n{EXAMPLE}\n"
            f"The tool result is returned to you between {EXEC_OPEN} and {EXEC_CLOSE}; then answer the user "
            "based on it. If no tool is needed, answer directly."
        )

    def render_call(self, call: ToolCall) -> str:
        return f"{THINK_OPEN}```JSON\n{dumps({'api_name': call.name, 'parameters': call.arguments})}\n```{THINK_CLOSE}"

    @staticmethod
    def render_result(content: str | None) -> str:
        return f"{EXEC_OPEN}```JSON\n{content or ''}\n```{EXEC_CLOSE}"

    def render_messages(self, messages: list[Message], tools: list[ToolSpec] | None) -> list[dict[str, Any]]:
        """Calls become think-tag text after the content; tool results a user turn of exec blocks."""
        turns = render_turns(
            messages,
            lambda m: content_and_calls(m, self.render_call),
            lambda m: self.render_result(m.content),
        )
        return with_tools_section(turns, self.render_tools(tools or []))

    def _parse(self, text: str, tools: list[ToolSpec] | None) -> ParsedReply:
        calls: list[ToolCall] = []
        errors: list[str] = []
        spans: list[tuple[int, int]] = []
        i = 0
        while m := _THINK_OPEN.search(text, i):
            ends = [x for x in (_THINK_CLOSE.search(text, m.end()), _THINK_OPEN.search(text, m.end()),
                                _EXEC_OPEN.search(text, m.end())) if x]
            first = min(ends, key=lambda x: x.start()) if ends else None
            stop = first.start() if first else len(text)  # a cut-off closing tag is fine
            end = first.end() if first and _THINK_CLOSE.fullmatch(first.group()) else stop
            c, e = parse_json_block(text[m.end() : stop], tools, THINK_OPEN + "..." + THINK_CLOSE, EXAMPLE)
            calls, errors = calls + c, errors + e
            spans.append((m.start(), end))
            i = end
        if spans:
            exec_at = _EXEC_OPEN.search(text, spans[-1][1])
            if calls and exec_at:  # anything after an exec tag was invented before the real result
                text = text[: exec_at.start()]
            spans += [x.span() for x in _EXEC_BLOCK.finditer(text)]
            spans += [x.span() for x in _THINK_CLOSE.finditer(text)]
            return ParsedReply(text=remove_spans(text, spans), tool_calls=calls, errors=errors)
        text = _EXEC_BLOCK.sub("", _THINK_CLOSE.sub("", text))
        calls, errors, rest = extract_untagged_calls(text, tools, EXAMPLE)
        return ParsedReply(text=rest, tool_calls=calls, errors=errors)
