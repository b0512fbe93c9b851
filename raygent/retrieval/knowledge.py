"""Knowledge QA: a persisted knowledge base of document chunks, searched with citations.

`KnowledgeRetriever(kb)` keeps a SearchIndex (hybrid by default) plus a manifest of ingested files
in a folder: `kb` is a name (stored under $RAYGENT_HOME/knowledge/NAME) or a path. `add_path`
ingests txt / md / html / pdf files or folders, re-ingests a file only when its content changed,
and saves. `search` returns `KnowledgeChunk`s whose `citation` names the file, the chunk (and the
pdf page). `KnowledgeSearchTool` exposes it to agents as the `knowledge_search` tool. Works
in-process and as a Ray actor (`runtime.deploy(KnowledgeRetriever, remote=True, init_kwargs=...)`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, computed_field

from raygent.retrieval.documents import chunk_text, iter_documents, read_document
from raygent.retrieval.embedders import Embedder
from raygent.retrieval.search import Method, SearchIndex
from raygent.toolhub.base import Tool

_MANIFEST = "manifest.json"


def knowledge_home() -> Path:
    from raygent.llm_pool.embedded import raygent_home

    return raygent_home() / "knowledge"


def kb_folder(kb: str | os.PathLike[str]) -> Path:
    """A knowledge base's folder: a bare name lives under $RAYGENT_HOME/knowledge, a path is itself."""
    s = str(kb)
    if os.sep in s or "/" in s or s.startswith((".", "~")):
        return Path(s).expanduser().resolve()
    if not s or s in (".", ".."):
        raise ValueError(f"invalid knowledge base name {s!r}")
    return knowledge_home() / s


class KnowledgeChunk(BaseModel):
    """A passage of an ingested document and where it comes from."""

    source: str
    chunk: int
    text: str
    page: int | None = None
    score: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def citation(self) -> str:
        page = f", p. {self.page}" if self.page is not None else ""
        return f"{Path(self.source).name}#chunk{self.chunk}{page}"


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class KnowledgeRetriever:
    """Ingest, persist and search a knowledge base (see the module docstring)."""

    def __init__(self, kb: str | os.PathLike[str] = "default", *, embedder: Embedder | str | None = None,
                 chunk_chars: int = 800, overlap: int = 150, method: Method = "hybrid"):
        self.folder = kb_folder(kb)
        self.name = str(kb)
        self.chunk_chars, self.overlap, self.method = chunk_chars, overlap, method
        manifest = self.folder / _MANIFEST
        if manifest.exists():
            self.index = SearchIndex.load(self.folder, embedder, default_method=method)
            data = json.loads(manifest.read_text())
            self._sources: dict[str, dict[str, Any]] = data["sources"]
            self._chunks: dict[str, dict[str, Any]] = data["chunks"]
        else:
            self.index = SearchIndex(embedder, default_method=method)
            self._sources, self._chunks = {}, {}

    # -- ingestion ---------------------------------------------------------------------------
    async def add_path(self, path: str | os.PathLike[str], *, progress: bool = False) -> dict[str, Any]:
        """Ingest a file or a folder; unchanged files are skipped. Returns counts and any per-file errors."""
        files = list(iter_documents(path))
        added_files, added_chunks, skipped, errors = 0, 0, 0, []
        from tqdm import tqdm

        for f in tqdm(files, desc="ingesting", unit="file", disable=not progress or len(files) < 5):
            source = str(f.resolve())
            digest = _sha1(f)
            if self._sources.get(source, {}).get("sha1") == digest:
                skipped += 1
                continue
            try:
                sections = read_document(f)
            except Exception as exc:  # one unreadable file does not stop a folder
                errors.append(f"{f}: {type(exc).__name__}: {exc}")
                continue
            self._drop_source(source)
            items: list[tuple[str, str]] = []
            for section in sections:
                for text in chunk_text(section.text, self.chunk_chars, self.overlap):
                    key = f"{source}#{len(items)}"
                    self._chunks[key] = {"source": source, "chunk": len(items), "page": section.page}
                    items.append((key, text))
            await self.index.add(items)
            self._sources[source] = {"sha1": digest, "chunks": len(items)}
            added_files += 1
            added_chunks += len(items)
        self.save()
        return {"knowledge_base": self.name, "folder": str(self.folder), "files": added_files, "chunks": added_chunks,
                "unchanged": skipped, "errors": errors, "total_chunks": len(self._chunks)}

    async def add_text(self, source: str, text: str) -> int:
        """Ingest text that is not a file (a pasted note, a fetched page); `source` names it in citations."""
        self._drop_source(source)
        items = []
        for text_chunk in chunk_text(text, self.chunk_chars, self.overlap):
            key = f"{source}#{len(items)}"
            self._chunks[key] = {"source": source, "chunk": len(items), "page": None}
            items.append((key, text_chunk))
        await self.index.add(items)
        self._sources[source] = {"sha1": hashlib.sha1(text.encode()).hexdigest(), "chunks": len(items)}
        self.save()
        return len(items)

    def _drop_source(self, source: str) -> None:
        if source not in self._sources:
            return
        keys = [k for k, meta in self._chunks.items() if meta["source"] == source]
        self.index.remove(keys)
        for k in keys:
            self._chunks.pop(k)
        self._sources.pop(source)

    async def remove_source(self, source: str) -> bool:
        source = str(Path(source).expanduser().resolve()) if Path(source).expanduser().exists() else source
        present = source in self._sources
        self._drop_source(source)
        self.save()
        return present

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index.save(self.folder)
        tmp = self.folder / (_MANIFEST + ".tmp")
        tmp.write_text(json.dumps({"sources": self._sources, "chunks": self._chunks}, ensure_ascii=False))
        os.replace(tmp, self.folder / _MANIFEST)

    # -- queries -----------------------------------------------------------------------------
    async def search(self, query: str, k: int = 4, method: Method | None = None) -> list[KnowledgeChunk]:
        """The k chunks that best match `query`, best first, with citations."""
        hits = await self.index.search(query, k, method or self.method)
        return [KnowledgeChunk(text=self.index.text(h.key), score=h.score, **self._chunks[h.key]) for h in hits]

    async def list_sources(self) -> list[dict[str, Any]]:
        return [{"source": s, "chunks": meta["chunks"]} for s, meta in sorted(self._sources.items())]

    async def count(self) -> int:
        return len(self._chunks)


