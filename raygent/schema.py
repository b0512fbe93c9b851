"""Pydantic models shared by every raygent component.

Messages are a superset of OpenAI's chat format so that any backend, tool hub or
memory store can exchange them without adapters; everything crossing a component
boundary (in-process or between Ray actors) is one of these models.
"""

from __future__ import annotations

import copyreg
import json
import os
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


def new_id(prefix: str = "call") -> str:
    """A random id (64 bits, 16 hex digits): os.urandom, a fifth of uuid4's cost per call."""
    return f"{prefix}_{os.urandom(8).hex()}"


_object_setattr = object.__setattr__


class WireModel(BaseModel):
    """A model that crosses process boundaries by the thousand (hub envelopes, messages).

    Pickles as (fields, fields set) and restores without validation or pydantic's generic state
    dict: pickling and unpickling a batch of envelopes takes about half as long, and every message
    through a hub actor is pickled four times. Models with extra or private attributes fall back to
    pydantic's own state.
    """

    def __reduce__(self) -> Any:
        if self.__pydantic_extra__ is None and self.__pydantic_private__ is None:
            return copyreg.__newobj__, (type(self),), (self.__dict__, self.__pydantic_fields_set__)
        return super().__reduce__()

    def __setstate__(self, state: Any) -> None:
        if type(state) is not tuple:
            super().__setstate__(state)
            return
        values, fields_set = state
        _object_setattr(self, "__dict__", values)
        _object_setattr(self, "__pydantic_fields_set__", fields_set)
        _object_setattr(self, "__pydantic_extra__", None)
        _object_setattr(self, "__pydantic_private__", None)


class Artifact(WireModel):
    """A file a tool produced (audio, image, video, other), referenced by path/URI."""

    kind: Literal["audio", "image", "video", "file"] = "file"
    uri: str
    mime_type: str | None = None
    size_bytes: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCall(WireModel):
    """One request from the model to run a tool."""

    id: str = Field(default_factory=new_id)
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


class Message(WireModel):
    """A chat message: OpenAI's shape plus artifacts and free metadata."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str | None = None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or None)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class ToolExample(BaseModel):
    """A request that should trigger the tool, with the arguments it should get (few-shot material)."""

    query: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(BaseModel):
    """What a model needs to know to call a tool: a name, a description, a JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    domain: str | None = None
    timeout_s: float | None = None
    examples: list[ToolExample] = Field(default_factory=list)

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ToolResult(BaseModel):
    """The outcome of one tool call; `error` is set instead of raising so the agent keeps going."""

    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def content_for_model(self, max_chars: int = 4000) -> str:
        """The text the model sees for this result (errors are phrased so it can correct itself).
        Errors are cut like outputs: one may quote a huge argument, and the context has no room."""
        if self.error is not None:
            return _clip_for_model(f"ERROR: {self.error}", max_chars)
        out = self.output
        try:
            text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False, default=str)
        except ValueError as exc:  # an int past Python's 4300-digit str limit, a circular structure
            text = f"(the tool's output cannot be shown as JSON: {exc})"
        return _clip_for_model(text, max_chars)


def _clip_for_model(text: str, max_chars: int) -> str:
    if len(text) > max_chars:
        text = text[:max_chars] + f"... [truncated, {len(text)} chars in total]"
    return text


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_prompt_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
        )


ToolChoice = Literal["auto", "none", "required"] | str


class GenerationParams(BaseModel):
    """Sampling and tool-choice settings for one chat request."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 0
    tool_choice: ToolChoice = "auto"


class Completion(BaseModel):
    """A finished model reply: free text and/or parsed tool calls."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    finish_reason: Literal["stop", "length", "tool_calls", "error"] = "stop"
    model: str = ""
    raw: str = ""
    parse_errors: list[str] = Field(default_factory=list)


class Delta(BaseModel):
    """A streamed piece of a reply; the last delta carries finish_reason, usage and tool calls."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    parse_errors: list[str] = Field(default_factory=list)


EventType = Literal["thought", "tool_call", "tool_result", "answer_delta", "error", "done"]


class AgentEvent(BaseModel):
    """One streamed step event of an agent run."""

    type: EventType
    step: int = 0
    text: str | None = None
    tool_call: ToolCall | None = None
    tool_result: ToolResult | None = None
    result: RunResult | None = None
    timestamp: float = Field(default_factory=time.time)


class ToolCallRecord(BaseModel):
    """A tool call as reported to the user: what was asked, what came back."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str | None = None


class RunResult(BaseModel):
    """The outcome of `Agent.run`: the answer plus every tool call made on the way."""

    answer: str
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    stop_reason: Literal["answer", "max_steps", "error"] = "answer"
    error: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    #: the run's id: its trace is `raygent trace RUN_ID` (the API's run id for runs it started)
    run_id: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "tool_calls": [c.model_dump() for c in self.tool_calls],
            "steps": self.steps,
            "usage": self.usage.model_dump(),
            "model": self.model,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "run_id": self.run_id,
        }


EnvelopeKind = Literal["message", "event", "control"]


class Envelope(WireModel):
    """One Message travelling between agents through a MessageHub.

    `id` is the dedupe key: a hub stores an id once per recipient, and a receiver handles it once,
    so a sender that retries (or a coordinator that re-runs a step after a crash) sends the same id
    again instead of a second message. Media travel as `artifacts` (references), never inline bytes.
    `kind` is "message" for conversation, "event" for live room events (not persisted), "control"
    for hub signals such as a room's cancellation.
    """

    id: str = Field(default_factory=lambda: new_id("env"))
    sender: str
    recipient: str | None = None
    topic: str | None = None
    room: str = "default"
    content: Message
    artifacts: list[Artifact] = Field(default_factory=list)
    correlation_id: str | None = None
    reply_to: str | None = None
    created_at: float = Field(default_factory=time.time)
    attempt: int = 1
    kind: EnvelopeKind = "message"
    headers: dict[str, Any] = Field(default_factory=dict)

    def reply(self, content: Message | str, *, sender: str | None = None, index: int = 0,
              **fields: Any) -> Envelope:
        """The answer to this envelope, addressed to `reply_to` (else the sender), with a stable id
        derived from this one: re-handling the same envelope after a crash yields the same reply id,
        which the hub stores once."""
        message = Message.assistant(content) if isinstance(content, str) else content
        return Envelope(id=f"{self.id}.r{index}", sender=sender or self.recipient or "?",
                        recipient=self.reply_to or self.sender, room=self.room, content=message,
                        correlation_id=self.correlation_id or self.id, **fields)


AgentEvent.model_rebuild()
