"""SQLite MemoryStore: one row per message, numbered per session, WAL mode.

Why it is crash-safe and race-free: every append is one `BEGIN IMMEDIATE` transaction that reads
the session's last sequence number and inserts after it while holding SQLite's write lock, so
concurrent writers (tasks, threads, processes, actors on the same file) can neither interleave
numbers nor lose a row, and a committed row is on disk before `append` returns.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raygent.memory._sqlite import SQLiteDB, transaction
from raygent.memory.store import (
    MemoryStore,
    SessionInfo,
    StoredMessage,
    check_session_id,
    new_session_id,
)
from raygent.schema import Message

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    role TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID
"""


def default_memory_path() -> Path:
    """RAYGENT_MEMORY_DB, else <RAYGENT_HOME>/memory.sqlite (RAYGENT_HOME as for models)."""
    import os

    from raygent.llm_pool.embedded import raygent_home

    if os.environ.get("RAYGENT_MEMORY_DB"):
        return Path(os.environ["RAYGENT_MEMORY_DB"]).expanduser()
    return raygent_home() / "memory.sqlite"


class SQLiteMemoryStore(MemoryStore):
    """MemoryStore on one SQLite file (default: `default_memory_path()`).

    Pickles by path, so it can be shipped to Ray actors or deployed as one:
    `runtime.deploy(SQLiteMemoryStore, remote=True, init_kwargs={"path": ...})`.
    """

    def __init__(self, path: str | Path | None = None, *, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0):
        if path is None:
            path = default_memory_path()
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self.db = SQLiteDB(self.path, schema=SCHEMA, synchronous=synchronous, busy_timeout_s=busy_timeout_s)

    def __repr__(self) -> str:
        return f"SQLiteMemoryStore({self.path!r})"

    async def get_path(self) -> str:
        return self.path

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                             *, exist_ok: bool = False) -> SessionInfo:
        sid = check_session_id(session_id) if session_id is not None else new_session_id()
        meta = json.dumps(metadata or {}, ensure_ascii=False, default=str)

        def create(conn: sqlite3.Connection) -> SessionInfo:
            now = time.time()
            with transaction(conn):
                inserted = conn.execute("INSERT OR IGNORE INTO sessions (id, created_at, updated_at, metadata) "
                                        "VALUES (?, ?, ?, ?)", (sid, now, now, meta)).rowcount
            if not inserted and not exist_ok:
                raise ValueError(f"session {sid!r} already exists (pass exist_ok=True to reuse it)")
            info = _session(conn, sid)
            assert info is not None
            return info

        return await self.db.call(create)

    async def get_session(self, session_id: str) -> SessionInfo | None:
        check_session_id(session_id)
        return await self.db.call(lambda conn: _session(conn, session_id))

    async def list_sessions(self, limit: int = 100) -> list[SessionInfo]:
        def rows(conn: sqlite3.Connection) -> list[SessionInfo]:
            cur = conn.execute("SELECT id, created_at, updated_at, next_seq, metadata FROM sessions "
                               "ORDER BY updated_at DESC, id LIMIT ?", (int(limit),))
            return [_info(r) for r in cur.fetchall()]

        return await self.db.call(rows)

    async def delete_session(self, session_id: str) -> bool:
        check_session_id(session_id)

        def delete(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                conn.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
                return conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

        return await self.db.call(delete)

    # -- messages --------------------------------------------------------------------------
    async def append_many(self, session_id: str, messages: Sequence[Message]) -> list[int]:
        check_session_id(session_id)
        rows = [(m.role, m.model_dump_json(exclude_defaults=True)) for m in _as_messages(messages)]
        return await self.db.call(lambda conn: _append(conn, session_id, rows))

    def append_many_sync(self, session_id: str, messages: Sequence[Message]) -> list[int]:
        """Blocking `append_many` on the caller's thread (benchmarks, synchronous scripts)."""
        check_session_id(session_id)
        rows = [(m.role, m.model_dump_json(exclude_defaults=True)) for m in _as_messages(messages)]
        return self.db.call_sync(lambda conn: _append(conn, session_id, rows))

    async def records(self, session_id: str, after: int = -1, limit: int | None = None) -> list[StoredMessage]:
        check_session_id(session_id)

        def read(conn: sqlite3.Connection) -> list[tuple]:
            cur = conn.execute("SELECT seq, created_at, body FROM messages WHERE session_id = ? AND seq > ? "
                               "ORDER BY seq LIMIT ?", (session_id, int(after), -1 if limit is None else int(limit)))
            return cur.fetchall()

        return [StoredMessage(session_id=session_id, seq=seq, created_at=created, message=Message.model_validate_json(body))
                for seq, created, body in await self.db.call(read)]

    async def close(self) -> None:
        self.db.close()


def _as_messages(messages: Sequence[Message]) -> list[Message]:
    if isinstance(messages, Message):
        raise TypeError("append_many takes a list of messages; use append for one")
    out = [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
    if not out:
        raise ValueError("append_many needs at least one message")
    return out


def _append(conn: sqlite3.Connection, session_id: str, rows: list[tuple[str, str]]) -> list[int]:
    now, n = time.time(), len(rows)
    with transaction(conn):
        # reserve n numbers (the write lock is held, so no other writer can take the same ones)
        bumped = conn.execute("UPDATE sessions SET next_seq = next_seq + ?, updated_at = ? WHERE id = ? "
                              "RETURNING next_seq", (n, now, session_id)).fetchone()
        if bumped is None:
            conn.execute("INSERT INTO sessions (id, created_at, updated_at, next_seq) VALUES (?, ?, ?, ?)",
                         (session_id, now, now, n))
            first = 0
        else:
            first = bumped[0] - n
        seqs = list(range(first, first + n))
        conn.executemany("INSERT INTO messages (session_id, seq, created_at, role, body) VALUES (?, ?, ?, ?, ?)",
                         [(session_id, seq, now, role, body) for seq, (role, body) in zip(seqs, rows)])
    return seqs


def _info(row: tuple) -> SessionInfo:
    sid, created, updated, count, meta = row
    return SessionInfo(id=sid, created_at=created, updated_at=updated, message_count=count, metadata=json.loads(meta))


def _session(conn: sqlite3.Connection, session_id: str) -> SessionInfo | None:
    row = conn.execute("SELECT id, created_at, updated_at, next_seq, metadata FROM sessions WHERE id = ?",
                       (session_id,)).fetchone()
    return _info(row) if row else None


def deploy_store(path: str | Path | None = None, *, name: str | None = "raygent-memory", **ray_options: Any) -> Any:
    """The MemoryStore actor: a named Ray actor owning the SQLite file (found again by name, restarted
    by Ray if its process dies; committed rows are in the file either way)."""
    from raygent import runtime

    path = str(Path(path).expanduser()) if path is not None else str(default_memory_path())
    return runtime.deploy(SQLiteMemoryStore, remote=True, name=name, init_kwargs={"path": path}, **ray_options)
