"""The request and response bodies of raygent's agent API, shared by the HTTP routes, A2A and tests.

Typed here (not parsed by hand in the routes) so that `/openapi.json` describes every body and a
client or fuzzer knows what to send.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from raygent.schema import AgentEvent, Message, RunResult, new_id


class ToolCard(BaseModel):
    name: str
    description: str = ""


class AgentCard(BaseModel):
    """What `GET /v1/agents` lists for each agent, and what its A2A card is made from."""

    name: str
    description: str = ""
    model: str
    tools: list[ToolCard] = Field(default_factory=list)
    max_steps: int = 6
    memory: bool = True


class RunRequest(BaseModel):
    """Start an agent run: `input` is the user's text (or whole messages, the last one the user's);
    `session_id` continues a conversation kept by the server (multi-turn)."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(default=None, description="the agent to run; default: the server's default agent")
    input: str | list[Message] = Field(description="the user's text, or messages ending with the user's")
    session_id: str | None = Field(default=None, description="continue this session (created when new)")
    max_steps: int | None = Field(default=None, ge=1, le=50)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    stream: bool = Field(default=False, description="also possible: send Accept: text/event-stream")

    def text(self) -> str:
        if isinstance(self.input, str):
            return self.input
        for message in reversed(self.input):
            if message.role == "user" and message.content:
                return message.content
        raise ValueError("input messages have no user message with text")


RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class RunRecord(BaseModel):
    """A run as stored and returned by `GET /v1/runs/{id}`; only the key that started it sees it."""

    id: str = Field(default_factory=lambda: new_id("run"))
    agent: str
    owner: str = "anonymous"
    session_id: str | None = None
    status: RunStatus = "queued"
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    result: RunResult | None = None
    error: str | None = None


@runtime_checkable
class AgentRunner(Protocol):
    """What the HTTP routes and the A2A server need from a served agent (a Serve deployment's
    handle wrapper, or an in-process agent in tests)."""

    async def card(self) -> AgentCard: ...

    def stream(self, request: RunRequest, owner: str = "anonymous") -> AsyncIterator[AgentEvent]: ...


def event_payload(event: AgentEvent) -> dict[str, Any]:
    """An AgentEvent as JSON for SSE and the chat stream's extension field (timestamps kept)."""
    return event.model_dump(mode="json", exclude_none=True)


class ChatMessageBody(BaseModel):
    """One message of an OpenAI chat request (content may be text or a list of content parts)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatCompletionBody(BaseModel):
    """`POST /v1/chat/completions`: OpenAI's request. `model` names a served model or agent; for an
    agent, `session_id` (raygent's extension) continues a conversation kept by the server, and the
    stream carries the agent's step events in each chunk's `raygent_event` field."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessageBody] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    user: str | None = None
    session_id: str | None = Field(default=None, description="raygent: continue this server-kept session (agents)")


class RoomRequest(BaseModel):
    """`POST /v1/rooms`: start a multi-agent team; its events stream back as SSE."""

    model_config = ConfigDict(extra="forbid")

    app: Literal["story"] = "story"
    topic: str = Field(min_length=1, max_length=2000)
    pages: int = Field(default=4, ge=1, le=12)
    language: Literal["auto", "en", "zh"] = "auto"
    #: the team's model (a served model's name); default: the default agent's model
    model: str | None = Field(default=None, max_length=200)


class SessionView(BaseModel):
    id: str
    agent: str | None = None
    created_at: float
    updated_at: float
    messages: list[Message]
