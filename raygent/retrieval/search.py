"""A searchable set of texts keyed by strings: dense (faiss), lexical (BM25 / TF-IDF) and hybrid.

This is the engine under both the tool retriever and the knowledge retriever. Documents are
added, replaced and removed by key; dense vectors go into a `VectorIndex` at once (incremental),
the lexical scorers are rebuilt lazily at the first query after a change. The whole thing
persists to a folder (faiss index + a JSON of keys and texts) and reloads without re-embedding.

Hybrid fusion over the top `candidates` (100) of each ranking: `normalized` (default: `alpha` * dense
cosine / the query's top cosine + (1 - alpha) * BM25 score / the query's top BM25 score, so both
parts span [0, 1] whatever the embedder's cosine range), `weighted` (the same with raw cosines) or
`rrf` (reciprocal-rank fusion, k=60). alpha 0.6. On the BFCL tool-retrieval benchmark, with query
decomposition as the tool retriever runs it, normalized won on the settings-choice half and on the
whole set: recall@5 0.884 vs 0.880 (weighted) / 0.881 (RRF) with wordllama, 0.904 vs 0.892
(weighted) with MiniLM, whose RRF row (0.883) exists without decomposition only (docs/benchmarks.md).

`lexical_gate` (default 0: off) scales the lexical weight (1 - alpha) by min(1, matched / gate),
`matched` being how many of the query's distinct tokens the top lexical document contains: a
request that shares one incidental word with the tools then leans on the dense ranking. The tool
retriever sets it to 3 (tool_retriever.tool_index_defaults).

`search(..., decompose=True)` (the default of `ToolRetriever`, not of the index) also searches each
clause of a multi-intent query and merges the clauses' best hits in (raygent/retrieval/decompose.py).

Extra vectors (`set_extra`): a document may own further vectors (a tool's generated example requests,
raygent/retrieval/expand.py) in a second faiss index; its dense score is then (own cosine +
`extra_weight` x best extra cosine) / (1 + `extra_weight`) (`extra_mode="blend"`) or the max of the
two (`"max"`). Documents without extra vectors keep their own cosine; an index without any scores
exactly as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from raygent.retrieval.decompose import MIN_RATIO, merge_rankings, split_intents
from raygent.retrieval.embedders import Embedder, get_embedder
from raygent.retrieval.lexical import LexicalScorer, make_scorer
from raygent.retrieval.text import tokenize
from raygent.retrieval.vector_index import IndexKind, VectorIndex

Method = Literal["bm25", "tfidf", "dense", "hybrid"]
METHODS: tuple[str, ...] = ("bm25", "tfidf", "dense", "hybrid")
Fusion = Literal["normalized", "weighted", "rrf"]
FUSIONS: tuple[str, ...] = ("normalized", "weighted", "rrf")
_DOCS = "docs.json"
_EXTRA = "extra"  # sub-folder of the extra vectors' faiss index
EXTRA_FETCH = 8
"""Extra vectors fetched per wanted document when documents own several (fewer when none owns that
many: a tool with one centroid vector needs one per candidate, and a flat search for the top 800 of
10k vectors cost 2 ms more per query than the top 100)."""
EXTRA_APPROX = 16_000
"""Extra vectors past which their index goes approximate (IVF, `kind="auto"`): an exact scan of 40k
256-d vectors took 4.6 ms p50 on the shared 2-core VM (cache-bound), IVF 0.3 ms; they only add
candidates and scores beside the exact own-vector ranking."""


class Hit(BaseModel):
    """One search result: the document key, its score under the method used, and its rank (0-based)."""

    key: str
    score: float
    rank: int


class SearchIndex:
    """Texts under string keys, searchable by `bm25`, `tfidf`, `dense` or `hybrid` (see module docs)."""

    def __init__(self, embedder: Embedder | str | None = None, *, index_kind: IndexKind = "auto",
                 approx_threshold: int = 50_000, default_method: Method = "hybrid",
                 fusion: Fusion = "normalized", lexical: Literal["bm25", "tfidf"] = "bm25",
                 alpha: float = 0.6, rrf_k: int = 60, candidates: int = 100, decompose: bool = False,
                 min_ratio: float = MIN_RATIO, lexical_gate: float = 0.0, extra_weight: float = 1.0,
                 extra_mode: Literal["blend", "max"] = "blend"):
        self.embedder = get_embedder(embedder)
        if default_method not in METHODS:
            raise ValueError(f"unknown method {default_method!r}: use one of {', '.join(METHODS)}")
        self.default_method = default_method
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}: use one of {', '.join(FUSIONS)}")
        self.fusion: Fusion = fusion
        self.lexical = lexical
        self.alpha = alpha
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.decompose = decompose
        self.min_ratio = min_ratio
        if lexical_gate < 0:
            raise ValueError(f"lexical_gate must be >= 0, got {lexical_gate}")
        self.lexical_gate = lexical_gate
        self.vectors = VectorIndex(self.embedder.dim, index_kind, approx_threshold=approx_threshold)
        self.extra_weight = extra_weight
        if extra_mode not in ("blend", "max"):
            raise ValueError(f"unknown extra_mode {extra_mode!r}: use blend or max")
        self.extra_mode = extra_mode
        self.extra = VectorIndex(self.embedder.dim, index_kind, approx_threshold=min(approx_threshold, EXTRA_APPROX))
        self._extra_owner: dict[int, str] = {}  # extra vector id -> document key
        self._extra_ids: dict[str, list[int]] = {}
        self._next_extra = 0
        self._extra_most: int | None = None  # most extra vectors of one document (None: count again)
        self._ids: dict[str, int] = {}
        self._keys: dict[int, str] = {}
        self._texts: dict[str, str] = {}
        self._tokens: dict[str, list[str]] = {}
        self._next_id = 0
        self._scorers: dict[str, LexicalScorer] = {}
        self._order: list[str] = []  # positions of the lexical scorers' documents
        self._dirty = True

    # -- contents ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, key: str) -> bool:
        return key in self._texts

    def keys(self) -> list[str]:
        return list(self._texts)

    def text(self, key: str) -> str:
        return self._texts[key]

    async def add(self, docs: Mapping[str, str] | Iterable[tuple[str, str]],
                  vectors: np.ndarray | None = None) -> int:
        """Add or replace documents (key -> text); returns how many were embedded. Pass `vectors`
        (one unit row per document, in order) to skip the embedder, e.g. for precomputed embeddings."""
        items = list(docs.items() if isinstance(docs, Mapping) else docs)
        if not items:
            return 0
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate keys in one add")
        texts = [t for _, t in items]
        vecs = await self.embedder.embed(texts) if vectors is None else np.asarray(vectors, dtype=np.float32)
        if vecs.shape != (len(items), self.vectors.dim):
            raise ValueError(f"expected vectors of shape {(len(items), self.vectors.dim)}, got {vecs.shape}")
        self._add_embedded(items, vecs)
        return len(items)

    def _add_embedded(self, items: Sequence[tuple[str, str]], vecs: np.ndarray) -> None:
        ids = np.empty(len(items), dtype=np.int64)
        for i, (key, text) in enumerate(items):
            if key in self._ids:  # replace: the old vector goes, the key keeps no stale id
                old = self._ids.pop(key)
                self._keys.pop(old, None)
                self.vectors.remove([old])
            ids[i] = self._next_id
            self._next_id += 1
            self._ids[key] = int(ids[i])
            self._keys[int(ids[i])] = key
            self._texts[key] = text
            self._tokens[key] = tokenize(text)
        self.vectors.add(ids, vecs)
        self._dirty = True

    def set_extra(self, extra: Mapping[str, np.ndarray]) -> None:
        """Give documents extra vectors (key -> unit rows), replacing any they had; an empty array
        removes them. Keys need not be present yet; `remove` drops a document's extra vectors too."""
        self._extra_most = None
        drop = [i for key in extra for i in self._extra_ids.pop(key, [])]
        for i in drop:
            self._extra_owner.pop(i, None)
        self.extra.remove(drop)
        ids, rows = [], []
        for key, vecs in extra.items():
            vecs = np.asarray(vecs, dtype=np.float32).reshape(-1, self.extra.dim)
            if not len(vecs):
                continue
            new = list(range(self._next_extra, self._next_extra + len(vecs)))
            self._next_extra += len(vecs)
            self._extra_ids[key] = new
            self._extra_owner.update((i, key) for i in new)
            ids.extend(new)
            rows.append(vecs)
        if ids:
            self.extra.add(np.asarray(ids, dtype=np.int64), np.vstack(rows))

    def remove(self, keys: Iterable[str]) -> int:
        """Drop documents by key (unknown keys are ignored); returns how many were present."""
        ids = []
        keys = list(keys)
        if self._extra_ids:
            self.set_extra({k: np.zeros((0, self.extra.dim), dtype=np.float32) for k in keys if k in self._extra_ids})
        for key in keys:
            if key in self._ids:
                i = self._ids.pop(key)
                self._keys.pop(i, None)
                self._texts.pop(key, None)
                self._tokens.pop(key, None)
                ids.append(i)
        if ids:
            self.vectors.remove(ids)
            self._dirty = True
        return len(ids)

    # -- search ------------------------------------------------------------------------------
    def _scorer(self, name: str) -> LexicalScorer:
        if self._dirty:
            self._order = list(self._texts)
            self._scorers = {}
            self._dirty = False
        if name not in self._scorers:
            scorer = make_scorer(name)
            scorer.fit([self._tokens[k] for k in self._order])
            self._scorers[name] = scorer
        return self._scorers[name]

    def _lexical_ranking(self, name: str, query: str | list[str], n: int) -> list[tuple[str, float]]:
        """The top-n (key, score) pairs of a lexical scorer; `query` is a text or its tokens."""
        scores = self._scorer(name).scores(tokenize(query) if isinstance(query, str) else query)
        if scores.size == 0:
            return []
        n = min(n, scores.size)
        top = np.argpartition(-scores, n - 1)[:n] if n < scores.size else np.arange(scores.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._order[i], float(scores[i])) for i in top if scores[i] > 0]

    def _dense_ranking(self, qvec: np.ndarray, n: int) -> list[tuple[str, float]]:
        return self._dense_rankings(qvec, n)[0]

    def _dense_rankings(self, qvecs: np.ndarray, n: int) -> list[list[tuple[str, float]]]:
        """One faiss search for several query rows (a decomposed query's clauses): one pass over
        the vectors instead of one per clause."""
        scores, ids = self.vectors.search(qvecs, n)
        rankings = [[(self._keys[int(i)], float(s)) for s, i in zip(row_scores, row_ids) if i >= 0]
                    for row_scores, row_ids in zip(scores, ids)]
        if not self._extra_owner:
            return rankings
        return [self._with_extra(r, es, eis, n) for r, es, eis in
                zip(rankings, *self.extra.search(qvecs, min(len(self.extra), n * self._extra_fetch())))]

    def _extra_fetch(self) -> int:
        """Extra vectors to fetch per wanted document: the most any document owns, at most EXTRA_FETCH."""
        if self._extra_most is None:
            self._extra_most = max((len(ids) for ids in self._extra_ids.values()), default=1)
        return max(1, min(EXTRA_FETCH, self._extra_most))

    def _with_extra(self, ranking: list[tuple[str, float]], scores: np.ndarray, ids: np.ndarray,
                    n: int) -> list[tuple[str, float]]:
        """Merge one query's own-vector ranking with its extra-vector hits (`extra_mode`):
        `blend`: (own cosine + extra_weight x best extra cosine) / (1 + extra_weight); `max`: the max
        of the own cosine and extra_weight x the best extra cosine. A document outside a ranking's top
        scores that ranking's floor there; one without extra vectors scores its own cosine alone."""
        best: dict[str, float] = {}
        for s, i in zip(scores, ids):  # best first: the first hit of a key is its best extra cosine
            key = self._extra_owner.get(int(i)) if i >= 0 else None
            if key is not None and key not in best and key in self._texts:
                best[key] = float(s)
        own = dict(ranking)
        floor = ranking[-1][1] if len(ranking) >= n else -1.0
        extra_floor = float(scores[-1]) if len(scores) and ids[-1] >= 0 else -1.0
        w = self.extra_weight
        fused = {}
        for key in own.keys() | best.keys():
            mine = own.get(key, floor)
            if key not in self._extra_ids:
                fused[key] = mine
            elif self.extra_mode == "max":
                fused[key] = max(mine, w * best.get(key, extra_floor))
            else:
                fused[key] = (mine + w * best.get(key, extra_floor)) / (1.0 + w)
        return sorted(fused.items(), key=lambda kv: -kv[1])[:n]

    async def search(self, query: str, k: int = 5, method: Method | None = None, *,
                     decompose: bool | None = None) -> list[Hit]:
        """The top-k documents for `query` (fewer if the index holds fewer). With `decompose` (default:
        the index's `decompose` setting) a multi-intent query is also searched clause by clause and the
        clauses' best hits are merged in (raygent/retrieval/decompose.py)."""
        method = self._method(method)
        if not self._texts or k <= 0:
            return []
        use_parts = self.decompose if decompose is None else decompose
        parts = split_intents(query) if use_parts else []
        qvecs = await self.embedder.embed([query, *parts]) if method in ("dense", "hybrid") else None
        if parts:
            return self.search_multi(query, parts, qvecs, k, method)
        return self.search_embedded(query, qvecs, k, method)

    def search_embedded(self, query: str, qvec: np.ndarray | None, k: int, method: Method) -> list[Hit]:
        """`search` with the query vector given (benchmarks time this part apart from embedding)."""
        ranked, _ = self._ranked(query, qvec, k, self._method(method))
        return [Hit(key=key, score=score, rank=r) for r, (key, score) in enumerate(ranked[:k])]

    def search_multi(self, query: str, parts: Sequence[str], qvecs: np.ndarray | None, k: int,
                     method: Method) -> list[Hit]:
        """`search` of a decomposed query with its vectors given: row 0 of `qvecs` is the whole query,
        row i the clause `parts[i - 1]` (None for the lexical methods)."""
        method = self._method(method)
        if qvecs is not None and len(qvecs) != len(parts) + 1:
            raise ValueError(f"expected {len(parts) + 1} query vectors (the query and each part), got {len(qvecs)}")
        dense = None
        if qvecs is not None:  # every row's dense candidates in one search
            dense = self._dense_rankings(qvecs, k if method == "dense" else max(self.candidates, k))
        whole, conf = self._ranked(query, None, k, method, dense[0] if dense else None)
        ranked, confs = [], []
        for i, part in enumerate(parts):
            r, c = self._ranked(part, None, 1, method, dense[i + 1] if dense else None)
            ranked.append(r)
            confs.append(c)
        merged = merge_rankings(whole, ranked, min_ratio=self.min_ratio, whole_confidence=conf,
                                confidences=confs)
        return [Hit(key=key, score=score, rank=r) for r, (key, score) in enumerate(merged[:k])]

    def _method(self, method: Method | None) -> Method:
        method = method or self.default_method
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
        return method

    def _ranked(self, query: str, qvec: np.ndarray | None, k: int, method: Method,
                dense: list[tuple[str, float]] | None = None) -> tuple[list[tuple[str, float]], float]:
        """The top-k (key, score) pairs and a confidence for decomposition's gate: the top cosine for
        dense and hybrid (fused scores are relative to each query's best), the top lexical score else.
        `dense`: the query's dense candidates when already searched (see `search_multi`)."""
        if method in ("bm25", "tfidf"):
            ranked = self._lexical_ranking(method, query, k)
            return ranked, ranked[0][1] if ranked else 0.0
        n = k if method == "dense" else max(self.candidates, k)
        if dense is None:
            dense = self._dense_ranking(qvec, n)
        conf = dense[0][1] if dense else 0.0
        if method == "dense":
            return dense[:k], conf
        tokens = tokenize(query)
        lexical = self._lexical_ranking(self.lexical, tokens, n)
        return self._fuse(dense, lexical, self._lexical_weight(tokens, lexical))[:k], conf

    def _lexical_weight(self, tokens: list[str], lexical: list[tuple[str, float]]) -> float:
        """The lexical part's weight in normalized / weighted fusion: 1 - alpha, scaled down by
        `lexical_gate` when the best lexical match shares few words with the query: by
        min(1, matched / lexical_gate), `matched` being how many of the query's distinct tokens the
        top lexical document contains. A request that shares one incidental word with a tool ("any
        planes to Denver on Friday?" vs a tool whose description says "... on a given date") then
        leans on the dense ranking; one that names three of a tool's terms keeps the full weight."""
        weight = 1.0 - self.alpha
        if self.lexical_gate <= 0 or not lexical:
            return weight
        matched = len(set(tokens) & set(self._tokens.get(lexical[0][0], ())))
        return weight * min(1.0, matched / self.lexical_gate)

    def _fuse(self, dense: list[tuple[str, float]], lexical: list[tuple[str, float]],
              lexical_weight: float | None = None) -> list[tuple[str, float]]:
        fused: dict[str, float] = {}
        lexical_weight = 1.0 - self.alpha if lexical_weight is None else lexical_weight
        dense_weight = 1.0 - lexical_weight
        if self.fusion == "rrf":
            for ranking in (dense, lexical):
                for rank, (key, _) in enumerate(ranking):
                    fused[key] = fused.get(key, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        else:
            top_lex = lexical[0][1] if lexical else 1.0
            # "normalized" divides the cosines by the query's top cosine as well, so that both parts
            # span [0, 1] whatever the embedder's cosine range (MiniLM's run lower than wordllama's)
            top_dense = dense[0][1] if self.fusion == "normalized" and dense and dense[0][1] > 0 else 1.0
            floor = dense[-1][1] if dense else 0.0  # a document outside the dense top-n scores at most this
            dense_map = dict(dense)
            for key in set(dense_map) | {k for k, _ in lexical}:
                fused[key] = dense_weight * dense_map.get(key, floor) / top_dense
            for key, s in lexical:
                fused[key] += lexical_weight * s / top_lex
        return sorted(fused.items(), key=lambda kv: -kv[1])

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write the vectors (faiss) and the documents (JSON) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vectors.save(folder)
        doc = {"embedder": self.embedder.name, "dim": self.vectors.dim, "next_id": self._next_id,
               "docs": [[key, self._ids[key], text] for key, text in self._texts.items()]}
        if self._extra_owner:
            self.extra.save(folder / _EXTRA)
            doc.update(next_extra=self._next_extra, extra=[[i, key] for i, key in self._extra_owner.items()])
        tmp = folder / (_DOCS + ".tmp")
        tmp.write_text(json.dumps(doc, ensure_ascii=False))
        os.replace(tmp, folder / _DOCS)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], embedder: Embedder | str | None = None, **options) -> SearchIndex:
        """Reload a saved index; the embedder must be the one it was built with (checked by name)."""
        folder = Path(folder)
        if not (folder / _DOCS).exists():
            raise FileNotFoundError(f"no search index in {folder} (missing {_DOCS})")
        doc = json.loads((folder / _DOCS).read_text())
        self = cls(embedder, **options)
        if doc["embedder"] != self.embedder.name or doc["dim"] != self.vectors.dim:
            raise ValueError(f"index in {folder} was built with embedder {doc['embedder']!r} (dim {doc['dim']}), "
                             f"not {self.embedder.name!r} (dim {self.vectors.dim}); rebuild it or pass that embedder")
        self.vectors = VectorIndex.load(folder)
        self._next_id = doc["next_id"]
        for key, i, text in doc["docs"]:
            self._ids[key], self._keys[i], self._texts[key] = i, key, text
            self._tokens[key] = tokenize(text)
        if doc.get("extra"):
            self.extra = VectorIndex.load(folder / _EXTRA)
            self._next_extra = doc["next_extra"]
            for i, key in doc["extra"]:
                self._extra_owner[i] = key
                self._extra_ids.setdefault(key, []).append(i)
            self._extra_most = None
        self._dirty = True
        return self
