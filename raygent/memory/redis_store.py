"""Redis MemoryStore: the cluster backend, on the Redis server the message hub already uses.

SQLite under RAYGENT_HOME is one machine's store; agent replicas on several nodes need one they all
reach, and a store actor restarted elsewhere must find everything. Same semantics as
SQLiteMemoryStore (see raygent.memory.store); the server is the one source of truth.

Keys, all under the hash tag `{prefix}` (one Redis Cluster slot, so a script may touch several):

    {prefix}:session:<id>   hash: created_at, updated_at, next_seq (= message count), metadata (JSON)
    {prefix}:messages:<id>  list: message `seq` is its index; each entry is "<created_at>|<message JSON>"
    {prefix}:recent         sorted set of session ids scored by updated_at (`list_sessions`)
    {prefix}:op:<token>     the first seq of an append, kept 60 s (a retried append is applied once)

Why appends are gap-free and race-free: `append_many` is one Lua script (atomic on the server) that
reserves n numbers with HINCRBY and pushes n entries, so appenders in any number of processes or
nodes can neither share a number nor interleave a batch. Times are the server's (TIME), one clock
for every node. redis-py resends a command whose connection dropped; the script's token makes a
resent append return the first call's numbers instead of appending twice. Durability is the
server's: run it with `appendonly yes` and `maxmemory-policy noeviction` (a warning is logged when
it persists nothing).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from raygent.memory.sqlite_store import _as_messages
from raygent.memory.store import MemoryStore, SessionInfo, StoredMessage, check_session_id, new_session_id
from raygent.redis_support import redis_asyncio, safe_url
from raygent.schema import Message

log = logging.getLogger(__name__)

OP_TTL_S = 60  # how long an append's token is kept: longer than redis-py's retries of one command
_FIELDS = ("created_at", "updated_at", "next_seq", "metadata")

_NOW = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
"""

# KEYS: session, recent. ARGV: id, metadata JSON. Returns {created (0/1), fields of the session}.
_CREATE = _NOW + """
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'created_at', now, 'updated_at', now, 'next_seq', 0, 'metadata', ARGV[2])
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  created = 1
end
return {created, redis.call('HMGET', KEYS[1], 'created_at', 'updated_at', 'next_seq', 'metadata')}
"""

# KEYS: session, messages, recent, op. ARGV: id, op TTL, message JSON... Returns the first seq.
_APPEND = """
local done = redis.call('GET', KEYS[4])
if done then
  return tonumber(done)
end
""" + _NOW + """
local n = #ARGV - 2
local first = redis.call('HINCRBY', KEYS[1], 'next_seq', n) - n
redis.call('HSETNX', KEYS[1], 'created_at', now)
redis.call('HSETNX', KEYS[1], 'metadata', '{}')
redis.call('HSET', KEYS[1], 'updated_at', now)
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[2], now .. '|' .. ARGV[i])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('SET', KEYS[4], first, 'EX', tonumber(ARGV[2]))
return first
"""


def _redis_module() -> Any:
    return redis_asyncio("RedisMemoryStore")