def format_context(chunks: list[KnowledgeChunk]) -> str:
    """Passages as prompt context, each headed by its citation."""
    return "\n\n".join(f"[{c.citation}]\n{c.text}" for c in chunks)


class KnowledgeSearchTool(Tool):
    """The `knowledge_search` tool: passages from the user's documents, with citations.

    Pass a KnowledgeRetriever (or an actor proxy of one), or a knowledge base name/path to open on
    first use (that form pickles cheaply, e.g. when the tool registry becomes a Ray actor).
    """

    name = "knowledge_search"
    description = ("Search the user's documents (the attached knowledge base) and return the most relevant "
                   "passages, each with a citation [file#chunk]. Use it for questions about the user's files; "
                   "answer from the passages and cite them. 检索用户文档（知识库）。")
    parameters = {"type": "object", "properties": {
        "query": {"type": "string", "description": "what to look for, in the user's words"},
        "k": {"type": "integer", "description": "how many passages to return (default 4)", "minimum": 1,
              "maximum": 20}}, "required": ["query"]}
    domain = "knowledge"
    timeout_s = 60.0

    def __init__(self, retriever: Any = None, *, kb: str | None = None, embedder: str | None = None):
        if retriever is None and kb is None:
            raise ValueError("KnowledgeSearchTool needs a retriever or a knowledge base name (kb=)")
        self._retriever = retriever
        self._kb, self._embedder = kb, embedder

    def _get(self) -> Any:
        if self._retriever is None:
            self._retriever = KnowledgeRetriever(self._kb, embedder=self._embedder)
        return self._retriever

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._kb is not None and isinstance(self._retriever, KnowledgeRetriever):
            state["_retriever"] = None  # reopened from disk wherever the tool lands
        return state

    async def call(self, query: str, k: int = 4) -> Any:
        chunks = await self._get().search(query, k)
        if not chunks:
            return {"results": [], "note": "the knowledge base has no matching passages (is it empty?)"}
        return {"results": [{"citation": c.citation, "text": c.text, "score": round(c.score, 4)} for c in chunks]}
