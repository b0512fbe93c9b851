"""raygent.memory: persistent sessions (MemoryStore: SQLite by default, Redis on a cluster), token-budgeted
history with LLM summaries, the agent hook that writes every message as it is produced, and long-term facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raygent.memory.history import HistoryBudget
from raygent.memory.longterm import Fact, FactHit, LongTermMemory, memory_tools
from raygent.memory.redis_store import RedisMemoryStore
from raygent.memory.session import SessionMemory
from raygent.memory.sqlite_store import SQLiteMemoryStore, default_memory_path, deploy_store
from raygent.memory.store import (
    MemoryStore,
    SessionInfo,
    SessionNotFound,
    StoredMessage,
    check_session_id,
    new_session_id,
)
from raygent.redis_support import is_redis_url

__all__ = [
    "Fact",
    "FactHit",
    "HistoryBudget",
    "LongTermMemory",
    "SessionMemory",
    "memory_tools",
    "MemoryStore",
    "RedisMemoryStore",
    "SQLiteMemoryStore",
    "SessionInfo",
    "SessionNotFound",
    "StoredMessage",
    "check_session_id",
    "default_memory_path",
    "deploy_store",
    "new_session_id",
    "open_memory_store",
]

def open_memory_store(url: str | Path | None = None, **kwargs: Any) -> MemoryStore:
    """The store a state URL names, so one setting picks the backend: None -> SQLite at
    `default_memory_path()` (one machine); `sqlite://PATH` (`sqlite:///abs/file.sqlite`) or a plain
    path -> that SQLite file; `redis://`, `rediss://` or `unix://` -> RedisMemoryStore (a cluster).
    `kwargs` go to the store's constructor."""
    if url is None:
        return SQLiteMemoryStore(**kwargs)
    text = str(url)
    if is_redis_url(text):
        return RedisMemoryStore(text, **kwargs)
    if text.startswith("sqlite://"):
        path = text[len("sqlite://"):]
        if not path:
            raise ValueError("sqlite:// needs a path: sqlite:///abs/memory.sqlite")
        return SQLiteMemoryStore(path, **kwargs)
    if "://" in text:
        raise ValueError(f"unsupported memory store URL {text!r}: use sqlite://PATH, redis://HOST:PORT/DB "
                         f"(or rediss://, unix://), or None for SQLite under RAYGENT_HOME")
    return SQLiteMemoryStore(text, **kwargs)