class RedisMemoryStore(MemoryStore):
    """MemoryStore on a Redis server (redis://, rediss:// or unix:// URL); see the module docstring.

    Picklable by configuration (url, prefix, connect_timeout), so it can be sent to Ray actors or
    deployed as one; it connects on first use, in every process and event loop it is used from.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "raygent:mem",
                 connect_timeout: float = 5.0):
        _redis_module()  # fail here, where the store is configured, when redis-py is missing
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.base = f"{{{prefix}}}"
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self._guard: AsyncGenerator[None, None] | None = None
        self._checked = False

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "prefix": self.prefix, "connect_timeout": self.connect_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], prefix=state["prefix"], connect_timeout=state["connect_timeout"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"RedisMemoryStore({safe_url(self.url)!r}, prefix={self.prefix!r})"

    async def get_url(self) -> str:
        return safe_url(self.url)

    # -- keys ------------------------------------------------------------------------------
    def _session_key(self, session_id: str) -> str:
        return f"{self.base}:session:{session_id}"

    def _messages_key(self, session_id: str) -> str:
        return f"{self.base}:messages:{session_id}"

    @property
    def _recent_key(self) -> str:
        return f"{self.base}:recent"

    # -- connection ------------------------------------------------------------------------
    async def _redis(self) -> Any:
        """The client for the running event loop. A redis.asyncio client serves only the loop it first
        ran on, so a store reused under a new loop (`Agent.run_sync` is one `asyncio.run` per turn)
        makes a new one; the old one was closed as its loop shut down (see `_closed_with_loop`)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            client = _redis_module().Redis.from_url(self.url, decode_responses=True,
                                                    socket_connect_timeout=self.connect_timeout)
            self._client, self._loop = client, loop
            self._scripts = {"create": client.register_script(_CREATE), "append": client.register_script(_APPEND)}
            self._guard = _closed_with_loop(client)
            await self._guard.__anext__()
        return self._client

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[Any]:
        """The client, with connection failures raised as ConnectionError naming the server."""
        from redis import exceptions

        try:
            client = await self._redis()
            if not self._checked:  # once per store object
                self._checked = True
                try:
                    await self._check_persistence(client)
                except BaseException:
                    self._checked = False
                    raise
            yield client
        except exceptions.AuthenticationError as exc:
            raise ConnectionError(f"RedisMemoryStore: the Redis server at {safe_url(self.url)} refused the "
                                  f"credentials ({exc}); put user:password in the URL") from exc
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            raise ConnectionError(
                f"RedisMemoryStore: no Redis server answers at {safe_url(self.url)} ({exc}). Start one "
                "(Debian/Ubuntu: apt-get install redis-server; then redis-server --port 6379 --appendonly yes) "
                "or pass RedisMemoryStore(url='redis://HOST:PORT/DB').") from exc

    async def _check_persistence(self, client: Any) -> None:
        """Warn when the server would lose stored messages on its own restart (no AOF)."""
        from redis import exceptions

        try:
            info = await client.info("persistence")
            if int(info.get("aof_enabled", 0)):
                return
            save = (await client.config_get("save")).get("save", "")
        except exceptions.ResponseError:  # INFO / CONFIG may be restricted on managed servers
            return
        kept = f"snapshots only: save {save!r}" if save else "it persists nothing"
        log.warning("the Redis server at %s runs without appendonly (%s): sessions stored since its last "
                    "snapshot are lost if Redis restarts; run it with --appendonly yes", safe_url(self.url), kept)

    async def close(self) -> None:
        guard, self._guard, self._client = self._guard, None, None
        if guard is not None and self._loop is asyncio.get_running_loop():
            await guard.aclose()  # closes the client
        self._loop = None

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                             *, exist_ok: bool = False) -> SessionInfo:
        sid = check_session_id(session_id) if session_id is not None else new_session_id()
        meta = json.dumps(metadata or {}, ensure_ascii=False, default=str)
        async with self._connected():
            created, fields = await self._scripts["create"](keys=[self._session_key(sid), self._recent_key],
                                                            args=[sid, meta])
        if not created and not exist_ok:
            raise ValueError(f"session {sid!r} already exists (pass exist_ok=True to reuse it)")
        info = _info(sid, fields)
        assert info is not None
        return info

    async def get_session(self, session_id: str) -> SessionInfo | None:
        check_session_id(session_id)
        async with self._connected() as r:
            return _info(session_id, await r.hmget(self._session_key(session_id), _FIELDS))

    async def list_sessions(self, limit: int = 100) -> list[SessionInfo]:
        if limit == 0:
            return []
        async with self._connected() as r:
            ids: list[str] = await r.zrevrange(self._recent_key, 0, -1 if limit < 0 else int(limit) - 1)
            if not ids:
                return []
            pipe = r.pipeline(transaction=False)
            for sid in ids:
                pipe.hmget(self._session_key(sid), _FIELDS)
            rows = await pipe.execute()
        infos = [info for sid, fields in zip(ids, rows) if (info := _info(sid, fields)) is not None]
        return sorted(infos, key=lambda s: (-s.updated_at, s.id))  # ties by id, as SQLite lists them

    async def delete_session(self, session_id: str) -> bool:
        check_session_id(session_id)
        async with self._connected() as r:
            pipe = r.pipeline(transaction=True)
            pipe.delete(self._session_key(session_id))
            pipe.delete(self._messages_key(session_id))
            pipe.zrem(self._recent_key, session_id)
            existed, _, _ = await pipe.execute()
        return bool(existed)

    # -- messages --------------------------------------------------------------------------
    async def append_many(self, session_id: str, messages: Sequence[Message]) -> list[int]:
        check_session_id(session_id)
        bodies = [m.model_dump_json(exclude_defaults=True) for m in _as_messages(messages)]
        first = await self._append(session_id, bodies, uuid.uuid4().hex)
        return list(range(first, first + len(bodies)))

    async def _append(self, session_id: str, bodies: list[str], token: str) -> int:
        """Run the append script; the same `token` again returns the first call's seq, appending nothing."""
        keys = [self._session_key(session_id), self._messages_key(session_id), self._recent_key,
                f"{self.base}:op:{token}"]
        async with self._connected():
            return int(await self._scripts["append"](keys=keys, args=[session_id, OP_TTL_S, *bodies]))

    async def records(self, session_id: str, after: int = -1, limit: int | None = None) -> list[StoredMessage]:
        check_session_id(session_id)
        start = max(int(after) + 1, 0)
        if limit is not None and limit >= 0:
            if limit == 0:
                return []
            end = start + int(limit) - 1
        else:
            end = -1
        async with self._connected() as r:
            entries: list[str] = await r.lrange(self._messages_key(session_id), start, end)
        out = []
        for seq, entry in enumerate(entries, start):
            created, _, body = entry.partition("|")
            out.append(StoredMessage(session_id=session_id, seq=seq, created_at=float(created),
                                     message=Message.model_validate_json(body)))
        return out


async def _closed_with_loop(client: Any) -> AsyncGenerator[None, None]:
    """Suspended while its loop runs: the loop's shutdown (asyncio.run's `shutdown_asyncgens`)
    closes it, and so the client, inside that loop, instead of leaving its sockets to the collector."""
    try:
        yield
    finally:
        try:
            await client.aclose()
        except Exception:  # noqa: BLE001 - a server already gone: nothing left to close cleanly
            pass


def _info(session_id: str, fields: Sequence[Any]) -> SessionInfo | None:
    created, updated, count, meta = fields
    if created is None:
        return None
    return SessionInfo(id=session_id, created_at=float(created), updated_at=float(updated),
                       message_count=int(count or 0), metadata=json.loads(meta or "{}"))
