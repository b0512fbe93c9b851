"""The MemoryStore interface: sessions of ordered messages that outlive the process running them.

A store is the source of truth for a conversation: the agent appends every message as soon as it
exists, so a coordinator that dies mid-turn loses nothing, and a new one resumes from `load`.
Every method is async and takes/returns pydantic models, so the same code works with a store in
this process or behind a Ray actor (`runtime.deploy(SQLiteMemoryStore, ...)`).
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from raygent.schema import Message

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def check_session_id(session_id: str) -> str:
    """Session ids are 1-128 characters of letters, digits and `._:@-` (safe in paths and URIs)."""
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise ValueError(f"invalid session id {session_id!r}: use 1-128 letters, digits or '._:@-', "
                         f"starting with a letter or digit")
    return session_id


def new_session_id() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


class SessionInfo(BaseModel):
    """A session as listed: its id, when it was made and last written, how many messages it holds."""

    id: str
    created_at: float
    updated_at: float
    message_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


class StoredMessage(BaseModel):
    """A message with its place in the session: `seq` counts from 0 without gaps."""

    session_id: str
    seq: int
    created_at: float
    message: Message


class SessionNotFound(KeyError):
    """Raised by `require_session`: the id names no session in this store."""


class MemoryStore(ABC):
    """Sessions of messages, appended atomically and read back in order.

    Sessions never see each other's messages. `append` creates the session if it does not exist
    yet, so a first turn needs no separate call.
    """

    @abstractmethod
    async def create_session(self, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                             *, exist_ok: bool = False) -> SessionInfo: ...

    @abstractmethod
    async def get_session(self, session_id: str) -> SessionInfo | None: ...

    @abstractmethod
    async def list_sessions(self, limit: int = 100) -> list[SessionInfo]:
        """Most recently written first."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> bool:
        """Delete a session and its messages; False when there was none."""

    @abstractmethod
    async def append_many(self, session_id: str, messages: Sequence[Message]) -> list[int]:
        """Append messages in one transaction (all or none); returns their sequence numbers."""

    @abstractmethod
    async def records(self, session_id: str, after: int = -1, limit: int | None = None) -> list[StoredMessage]:
        """Messages with seq > `after`, in order."""

    async def append(self, session_id: str, message: Message) -> int:
        """Append one message; returns its sequence number."""
        return (await self.append_many(session_id, [message]))[0]

    async def load(self, session_id: str) -> list[Message]:
        """The whole session, in order (empty for an unknown session)."""
        return [r.message for r in await self.records(session_id)]

    async def get_message(self, session_id: str, seq: int) -> StoredMessage | None:
        found = await self.records(session_id, after=seq - 1, limit=1)
        return found[0] if found and found[0].seq == seq else None

    async def require_session(self, session_id: str) -> SessionInfo:
        info = await self.get_session(session_id)
        if info is None:
            raise SessionNotFound(f"no session {session_id!r} in this memory store")
        return info

    async def close(self) -> None:
        """Release connections (the store reopens them on next use)."""
