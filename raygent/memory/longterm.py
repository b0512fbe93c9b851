"""Long-term memory: facts the agent chooses to keep, recalled by meaning in any later session.

Each fact is a row in SQLite (text, vector as float32 bytes, the session that stored it, a
namespace such as a user id); recall embeds the query and ranks facts by cosine similarity.
Exact search over a matrix held in memory is enough here (10k facts x 256 dims is one 10 MB
matrix product); the matrix is reloaded only when another writer changed the table. Expose it
to a model with `memory_tools(ltm)` (a `remember` and a `recall` tool).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from raygent.memory._sqlite import SQLiteDB, transaction
from raygent.memory.embed import Embed, default_embedder, normalise

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    dim INTEGER NOT NULL,
    session_id TEXT,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS facts_namespace ON facts (namespace, id)
"""


class Fact(BaseModel):
    id: int
    text: str
    namespace: str = "default"
    session_id: str | None = None
    created_at: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class FactHit(BaseModel):
    fact: Fact
    score: float = Field(description="cosine similarity to the query, -1..1")


class LongTermMemory:
    """Facts with vectors in a SQLite file (by default the memory store's file).

    embed: `embed(texts) -> (n, d) array`; default WordLlama from its wheel (offline). Pass another
        embedder (e.g. raygent.retrieval's) to share one model; vectors are normalised here.
    namespace: whose facts these are (a user, a team); facts never cross namespaces.
    duplicate_score: a new fact this similar to a stored one is not stored again.
    """

    def __init__(self, path: str | Path | None = None, *, embed: Embed | None = None, namespace: str = "default",
                 duplicate_score: float = 0.97):
        if path is None:
            from raygent.memory.sqlite_store import default_memory_path

            path = default_memory_path()
        self.path = str(path)
        self.db = SQLiteDB(self.path, schema=SCHEMA)
        self.namespace = namespace
        self.duplicate_score = duplicate_score
        self._embed_fn = embed
        self._cache_key: tuple[int, int] | None = None
        self._ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self._matrix: np.ndarray = np.zeros((0, 0), dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_cache_key=None, _ids=np.zeros(0, dtype=np.int64), _matrix=np.zeros((0, 0), dtype=np.float32))
        return state

    # -- public API ------------------------------------------------------------------------
    async def remember(self, text: str, *, session_id: str | None = None,
                       metadata: dict[str, Any] | None = None) -> Fact:
        """Store a fact (or return the stored one it duplicates)."""
        text = (text or "").strip()
        if not text:
            raise ValueError("remember needs a non-empty fact")
        vector = (await self._vectors([text]))[0]
        hits = await self._search(vector, 1)
        if hits and hits[0].score >= self.duplicate_score:
            return hits[0].fact
        meta = json.dumps(metadata or {}, ensure_ascii=False, default=str)

        def insert(conn: sqlite3.Connection) -> Fact:
            now = time.time()
            with transaction(conn):
                cur = conn.execute("INSERT INTO facts (namespace, text, vector, dim, session_id, created_at, metadata) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (self.namespace, text, vector.tobytes(),
                                                                    vector.shape[0], session_id, now, meta))
            return Fact(id=int(cur.lastrowid), text=text, namespace=self.namespace, session_id=session_id,
                        created_at=now, metadata=metadata or {})

        return await self.db.call(insert)

    async def recall(self, query: str, k: int = 3, min_score: float = 0.0) -> list[FactHit]:
        """The `k` facts most similar to `query` (best first), at least `min_score` similar."""
        if not (query or "").strip():
            raise ValueError("recall needs a non-empty query")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        vector = (await self._vectors([query]))[0]
        return [h for h in await self._search(vector, k) if h.score >= min_score]

    async def forget(self, fact_id: int) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                return conn.execute("DELETE FROM facts WHERE id = ? AND namespace = ?",
                                    (int(fact_id), self.namespace)).rowcount > 0

        return await self.db.call(delete)

    async def list_facts(self, limit: int = 100) -> list[Fact]:
        def rows(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute("SELECT id, text, session_id, created_at, metadata FROM facts WHERE namespace = ? "
                                "ORDER BY id DESC LIMIT ?", (self.namespace, int(limit))).fetchall()

        return [self._fact(r) for r in await self.db.call(rows)]

    async def reindex(self) -> int:
        """Re-embed every fact of this namespace (after changing the embedder); returns how many."""
        rows = await self.db.call(lambda conn: conn.execute(
            "SELECT id, text FROM facts WHERE namespace = ?", (self.namespace,)).fetchall())
        if not rows:
            return 0
        vectors = await self._vectors([t for _, t in rows])

        def update(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany("UPDATE facts SET vector = ?, dim = ? WHERE id = ?",
                                 [(v.tobytes(), v.shape[0], i) for (i, _), v in zip(rows, vectors)])

        await self.db.call(update)
        self._cache_key = None
        return len(rows)

    async def close(self) -> None:
        self.db.close()

    # -- internals -------------------------------------------------------------------------
    def _embedder(self) -> Embed:
        if self._embed_fn is None:
            self._embed_fn = default_embedder()
        return self._embed_fn

    async def _vectors(self, texts: list[str]) -> np.ndarray:
        embed = self._embedder()
        out = await asyncio.to_thread(lambda: normalise(embed(texts)))
        if out.shape[0] != len(texts):
            raise ValueError(f"the embedder returned {out.shape[0]} vectors for {len(texts)} texts")
        return out

    async def _search(self, vector: np.ndarray, k: int) -> list[FactHit]:
        await self._load_matrix()
        if self._matrix.shape[0] == 0:
            return []
        if self._matrix.shape[1] != vector.shape[0]:
            raise ValueError(f"facts in {self.path} were embedded with {self._matrix.shape[1]} dimensions, this "
                             f"embedder gives {vector.shape[0]}; call reindex() after changing the embedder")
        scores = self._matrix @ vector
        top = np.argsort(-scores)[:k]
        ids = [int(self._ids[i]) for i in top]
        facts = await self._facts(ids)
        return [FactHit(fact=facts[i], score=float(scores[j])) for i, j in zip(ids, top) if i in facts]

    async def _load_matrix(self) -> None:
        def read(conn: sqlite3.Connection) -> tuple[tuple[int, int], list[tuple] | None]:
            key = conn.execute("SELECT coalesce(max(id), 0), count(*) FROM facts WHERE namespace = ?",
                               (self.namespace,)).fetchone()
            if tuple(key) == self._cache_key:
                return tuple(key), None
            return tuple(key), conn.execute("SELECT id, vector, dim FROM facts WHERE namespace = ? ORDER BY id",
                                            (self.namespace,)).fetchall()

        key, rows = await self.db.call(read)
        if rows is None:
            return
        dims = {d for _, _, d in rows}
        if len(dims) > 1:
            raise ValueError(f"facts in {self.path} have mixed vector sizes {sorted(dims)}; call reindex()")
        self._ids = np.array([i for i, _, _ in rows], dtype=np.int64)
        self._matrix = (np.stack([np.frombuffer(v, dtype=np.float32) for _, v, _ in rows]) if rows
                        else np.zeros((0, 0), dtype=np.float32))
        self._cache_key = key

    async def _facts(self, ids: list[int]) -> dict[int, Fact]:
        marks = ",".join("?" * len(ids))
        rows = await self.db.call(lambda conn: conn.execute(
            f"SELECT id, text, session_id, created_at, metadata FROM facts WHERE id IN ({marks})", ids).fetchall())
        return {r[0]: self._fact(r) for r in rows}

    def _fact(self, row: tuple) -> Fact:
        fid, text, session_id, created, meta = row
        return Fact(id=fid, text=text, namespace=self.namespace, session_id=session_id, created_at=created,
                    metadata=json.loads(meta))


def memory_tools(ltm: Any, session_id: str | None = None, *, k: int = 3, min_score: float = 0.05) -> list[Any]:
    """`remember` and `recall` tools over a LongTermMemory (in-process or its actor proxy)."""
    from raygent.toolhub.base import FunctionTool

    async def remember(fact: str) -> dict:
        """Save a fact worth keeping for later conversations (a name, a preference, a decision).

        Args:
            fact: one self-contained sentence, e.g. "The user's dog is called Rex."
        """
        stored = await ltm.remember(fact, session_id=session_id)
        return {"remembered": stored.text, "id": stored.id}

    async def recall(query: str) -> dict:
        """Look up facts saved in earlier conversations.

        Args:
            query: what to look for, e.g. "the user's dog"
        """
        hits = await ltm.recall(query, k=k, min_score=min_score)
        return {"facts": [{"text": h.fact.text, "score": round(h.score, 3)} for h in hits]}

    return [FunctionTool(remember), FunctionTool(recall)]
