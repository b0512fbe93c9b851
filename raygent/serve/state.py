"""The server's shared state: sessions (the memory store), run records, and artifact ownership.

`state.url` None keeps each in a SQLite file under RAYGENT_HOME (one machine: every replica on it
shares the files); `redis://host:port/db` keeps them on the Redis server the message hub uses, so
replicas on different nodes see the same runs and a store restarted elsewhere loses nothing.
Run records and artifact entries are small JSON documents keyed by id; the owner is checked by the
routes (another key's run or artifact is answered as not found).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from raygent.redis_support import is_redis_url, redis_asyncio
from raygent.serve.models import RunRecord


def memory_store(url: str | None) -> Any:
    """The sessions' MemoryStore for `state.url` (see raygent.memory.open_memory_store)."""
    from raygent.memory import open_memory_store

    if url is not None:
        _sqlite_path(url)  # the same URL rules for every store
    return open_memory_store(url)


def _sqlite_path(url: str | None) -> Path | None:
    """`sqlite://PATH` -> PATH (`sqlite:///abs/memory.sqlite` is /abs/memory.sqlite); None for Redis."""
    if not url or is_redis_url(url):
        return None
    if url.startswith("sqlite://") and len(url) > len("sqlite://"):
        return Path(url[len("sqlite://"):])
    raise ValueError(f"state.url must be redis://host:port/db or sqlite:///abs/path/memory.sqlite (or left out), "
                     f"got {url!r}")


def _default_dir() -> Path:
    from raygent.llm_pool.embedded import raygent_home

    return raygent_home()


class ArtifactEntry(BaseModel):
    """A file a run produced, served at /v1/artifacts/{id} to its owner only."""

    id: str
    owner: str
    path: str
    mime_type: str | None = None
    run_id: str | None = None
    created_at: float = 0.0


class RunStore(Protocol):
    async def put(self, record: RunRecord) -> None: ...
    async def get(self, run_id: str) -> RunRecord | None: ...
    async def request_cancel(self, run_id: str) -> None: ...
    async def cancel_requested(self, run_id: str) -> bool: ...
    async def put_artifact(self, entry: ArtifactEntry) -> None: ...
    async def get_artifact(self, artifact_id: str) -> ArtifactEntry | None: ...
    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
)
"""


class SQLiteRunStore:
    """Run records and artifact entries in `<RAYGENT_HOME>/runs.sqlite` (or the given file)."""

    def __init__(self, path: str | Path | None = None):
        self.path = str(path or _default_dir() / "runs.sqlite")
        self._db: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    @property
    def db(self) -> Any:
        if self._db is None:
            from raygent.memory._sqlite import SQLiteDB

            self._db = SQLiteDB(self.path, schema=_SCHEMA)
        return self._db

    async def put(self, record: RunRecord) -> None:
        body = record.model_dump_json()
        await self.db.call(lambda c: c.execute(
            "INSERT INTO runs (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            (record.id, body)))

    async def get(self, run_id: str) -> RunRecord | None:
        row = await self.db.call(lambda c: c.execute("SELECT body FROM runs WHERE id = ?", (run_id,)).fetchone())
        return RunRecord.model_validate_json(row[0]) if row else None

    async def request_cancel(self, run_id: str) -> None:
        await self.db.call(lambda c: c.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,)))

    async def cancel_requested(self, run_id: str) -> bool:
        row = await self.db.call(lambda c: c.execute(
            "SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone())
        return bool(row and row[0])

    async def put_artifact(self, entry: ArtifactEntry) -> None:
        body = entry.model_dump_json()
        await self.db.call(lambda c: c.execute("INSERT OR REPLACE INTO artifacts (id, body) VALUES (?, ?)",
                                               (entry.id, body)))

    async def get_artifact(self, artifact_id: str) -> ArtifactEntry | None:
        row = await self.db.call(lambda c: c.execute("SELECT body FROM artifacts WHERE id = ?",
                                                     (artifact_id,)).fetchone())
        return ArtifactEntry.model_validate_json(row[0]) if row else None

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class RedisRunStore:
    """Run records and artifact entries on Redis: `<prefix>:run:<id>` (JSON) plus a cancel flag;
    finished runs expire after `ttl_s` (default a week) so the server does not grow without bound."""

    def __init__(self, url: str, *, prefix: str = "raygent", ttl_s: int = 7 * 24 * 3600):
        self.url = url
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "prefix": self.prefix, "ttl_s": self.ttl_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], prefix=state["prefix"], ttl_s=state["ttl_s"])  # type: ignore[misc]

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = redis_asyncio("RedisRunStore").from_url(self.url, decode_responses=True)
        return self._client

    async def put(self, record: RunRecord) -> None:
        ttl = self.ttl_s if record.status in ("succeeded", "failed", "cancelled") else None
        await self.client.set(f"{self.prefix}:run:{record.id}", record.model_dump_json(), ex=ttl)

    async def get(self, run_id: str) -> RunRecord | None:
        body = await self.client.get(f"{self.prefix}:run:{run_id}")
        return RunRecord.model_validate_json(body) if body else None

    async def request_cancel(self, run_id: str) -> None:
        await self.client.set(f"{self.prefix}:run-cancel:{run_id}", "1", ex=self.ttl_s)

    async def cancel_requested(self, run_id: str) -> bool:
        return bool(await self.client.exists(f"{self.prefix}:run-cancel:{run_id}"))

    async def put_artifact(self, entry: ArtifactEntry) -> None:
        await self.client.set(f"{self.prefix}:artifact:{entry.id}", entry.model_dump_json(), ex=self.ttl_s)

    async def get_artifact(self, artifact_id: str) -> ArtifactEntry | None:
        body = await self.client.get(f"{self.prefix}:artifact:{artifact_id}")
        return ArtifactEntry.model_validate_json(body) if body else None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def run_store(url: str | None) -> RunStore:
    if is_redis_url(url):
        return RedisRunStore(url)  # type: ignore[arg-type]
    path = _sqlite_path(url)
    return SQLiteRunStore(path.with_name("runs.sqlite") if path else None)


__all__ = ["ArtifactEntry", "RedisRunStore", "RunStore", "SQLiteRunStore", "memory_store", "run_store"]
