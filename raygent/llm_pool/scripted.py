"""A chat model that replays given replies and records every request. For tests; never a default."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from raygent.llm_pool.base import ChatModel, as_params
from raygent.llm_pool.formats import ToolCallFormat, get_format
from raygent.schema import Completion, GenerationParams, Message, ToolSpec, Usage


class ScriptExhausted(RuntimeError):
    pass


class ScriptedChatModel(ChatModel):
    """Replays `replies` in order. A str reply is parsed with `format` (so parser behaviour is
    exercised exactly as with a real model); a Completion is returned as is. `delay_s` makes each
    reply take that long (for concurrency and back-pressure tests)."""

    def __init__(self, replies: Sequence[str | Completion], *, format: str | ToolCallFormat = "hermes",
                 model_name: str = "scripted", delay_s: float = 0.0):
        self.replies = list(replies)
        self.delay_s = delay_s
        self.format = get_format(format)
        self.model_name = model_name
        self.requests: list[dict] = []

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        p = as_params(params)
        self.requests.append({"messages": [m.model_copy() for m in messages],
                              "tools": [t.name for t in tools or []], "params": p})
        if len(self.requests) > len(self.replies):
            raise ScriptExhausted(f"scripted model has only {len(self.replies)} replies")
        reply = self.replies[len(self.requests) - 1]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if isinstance(reply, Completion):
            return reply
        parsed = self.format.parse(reply, list(tools) if tools else None)
        n_prompt = sum(len(m.content or "") for m in messages) // 4
        n_out = max(1, len(reply) // 4)
        return Completion(text=parsed.text, tool_calls=parsed.tool_calls, raw=reply, model=self.model_name,
                          finish_reason="tool_calls" if parsed.tool_calls else "stop", parse_errors=parsed.errors,
                          usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out))

    async def get_requests(self) -> list[dict]:
        return self.requests


class ToolThenAnswerModel(ChatModel):
    """A rule instead of a script, so concurrent runs on one replica never take each other's reply:
    after a user message it calls `tool` with `{argument: the user's text}`; after a tool result it
    answers `answer` formatted with the result (`{result}`). For servers and benchmarks that measure
    everything but the model (config: `{type: scripted, tool_then_answer: {tool, argument}}`)."""

    def __init__(self, tool: str, argument: str, *, answer: str = "The result is {result}.",
                 model_name: str = "tool-then-answer", delay_s: float = 0.0):
        self.tool = tool
        self.argument = argument
        self.answer = answer
        self.model_name = model_name
        self.delay_s = delay_s

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        from raygent.schema import ToolCall

        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        last = messages[-1] if messages else Message.user("")
        usage = Usage(prompt_tokens=sum(len(m.content or "") for m in messages) // 4, completion_tokens=8,
                      total_tokens=sum(len(m.content or "") for m in messages) // 4 + 8)
        if last.role == "tool":
            return Completion(text=self.answer.format(result=last.content), model=self.model_name,
                              finish_reason="stop", usage=usage)
        call = ToolCall(name=self.tool, arguments={self.argument: last.content or ""})
        return Completion(text="", tool_calls=[call], model=self.model_name, finish_reason="tool_calls", usage=usage)
