"""API keys for raygent's server: made with `raygent keys create`, checked on every request.

A key is `rgk_` + 43 URL-safe characters (256 random bits), shown once when it is created; the
store keeps only its SHA-256 hash (a fast hash is enough for secrets this random: no dictionary to
guess from, so a slow password hash would only slow every request down). `verify` is one point
lookup by that hash and nothing is cached, so a key created or revoked while a server runs counts
at its next request, on every replica.

Two backends, one interface (`KeyStore`): `SQLiteKeyStore` (`<RAYGENT_HOME>/keys.sqlite`, one
machine) and `RedisKeyStore` (the server's `state.url`, shared by replicas on every node).
`open_key_store(url)` picks one the way the rest of the server's state does. Both pickle as their
configuration, so a store can be handed to Ray actors and Serve replicas; each process connects
on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from raygent.redis_support import is_redis_url, redis_asyncio

KEY_PREFIX = "rgk_"
ID_PREFIX = "key_"
_KEY_SHAPE = re.compile(r"^rgk_[A-Za-z0-9_-]{43}$")
_ID_SHAPE = re.compile(r"^key_[0-9a-f]{16}$")


class KeyInfo(BaseModel):
    """What the store knows about a key: never the secret itself."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None
    created_at: float
    revoked_at: float | None = None
    #: this key's own limits; None means the server's defaults (security.requests_per_minute, ...)
    requests_per_minute: int | None = Field(default=None, ge=1)
    concurrent_runs: int | None = Field(default=None, ge=1)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class CreatedKey(BaseModel):
    """A new key: `key` is the secret, returned this once and never stored."""

    id: str
    key: str
    info: KeyInfo


def hash_key(key: str) -> str:
    """The SHA-256 hex digest the stores keep in place of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_key() -> tuple[str, str]:
    return f"{ID_PREFIX}{secrets.token_hex(8)}", f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"


def _check_limit(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


class KeyStore(ABC):
    """Async key storage; every method is a round trip to the backend (no cache)."""

    async def create(self, name: str | None = None, requests_per_minute: int | None = None,
                     concurrent_runs: int | None = None) -> CreatedKey:
        """Make a key; the returned secret is the only copy there will ever be."""
        key_id, key = _new_key()
        info = KeyInfo(id=key_id, name=name, created_at=time.time(),
                       requests_per_minute=_check_limit("requests_per_minute", requests_per_minute),
                       concurrent_runs=_check_limit("concurrent_runs", concurrent_runs))
        await self._insert(info, hash_key(key))
        return CreatedKey(id=key_id, key=key, info=info)

    async def verify(self, key: str) -> KeyInfo | None:
        """The key's info if it is an active key of this store, else None."""
        if not isinstance(key, str) or not _KEY_SHAPE.match(key):
            return None  # not one of ours: no lookup
        info = await self._by_hash(hash_key(key))
        return info if info is not None and info.active else None

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key at once; True if the id names a key (revoked now or before), False if unknown."""
        if not isinstance(key_id, str) or not _ID_SHAPE.match(key_id):
            return False
        return await self._revoke(key_id, time.time())

    @abstractmethod
    async def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        """Keys, oldest first (active ones only unless include_revoked)."""

    @abstractmethod
    async def has_keys(self) -> bool:
        """Whether any active key exists (what require_keys="auto" asks)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _insert(self, info: KeyInfo, key_hash: str) -> None: ...

    @abstractmethod
    async def _by_hash(self, key_hash: str) -> KeyInfo | None: ...

    @abstractmethod
    async def _revoke(self, key_id: str, now: float) -> bool: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL,
    requests_per_minute INTEGER,
    concurrent_runs INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_active ON api_keys (revoked_at)
