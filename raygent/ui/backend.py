"""What the web app needs from raygent, as one interface with two implementations.

`LocalBackend` (raygent.ui.local) runs everything in this process: agents on the embedded model
(or any model of the config), the real tool hubs, the story and portrait teams, and publishes on
the local Ray Serve. `RemoteBackend` (raygent.ui.remote) talks to a running `raygent serve` through
its URL and API key: agent runs over `/v1/runs` (server-sent events), stories over `/v1/rooms`,
files over `/v1/artifacts`.

Every chat yields raygent's own `AgentEvent`s, every story `StoryEvent`s, every portrait job
`PortraitEvent`s, so the page is written once against this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from raygent.schema import AgentEvent
from raygent.serve.app import ServeConfig
from raygent.ui.config import AgentForm


class ToolChoice(BaseModel):
    """A tool the builder offers: its name, its description, and why it cannot run here (if so)."""

    name: str
    description: str = ""
    domain: str | None = None
    missing: str | None = None


class StoryEvent(BaseModel):
    """One thing that happened while a story is made.

    `message`: an envelope between members (sender -> recipient); `progress`: a member's progress
    line; `page`: a page's `field` (text, image or audio) is ready, `value` is the text or a local
    file; `done`: the book is bound (`html`, `files`); `error`: the story failed."""

    type: Literal["message", "progress", "page", "done", "error"]
    text: str = ""
    sender: str | None = None
    recipient: str | None = None
    page: int | None = None
    field: Literal["text", "image", "audio"] | None = None
    value: str | None = None
    title: str | None = None
    html: str | None = None
    files: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    seconds: float | None = None


class PortraitEvent(BaseModel):
    """`progress`: a member's line; `done`: `result` is a raygent.apps.portrait.PortraitResult dump."""

    type: Literal["progress", "done", "error"]
    text: str = ""
    result: dict[str, Any] | None = None


class PublishInfo(BaseModel):
    """Where a published agent answers: its base URL (ending in /v1), the key to use, the agent."""

    url: str
    agent: str
    key: str | None = None
    key_id: str | None = None
    note: str = ""


def tool_choices() -> list[ToolChoice]:
    """The built-in tools (the names a serve config's `tools` may use), with their descriptions."""
    from raygent.toolhub.builtin import BUILTIN_TOOLS, missing_requirements

    return [ToolChoice(name=name, description=str(cls.description), domain=getattr(cls, "domain", None),
                       missing=missing_requirements(name)) for name, cls in BUILTIN_TOOLS.items()]


class Backend(ABC):
    """The web app's view of raygent. `session` is the browser tab's conversation id."""

    kind: str = "?"

    @abstractmethod
    def config(self) -> ServeConfig:
        """The config whose `models` the builder offers (and whose agents it can load)."""

    def tools(self) -> list[ToolChoice]:
        return tool_choices()

    @abstractmethod
    def chat(self, session: str, form: AgentForm, text: str) -> AsyncIterator[AgentEvent]:
        """Run one user turn of the form's agent in `session`; history is kept until `reset`."""

    @abstractmethod
    async def reset(self, session: str) -> None:
        """Forget the conversation of `session`."""

    @abstractmethod
    def story(self, topic: str, pages: int, language: str | None = None) -> AsyncIterator[StoryEvent]:
        """Make a storybook with the storybook team, streaming what happens."""

    @abstractmethod
    def portrait(self, photos: list[str], style: str, *, use_llm: bool = True) -> AsyncIterator[PortraitEvent]:
        """Inspect the photos and paint the accepted ones in the style; then a contact sheet. The
        stylist reads the style words with the model (`use_llm`) or with its rules."""

    @abstractmethod
    async def publish(self, config: ServeConfig, agent: str) -> PublishInfo:
        """Serve the config's agent over HTTP (`raygent serve`) and hand out a key for it."""

    async def add_knowledge(self, kb: str, files: list[str]) -> str:
        """Put uploaded files into knowledge base `kb`; returns a one-line summary."""
        raise NotImplementedError(f"the {self.kind} backend cannot take uploads")

    def builder_llm(self) -> Any:
        """The chat model the builder agent runs on."""
        raise NotImplementedError

    def allowed_paths(self) -> list[str]:
        """Folders whose files the page may show (artifacts, books, portraits)."""
        return []

    async def close(self) -> None:
        return None


def work_dir() -> Path:
    """Where the app writes books and portraits: $RAYGENT_HOME/ui."""
    from raygent.llm_pool.embedded import raygent_home

    path = raygent_home() / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["Backend", "ToolChoice", "StoryEvent", "PortraitEvent", "PublishInfo", "tool_choices", "work_dir"]
