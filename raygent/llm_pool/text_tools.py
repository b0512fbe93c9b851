"""Text tool-call formats over chat endpoints that take plain messages (remote servers without
native `tools`): render the tools and history into plain turns, read calls back from the reply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.formats import ToolCallFormat
from raygent.schema import Completion, GenerationParams, Message, ToolSpec

#: how a reply that is (or starts with) a tool call opens, in any of the text formats
CALL_OPENERS = ("<", "{", "`", "Action:", "Thought:", "<|startofthink|>")


def offered_tools(tools: Sequence[ToolSpec] | None, params: GenerationParams) -> list[ToolSpec]:
    return list(tools or []) if params.tool_choice != "none" else []


def render_plain(fmt: ToolCallFormat, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                 params: GenerationParams) -> tuple[list[dict[str, Any]], list[str]]:
    """(plain {'role','content'} turns with the tools described in the system turn, stop sequences)."""
    offered = offered_tools(tools, params)
    plain = fmt.render_messages(list(messages), offered or None)
    stop = list(dict.fromkeys([*params.stop, *(fmt.stop if offered else [])]))
    return [{"role": m["role"], "content": m["content"]} for m in plain], stop


def parse_completion(fmt: ToolCallFormat, completion: Completion, tools: Sequence[ToolSpec] | None,
                     params: GenerationParams) -> Completion:
    """Read tool calls out of a text reply (unchanged when no tools were offered)."""
    offered = offered_tools(tools, params)
    if not offered:
        return completion
    parsed = fmt.parse(completion.text, offered)
    reason = "tool_calls" if parsed.tool_calls else completion.finish_reason
    return completion.model_copy(update={"text": parsed.text, "tool_calls": parsed.tool_calls,
                                         "finish_reason": reason, "raw": completion.text,
                                         "parse_errors": [*completion.parse_errors, *parsed.errors]})


def opens_like_call(text: str) -> bool:
    return text.lstrip().startswith(CALL_OPENERS)