"""
_COLUMNS = "id, name, created_at, revoked_at, requests_per_minute, concurrent_runs"


def _row_info(row: tuple[Any, ...]) -> KeyInfo:
    return KeyInfo(id=row[0], name=row[1], created_at=row[2], revoked_at=row[3], requests_per_minute=row[4],
                   concurrent_runs=row[5])


class SQLiteKeyStore(KeyStore):
    """Keys in one SQLite file (default `<RAYGENT_HOME>/keys.sqlite`), shared by this machine's processes."""

    def __init__(self, path: str | Path | None = None):
        self.path = str(path) if path is not None else str(default_keys_path())
        self._db: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self.path!r})"

    @property
    def db(self) -> Any:
        if self._db is None:
            from raygent.memory._sqlite import SQLiteDB

            self._db = SQLiteDB(self.path, schema=_SCHEMA)
        return self._db

    async def _insert(self, info: KeyInfo, key_hash: str) -> None:
        await self.db.call(lambda c: c.execute(
            f"INSERT INTO api_keys (hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_hash, info.id, info.name, info.created_at, info.revoked_at, info.requests_per_minute,
             info.concurrent_runs)))

    async def _by_hash(self, key_hash: str) -> KeyInfo | None:
        row = await self.db.call(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE hash = ?", (key_hash,)).fetchone())
        return _row_info(row) if row else None

    async def _revoke(self, key_id: str, now: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id))
            return c.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is not None

        return await self.db.call(run)

    async def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = await self.db.call(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM api_keys {where} ORDER BY created_at, id").fetchall())
        return [_row_info(r) for r in rows]

    async def has_keys(self) -> bool:
        row = await self.db.call(lambda c: c.execute(
            "SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone())
        return row is not None

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class RedisKeyStore(KeyStore):
    """Keys on Redis, under `prefix`:

        <prefix>:apikey:<sha256>   hash: the key's info (what `verify` reads: one HGETALL)
        <prefix>:apikeys           hash: key id -> sha256 (for list and revoke)
        <prefix>:apikeys:active    set of active key ids (has_keys is one SCARD)
    """

    def __init__(self, url: str, *, prefix: str = "raygent"):
        self.url = url
        self.prefix = prefix
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], prefix=state["prefix"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"RedisKeyStore({self.url!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Any:
        """The client for the running event loop (a redis.asyncio client serves only the loop it
        was made in; the CLI, a server thread and a test may each bring their own loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            aioredis = redis_asyncio("RedisKeyStore")
            self._client, self._loop = aioredis.from_url(self.url, decode_responses=True), loop
        return self._client

    def _record(self, key_hash: str) -> str:
        return f"{self.prefix}:apikey:{key_hash}"

    @property
    def _ids(self) -> str:
        return f"{self.prefix}:apikeys"

    @property
    def _active(self) -> str:
        return f"{self.prefix}:apikeys:active"

    async def _insert(self, info: KeyInfo, key_hash: str) -> None:
        fields = {k: str(v) for k, v in info.model_dump().items() if v is not None}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._record(key_hash), mapping=fields)
            pipe.hset(self._ids, info.id, key_hash)
            pipe.sadd(self._active, info.id)
            await pipe.execute()

    async def _by_hash(self, key_hash: str) -> KeyInfo | None:
        fields = await self.client.hgetall(self._record(key_hash))
        return _fields_info(fields) if fields else None

    async def _revoke(self, key_id: str, now: float) -> bool:
        key_hash = await self.client.hget(self._ids, key_id)
        if key_hash is None:
            return False
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._record(key_hash), "revoked_at", str(now))
            pipe.srem(self._active, key_id)
            await pipe.execute()
        return True

    async def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        hashes = await self.client.hgetall(self._ids)
        if not hashes:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for key_hash in hashes.values():
                pipe.hgetall(self._record(key_hash))
            records = await pipe.execute()
        infos = [_fields_info(f) for f in records if f]
        return sorted((i for i in infos if include_revoked or i.active), key=lambda i: (i.created_at, i.id))

    async def has_keys(self) -> bool:
        return bool(await self.client.scard(self._active))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None


def _fields_info(fields: dict[str, str]) -> KeyInfo:
    def number(name: str, kind: type) -> Any:
        value = fields.get(name)
        return kind(value) if value not in (None, "") else None

    return KeyInfo(id=fields["id"], name=fields.get("name"), created_at=float(fields["created_at"]),
                   revoked_at=number("revoked_at", float), requests_per_minute=number("requests_per_minute", int),
                   concurrent_runs=number("concurrent_runs", int))


def default_keys_path() -> Path:
    from raygent.llm_pool.embedded import raygent_home

    return raygent_home() / "keys.sqlite"


def open_key_store(url: str | None = None) -> KeyStore:
    """The key store for a server's `state.url`: None -> `<RAYGENT_HOME>/keys.sqlite`;
    `redis://` (or `rediss://`, `unix://`) -> that Redis; `sqlite:///dir/file` -> `dir/keys.sqlite`
    (beside the state's other SQLite files, as run records are)."""
    if not url:
        return SQLiteKeyStore()
    if is_redis_url(url):
        return RedisKeyStore(url)
    if url.startswith("sqlite:///"):  # sqlite://PATH, as for the memory store: sqlite:///abs/dir/memory.sqlite
        return SQLiteKeyStore(Path(url[len("sqlite://"):]).with_name("keys.sqlite"))
    raise ValueError(f"state URL must be redis://host:port/db or sqlite:///path (or left out), got {url!r}")


__all__ = ["CreatedKey", "KeyInfo", "KeyStore", "RedisKeyStore", "SQLiteKeyStore", "default_keys_path", "hash_key",
           "open_key_store"]
