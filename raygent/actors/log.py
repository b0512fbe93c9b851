"""The durable side of a MessageHub: every envelope it accepts, per recipient, until acknowledged.

A hub keeps mailboxes in memory for speed and writes through a `MessageLog` for durability: an
envelope is in the log (committed) before `send` returns, and stays "unacked" until its recipient
acknowledges it. A hub that starts (first time, or restarted by Ray on this or another node) reads
`unacked()` and delivers those again, so nothing accepted is lost; `(recipient, envelope id)` is
unique in the log, so a sender's retry or a re-run step does not store a second copy.

Backends: `SQLiteLog` (embedded, one machine; group commits) and
`raygent.actors.redis_log.RedisStreamsLog` (a cluster: Redis Streams with consumer groups,
XACK, pending-entry lists and claiming, so a hub on another node finds the log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from raygent.memory._sqlite import SQLiteDB, transaction
from raygent.schema import Envelope


@runtime_checkable
class MessageLog(Protocol):
    """What a hub needs from its persistence. All methods are async; `append` and `ack` are durable
    when they return."""

    async def open(self) -> None:
        """Connect / create the schema. Called once by the hub before anything else."""

    async def append(self, entries: Sequence[tuple[str, Envelope]]) -> list[bool]:
        """Persist `(recipient, envelope)` pairs in this order. One bool per pair: True where it was
        stored, False where that recipient already has that envelope id (a duplicate: not stored
        again, and the hub must not deliver it again)."""

    async def ack(self, recipient: str, ids: Sequence[str]) -> int:
        """Mark these envelopes handled by `recipient` (never delivered again); returns how many
        were unacked before. Unknown ids are ignored."""

    async def unacked(self) -> list[tuple[str, Envelope]]:
        """Every stored pair not yet acked, each recipient's in the order appended."""

    async def subscribe(self, topic: str, recipient: str) -> None:
        """Remember that `recipient` receives what is published on `topic` (idempotent)."""

    async def unsubscribe(self, topic: str, recipient: str) -> None: ...

    async def subscriptions(self) -> dict[str, list[str]]:
        """topic -> recipients, in the order they subscribed."""

    async def cancel_room(self, room: str, reason: str) -> None:
        """Remember that `room` was cancelled (a restarted hub keeps refusing its messages)."""

    async def cancelled_rooms(self) -> dict[str, str]:
        """room -> reason, for every cancelled room."""

    async def counts(self) -> dict[str, int]:
        """{"appended": stored pairs, "acked": acknowledged pairs, "unacked": the rest}."""

    async def close(self) -> None: ...


