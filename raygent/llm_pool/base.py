"""The chat-model interface every backend implements (local, pooled, or remote)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

from raygent.schema import Completion, Delta, GenerationParams, Message, ToolSpec


def as_params(params: GenerationParams | dict | None) -> GenerationParams:
    if params is None:
        return GenerationParams()
    if isinstance(params, GenerationParams):
        return params
    return GenerationParams(**params)


class ChatModel(ABC):
    """One chat interface with tool calling and streaming.

    `chat` returns a whole Completion; `stream` yields Deltas whose last item carries the
    finish reason, usage and parsed tool calls. Text in the last delta (beside tool calls) is a
    thought; text in earlier deltas is answer text. Subclasses implement at least `chat`.
    """

    model_name: str = "unknown"

    @abstractmethod
    async def chat(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
        params: GenerationParams | dict | None = None,
    ) -> Completion: ...

    async def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
        params: GenerationParams | dict | None = None,
    ) -> AsyncIterator[Delta]:
        completion = await self.chat(messages, tools, params)
        # text beside tool calls is a thought: it travels in the final delta with the calls
        if completion.text and not completion.tool_calls:
            yield Delta(text=completion.text)
        yield Delta(
            text=completion.text if completion.tool_calls else "",
            tool_calls=completion.tool_calls,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            parse_errors=completion.parse_errors,
        )

    async def get_model_name(self) -> str:
        """Awaitable accessor so callers work the same on an actor proxy."""
        return self.model_name
