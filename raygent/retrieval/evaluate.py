"""Tool-retrieval evaluation: recall@1, recall@5 and MRR of a method over TOOLS.jsonl / QUERIES.jsonl.

TOOLS lines: `{"name", "description", "parameters"}` (parameters a JSON schema, may be empty or
absent). QUERIES lines: `{"query", "gold": [tool names]}`. recall@k is the share of gold tools
found in the top k, each gold tool of a query counted (a query with two gold tools contributes two
trials); MRR is the mean over queries of 1/rank of the first gold tool within the top 10 (or the
top k when k > 10), 0 when none is there. Behind `raygent retrieval eval`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from raygent.retrieval.decompose import split_intents
from raygent.retrieval.embedders import Embedder
from raygent.retrieval.search import METHODS, Method, SearchIndex
from raygent.retrieval.expand import ExampleSource, load_examples
from raygent.retrieval.tool_retriever import (ExamplePooling, apply_tool_index_defaults, as_spec, embed_examples,
                                              embed_tools, tool_text)
from raygent.schema import ToolSpec

PROGRESS_MIN = 200  # sets smaller than this get no progress bar


class EvalQuery(BaseModel):
    query: str
    gold: list[str] = Field(min_length=1)
    category: str | None = None  # optional: recall@5 is also reported per category


class EvalTool(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


def _read_jsonl(path: str | Path, model: type[BaseModel], what: str) -> list[Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(model.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"{path}:{n}: not a valid {what} line ({'.'.join(map(str, first['loc']))}: "
                                 f"{first['msg']})") from None
    if not rows:
        raise ValueError(f"{path} holds no {what} lines")
    return rows


def load_tools(path: str | Path) -> list[ToolSpec]:
    tools = _read_jsonl(path, EvalTool, "tool")
    out = []
    for t in tools:
        params = t.parameters if t.parameters and t.parameters.get("properties") is not None else None
        out.append(as_spec({"name": t.name, "description": t.description, "parameters": params}))
    return out


def load_queries(path: str | Path) -> list[EvalQuery]:
    return _read_jsonl(path, EvalQuery, "query")


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled or total < PROGRESS_MIN,
                unit="item", dynamic_ncols=True)


async def build_index(tools: Sequence[ToolSpec], embedder: Embedder | str | None = None, *,
                      method: Method = "hybrid", progress: bool = True, batch: int = 2048,
                      summary_weight: float | None = None, examples: ExampleSource = None,
                      example_pooling: ExamplePooling = "centroid",
                      **index_options: Any) -> tuple[SearchIndex, dict[str, str]]:
    """Index tools under unique keys (a repeated name gets `name#2`...); returns (index, key -> name).
    Vectors and index settings are ToolRetriever's (`embed_tools`, `tool_index_defaults`) unless
    given. Dense vectors are computed only for methods that use them. `examples` (tool name ->
    generated requests, raygent/retrieval/expand.py) become extra vectors, as in ToolRetriever
    (`example_pooling`: their centroid, or each request)."""
    index = SearchIndex(embedder, default_method=method, **index_options)
    summary_weight = apply_tool_index_defaults(index, summary_weight, index_options, example_pooling)
    keys: dict[str, str] = {}
    items: list[tuple[str, str]] = []
    specs: list[ToolSpec] = []
    for spec in tools:
        key = spec.name
        n = 1
        while key in keys:
            n += 1
            key = f"{spec.name}#{n}"
        keys[key] = spec.name
        items.append((key, tool_text(spec)))
        specs.append(spec)
    dense = method in ("dense", "hybrid")
    with _bar(len(items), "indexing tools", progress) as bar:
        for i in range(0, len(items), batch):
            part = items[i:i + batch]
            vecs = await embed_tools(index.embedder, specs[i:i + batch], summary_weight) if dense else \
                np.zeros((len(part), index.vectors.dim), dtype=np.float32)
            await index.add(part, vectors=vecs)
            bar.update(len(part))
    by_name = load_examples(examples)
    if by_name and dense:
        extra = await embed_examples(index.embedder, by_name, example_pooling)
        index.set_extra({key: extra[name] for key, name in keys.items() if name in extra})
    return index, keys


async def evaluate(tools: Sequence[ToolSpec], queries: Sequence[EvalQuery], *, method: Method = "hybrid",
                   k: int = 5, embedder: Embedder | str | None = None, progress: bool = True,
                   index: tuple[SearchIndex, dict[str, str]] | None = None, decompose: bool = False,
                   **index_options: Any) -> dict[str, Any]:
    """Index `tools` (or reuse `index`), run every query, return the metrics (module docstring).
    `decompose` searches multi-intent queries clause by clause too (raygent/retrieval/decompose.py)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    start = time.perf_counter()
    index_, keys = index or await build_index(tools, embedder, method=method, progress=progress, **index_options)
    depth = max(k, 10)
    dense = method in ("dense", "hybrid")
    qvecs = await index_.embedder.embed([q.query for q in queries]) if dense else None
    parts = [split_intents(q.query) if decompose else [] for q in queries]
    starts = np.cumsum([0] + [len(p) for p in parts])
    pvecs = await index_.embedder.embed([p for ps in parts for p in ps]) if dense and decompose else None
    cutoffs = sorted({1, 5, k})
    found = {c: 0 for c in cutoffs}
    trials = 0
    rr = 0.0
    by_category: dict[str, list[int]] = {}
    with _bar(len(queries), f"{method} queries", progress) as bar:
        for i, q in enumerate(queries):
            qvec = None if qvecs is None else qvecs[i:i + 1]
            if parts[i]:
                if qvec is not None:
                    qvec = np.vstack([qvec, pvecs[starts[i]:starts[i + 1]]])
                hits = index_.search_multi(q.query, parts[i], qvec, depth * 2, method)
            else:
                hits = index_.search_embedded(q.query, qvec, depth * 2, method)
            ranking: list[str] = []
            for h in hits:  # tools that share a name count once, at their best rank
                name = keys[h.key]
                if name not in ranking:
                    ranking.append(name)
            ranking = ranking[:depth]
            gold = list(dict.fromkeys(q.gold))
            trials += len(gold)
            for c in cutoffs:
                top = set(ranking[:c])
                found[c] += sum(g in top for g in gold)
            if q.category is not None:
                per_cat = by_category.setdefault(q.category, [0, 0])
                per_cat[0] += sum(g in ranking[:5] for g in gold)
                per_cat[1] += len(gold)
            first = next((r for r, name in enumerate(ranking) if name in gold), None)
            rr += 0.0 if first is None else 1.0 / (first + 1)
            bar.update(1)
    result: dict[str, Any] = {"recall@1": found[1] / trials, "recall@5": found[5] / trials,
                              "mrr": rr / len(queries)}
    if k not in (1, 5):
        result[f"recall@{k}"] = found[k] / trials
    result.update(queries=len(queries), tools=len(tools), seconds=round(time.perf_counter() - start, 3))
    result = {key: round(v, 4) if isinstance(v, float) and key != "seconds" else v for key, v in result.items()}
    if by_category:
        result["recall@5_by_category"] = {c: round(f / n, 4) for c, (f, n) in by_category.items()}
    return result


async def eval_command(tools_path: str, queries_path: str, *, method: Method = "hybrid", k: int = 5,
                       embedder: str | None = None, json_out: bool = True, decompose: bool = True,
                       **index_options: Any) -> int:
    """`raygent retrieval eval`: prints one JSON object (or a short table without --json).
    `index_options` go to SearchIndex (fusion, alpha, lexical, min_ratio)."""
    start = time.perf_counter()
    tools, queries = load_tools(tools_path), load_queries(queries_path)
    result = await evaluate(tools, queries, method=method, k=k, embedder=embedder, decompose=decompose,
                            **index_options)
    result["seconds"] = round(time.perf_counter() - start, 3)
    if json_out:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:10s} {value}")
    return 0