class GroupCommit:
    """Coalesces concurrent writes: each `submit(op, payload)` waits for the next flush, and one flush
    hands everything queued since the last one to `apply` (one transaction, one pipeline), which
    returns one result per item, or an exception instance for an item that failed."""

    def __init__(self, apply: Callable[[list[tuple[str, Any]]], Awaitable[list[Any]]]):
        self._apply = apply
        self._pending: list[tuple[str, Any, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def submit(self, op: str, payload: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((op, payload, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())
        return await future

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._apply([(op, payload) for op, payload, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, _, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def drain(self) -> None:
        """Wait for what was submitted to be written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS hub_envelopes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    UNIQUE (recipient, id)
);
CREATE INDEX IF NOT EXISTS hub_envelopes_unacked ON hub_envelopes (seq) WHERE acked = 0;
CREATE TABLE IF NOT EXISTS hub_subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    recipient TEXT NOT NULL,
    UNIQUE (topic, recipient)
);
CREATE TABLE IF NOT EXISTS hub_rooms (
    room TEXT PRIMARY KEY,
    cancelled_reason TEXT NOT NULL
)
"""


class SQLiteLog:
    """The embedded log: one SQLite file (WAL), shared with raygent.memory's connection handling.

    Writes are group-committed: appends and acks made while a commit is under way wait for the next
    one and go in together, so many concurrent senders cost one transaction, not one each.
    `path=":memory:"` keeps the log in memory (no durability: for tests of the hub's logic only).
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "NORMAL"):
        self.path = str(path)
        self.synchronous = synchronous
        self._db: SQLiteDB | None = None
        self._commits = GroupCommit(self._apply_batch)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "synchronous": self.synchronous}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], synchronous=state["synchronous"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SQLiteLog({self.path!r})"

    @property
    def db(self) -> SQLiteDB:
        if self._db is None:
            raise RuntimeError("SQLiteLog used before open()")
        return self._db

    async def open(self) -> None:
        if self._db is None:
            self._db = SQLiteDB(self.path, schema=_SCHEMA, synchronous=self.synchronous, checkpoint_interval_s=0.05)
            await self._db.call(lambda conn: None)

    async def _submit(self, op: str, payload: Any) -> Any:
        return await self._commits.submit(op, payload)

    async def _apply_batch(self, batch: list[tuple[str, Any]]) -> list[Any]:
        return await self.db.call(lambda conn: _apply(conn, batch))

    async def append(self, entries: Sequence[tuple[str, Envelope]]) -> list[bool]:
        if not entries:
            return []
        rows = [(recipient, env.id, env.model_dump_json()) for recipient, env in entries]
        return await self._submit("append", rows)

    async def ack(self, recipient: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return await self._submit("ack", [(recipient, i) for i in ids])

    # -- reads and rarely-written state ------------------------------------------------------
    async def unacked(self) -> list[tuple[str, Envelope]]:
        rows = await self.db.call(lambda conn: conn.execute(
            "SELECT recipient, body FROM hub_envelopes WHERE acked = 0 ORDER BY seq").fetchall())
        return [(recipient, Envelope.model_validate_json(body)) for recipient, body in rows]

    async def subscribe(self, topic: str, recipient: str) -> None:
        await self.db.call(lambda conn: conn.execute(
            "INSERT OR IGNORE INTO hub_subscriptions (topic, recipient) VALUES (?, ?)", (topic, recipient)))

    async def unsubscribe(self, topic: str, recipient: str) -> None:
        await self.db.call(lambda conn: conn.execute(
            "DELETE FROM hub_subscriptions WHERE topic = ? AND recipient = ?", (topic, recipient)))

    async def subscriptions(self) -> dict[str, list[str]]:
        rows = await self.db.call(lambda conn: conn.execute(
            "SELECT topic, recipient FROM hub_subscriptions ORDER BY seq").fetchall())
        out: dict[str, list[str]] = {}
        for topic, recipient in rows:
            out.setdefault(topic, []).append(recipient)
        return out

    async def cancel_room(self, room: str, reason: str) -> None:
        await self.db.call(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO hub_rooms (room, cancelled_reason) VALUES (?, ?)", (room, reason)))

    async def cancelled_rooms(self) -> dict[str, str]:
        rows = await self.db.call(lambda conn: conn.execute("SELECT room, cancelled_reason FROM hub_rooms").fetchall())
        return dict(rows)

    async def counts(self) -> dict[str, int]:
        appended, acked = await self.db.call(lambda conn: conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(acked), 0) FROM hub_envelopes").fetchone())
        return {"appended": appended, "acked": acked, "unacked": appended - acked}

    async def close(self) -> None:
        await self._commits.drain()
        if self._db is not None:
            self._db.close()
            self._db = None


_INSERT = "INSERT OR IGNORE INTO hub_envelopes (recipient, id, body) VALUES (?, ?, ?)"


def _which_stored(conn: Any, rows: list[tuple[str, str, str]], floor: int) -> list[bool]:
    """After an INSERT OR IGNORE batch with duplicates: True for the rows the batch stored (those
    with a sequence number above `floor`, the highest before the batch; the first of repeats)."""
    inserted = set(conn.execute("SELECT recipient, id FROM hub_envelopes WHERE seq > ?", (floor,)).fetchall())
    out: list[bool] = []
    for recipient, env_id, _ in rows:
        key = (recipient, env_id)
        out.append(key in inserted)
        inserted.discard(key)
    return out


def _apply(conn: Any, batch: list[tuple[str, Any]]) -> list[Any]:
    """One transaction for a batch of appends and acks, in the order they were made."""
    results: list[Any] = []
    with transaction(conn):
        for op, payload in batch:
            if op == "append":
                floor = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM hub_envelopes").fetchone()[0]
                before = conn.total_changes
                conn.executemany(_INSERT, payload)
                if conn.total_changes - before == len(payload):
                    results.append([True] * len(payload))  # the usual case: nothing was a duplicate
                else:
                    results.append(_which_stored(conn, payload, floor))
            else:  # ack
                before = conn.total_changes
                conn.executemany("UPDATE hub_envelopes SET acked = 1 WHERE recipient = ? AND id = ? AND acked = 0",
                                 payload)
                results.append(conn.total_changes - before)
    return results
