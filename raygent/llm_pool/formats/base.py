"""The tool-call format interface: how tools are shown to a text model and how its reply is read.

Formats are independent of backends: the same llama.cpp model can speak Hermes tags,
MSAgent think-tags or ReAct, and an OpenAI backend uses the native format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, Field

from raygent.schema import Message, ToolCall, ToolSpec


class ParsedReply(BaseModel):
    """A model reply split into free text (thought or answer), tool calls and parse errors.

    `errors` are phrased for the model: the agent sends them back on the next step so that the
    model can correct itself, and shows them to the user as `error` events.
    """

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class ToolCallFormat(ABC):
    """Renders tools and structured messages into plain chat turns, and parses replies."""

    name: str = "base"
    #: stop sequences the backend should pass to the engine when this format is used
    stop: list[str] = []

    @abstractmethod
    def render_tools(self, tools: list[ToolSpec]) -> str:
        """The system-prompt section that describes the tools and how to call them."""

    @abstractmethod
    def render_messages(self, messages: list[Message], tools: list[ToolSpec] | None) -> list[dict[str, Any]]:
        """Structured messages (with tool_calls / tool results) -> [{'role','content'}] for a chat template."""

    def parse(self, text: str, tools: list[ToolSpec] | None = None) -> ParsedReply:
        """Read a raw completion. Never raises: unreadable calls become `errors`."""
        try:
            return self._parse(text or "", tools)
        except Exception as e:  # a parser bug must not stop an agent: report it instead
            return ParsedReply(text=(text or "").strip(), errors=[f"Could not read the reply: {e}."])

    @abstractmethod
    def _parse(self, text: str, tools: list[ToolSpec] | None) -> ParsedReply:
        """The format's own reading of a reply (may raise; `parse` guards it)."""
