"""One SQLite connection per store object, driven from one worker thread.

Why a dedicated thread: sqlite3 connections must not be shared between threads mid-transaction,
and the event loop must never block on disk. One thread per store serialises this process's
statements on one connection; other processes (other actors on the same file) are serialised by
SQLite's own file locks, waited for with `busy_timeout`. WAL mode lets readers proceed while a
writer commits, and with `synchronous=NORMAL` a committed transaction survives the death of the
process (only a power loss can drop the last commits; pass `synchronous="FULL"` against that).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


class SQLiteDB:
    """A lazily opened WAL-mode connection plus the thread that uses it; picklable by path."""

    def __init__(self, path: str | Path, *, schema: str = "", synchronous: str = "NORMAL",
                 busy_timeout_s: float = 30.0, checkpoint_interval_s: float | None = None):
        if str(synchronous).upper() not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNC_MODES)}, got {synchronous!r}")
        self.path = str(path)
        self.schema = schema
        self.synchronous = str(synchronous).upper()
        self.busy_timeout_s = busy_timeout_s
        # write-heavy stores (the message hub's log) checkpoint the WAL from a thread of their own:
        # SQLite's automatic checkpoint runs inside a COMMIT and cost a quarter of the log's time
        self.checkpoint_interval_s = checkpoint_interval_s
        self._checkpointer: _Checkpointer | None = None
        # inline fast path only where a commit does not wait for the disk (see `call`)
        self.inline = self.synchronous in ("OFF", "NORMAL")
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # calls handed to the worker thread and not finished yet: while any are pending, later
        # calls queue behind them too, so one object's calls take effect in the order they were made
        self._pending = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "schema": self.schema, "synchronous": self.synchronous,
                "busy_timeout_s": self.busy_timeout_s, "checkpoint_interval_s": self.checkpoint_interval_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], schema=state["schema"], synchronous=state["synchronous"],  # type: ignore[misc]
                      busy_timeout_s=state["busy_timeout_s"],
                      checkpoint_interval_s=state.get("checkpoint_interval_s"))

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            except sqlite3.OperationalError as exc:
                raise RuntimeError(f"cannot open the memory database {self.path!r}: {exc} "
                                   f"(check the folder exists and is writable)") from exc
            mode = self._set_wal(conn)
            if self.path != ":memory:" and str(mode).lower() != "wal":
                conn.close()
                raise RuntimeError(f"{self.path!r} cannot use SQLite's WAL journal (got {mode!r}); put the memory "
                                   f"database on a local file system")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            if self.schema:
                with _transaction(conn):
                    for statement in _statements(self.schema):
                        conn.execute(statement)
            if self.checkpoint_interval_s and self.path != ":memory:":
                # the commit-time checkpoint stays only as a backstop for a checkpointer that falls behind
                conn.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_CHECKPOINT_PAGES}")
                self._checkpointer = _Checkpointer(self.path, self.checkpoint_interval_s)
            if self.inline:  # the inline path must never wait for a lock; the worker thread waits instead
                conn.execute("PRAGMA busy_timeout=0")
            self._conn = conn
        return self._conn

    def _set_wal(self, conn: sqlite3.Connection) -> str:
        """Switch to WAL, retrying while another connection holds the lock: SQLite answers a journal
        mode change with SQLITE_BUSY at once, without the busy handler (seen when four stores
        opened one new file together)."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def call_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the caller's thread, waiting for locks up to `busy_timeout_s`."""
        with self._lock:
            conn = self._connect()
            if not self.inline:
                return fn(conn)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            try:
                return fn(conn)
            finally:
                conn.execute("PRAGMA busy_timeout=0")

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` and await the result without blocking the event loop on a lock.

        Fast path: when this object's connection is free and no other process holds SQLite's write
        lock, `fn` runs right here (a commit without fsync takes tens of microseconds, less than a
        hop to a worker thread). Anything that would wait (a busy lock, `synchronous=FULL` fsyncs)
        runs on the worker thread instead. Calls keep their order: while one waits on the worker
        thread, later calls queue behind it rather than overtaking it on the fast path.
        """
        # the first call opens the connection (and may wait for the schema lock): on the worker thread
        if self.inline and self._conn is not None and not self._pending and self._lock.acquire(blocking=False):
            try:
                conn = self._connect()
                try:
                    return fn(conn)
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or conn.in_transaction:
                        raise
            finally:
                self._lock.release()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raygent-sqlite")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self.call_sync, fn)
        finally:
            self._pending -= 1

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


_BACKSTOP_CHECKPOINT_PAGES = 20_000  # ~80 MB of WAL


class _Checkpointer:
    """Copies the WAL back into the database every `interval_s` on its own connection and thread.

    PASSIVE checkpoints never block writers or readers; sqlite3 releases the GIL while SQLite copies
    pages, so on a machine with a spare core the writer's commits no longer pay for the copy.
    """

    def __init__(self, path: str, interval_s: float):
        self._path = path
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raygent-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopped.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError:  # busy: the next round tries again
                    pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock up front, so two
    writers never both read the same last sequence number."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def transaction(conn: sqlite3.Connection) -> _transaction:
    return _transaction(conn)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
