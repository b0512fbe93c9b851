"""raygent.memory: persistent sessions (MemoryStore, SQLite by default), token-budgeted history with
LLM summaries, the agent hook that writes every message as it is produced, and long-term facts."""

from raygent.memory.sqlite_store import SQLiteMemoryStore, default_memory_path
from raygent.memory.store import (
    MemoryStore,
    SessionInfo,
    SessionNotFound,
    StoredMessage,
    check_session_id,
    new_session_id,
)

__all__ = [
    "MemoryStore",
    "SQLiteMemoryStore",
    "SessionInfo",
    "SessionNotFound",
    "StoredMessage",
    "check_session_id",
    "default_memory_path",
    "new_session_id",
]
