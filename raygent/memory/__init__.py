"""raygent.memory: persistent sessions (MemoryStore, SQLite by default), token-budgeted history with
LLM summaries, the agent hook that writes every message as it is produced, and long-term facts."""

from raygent.memory.history import HistoryBudget
from raygent.memory.longterm import Fact, FactHit, LongTermMemory, memory_tools
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

__all__ = [
    "Fact",
    "FactHit",
    "HistoryBudget",
    "LongTermMemory",
    "SessionMemory",
    "memory_tools",
    "MemoryStore",
    "SQLiteMemoryStore",
    "SessionInfo",
    "SessionNotFound",
    "StoredMessage",
    "check_session_id",
    "default_memory_path",
    "deploy_store",
    "new_session_id",
]
