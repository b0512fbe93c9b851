"""The native format: for backends that take OpenAI `tools` and return calls structurally."""

from __future__ import annotations

from typing import Any

from raygent.llm_pool.formats.base import ParsedReply, ToolCallFormat
from raygent.schema import Message, ToolSpec


class NativeFormat(ToolCallFormat):
    """Pass-through: tools go in the request's `tools` field, so nothing is rendered or parsed."""

    name = "native"
    stop: list[str] = []

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return ""

    def render_messages(self, messages: list[Message], tools: list[ToolSpec] | None) -> list[dict[str, Any]]:
        return [m.to_openai() for m in messages]

    def _parse(self, text: str, tools: list[ToolSpec] | None) -> ParsedReply:
        return ParsedReply(text=text)
