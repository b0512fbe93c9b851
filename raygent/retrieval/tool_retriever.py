"""ToolRetriever: the top-k tool specs for a request, out of thousands of registered tools.

Each tool is indexed as one text: its name (identifier split into words), description, and its
parameters' names and descriptions. The index follows the registry incrementally: `sync(specs)`
embeds only tools that are new or whose spec changed and drops tools no longer registered, so an
agent can call `select(query, specs, k)` every turn at the cost of a fingerprint comparison.
Works in-process and as a Ray actor (`runtime.deploy(ToolRetriever, remote=True, ...)`).

Generated example requests (`examples=`, `expander=`; raygent/retrieval/expand.py) become extra
vectors of their tool (`SearchIndex.set_extra`); tools without them are indexed exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from raygent.retrieval.embedders import Embedder, normalize_rows
from raygent.retrieval.expand import ExampleCache, ExampleSource, expand_tools, load_examples
from raygent.retrieval.search import Method, SearchIndex
from raygent.schema import ToolSpec

_SPECS = "specs.json"
_VECTORS = "tool_vectors.json"  # how the saved tool vectors were made (summary_weight)
_EXAMPLES = "tool_examples.json"  # generated example requests the saved extra vectors were made from


def _param_lines(schema: dict[str, Any], prefix: str = "") -> list[str]:
    lines: list[str] = []
    for pname, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        desc = prop.get("description") or ""
        lines.append(f"{prefix}{pname}: {desc}".strip())
        if prop.get("type") in ("object", "dict") and prop.get("properties"):
            lines.extend(_param_lines(prop, prefix=f"{prefix}{pname}."))
        items = prop.get("items")
        if isinstance(items, dict) and items.get("properties"):
            lines.extend(_param_lines(items, prefix=f"{prefix}{pname}[]."))
    return lines


def tool_text(spec: ToolSpec) -> str:
    """The text a tool is indexed under: name, description, parameter names and descriptions, and the
    example requests it carries."""
    # digit-only name segments (`Weather_1_GetWeather`, `lock_invoice_23`) are versions or ids, not
    # meaning: left in, they match any number in a request ("what is 17*23?")
    words = [w for w in re.split(r"[_.\-\s]+", spec.name) if w and not w.isdigit()]
    readable = " ".join(words)
    parts = [readable if readable == spec.name else f"{'_'.join(words)} ({readable})", spec.description or ""]
    params = _param_lines(spec.parameters or {})
    if params:
        parts.append("parameters: " + "; ".join(params))
    if spec.examples:  # few-shot requests, when the tool has them, are the closest thing to a query
        parts.append("examples: " + " | ".join(e.query for e in spec.examples))
    return "\n".join(p for p in parts if p)


def _readable_name(name: str) -> str:
    return " ".join(w for w in re.split(r"[_.\-\s]+", name) if w and not w.isdigit())


def tool_summary(spec: ToolSpec) -> str:
    """The tool's name (as words) and description alone: the second text of its dense vector."""
    return ". ".join(p for p in (_readable_name(spec.name), (spec.description or "").strip()) if p)


ExamplePooling = Literal["centroid", "each"]
EXAMPLE_POOLINGS: tuple[str, ...] = ("centroid", "each")


def check_example_pooling(pooling: str) -> None:
    if pooling not in EXAMPLE_POOLINGS:
        raise ValueError(f"unknown example pooling {pooling!r}: use one of {', '.join(EXAMPLE_POOLINGS)}")


SUMMARY_WEIGHT = 1.0
"""Weight of the summary text in a tool's dense vector (`embed_tools`) for contextual embedders."""
LEXICAL_GATE = 3.0
"""`lexical_gate` of the tool index: the BM25 part gets its full weight when the best BM25 match holds
3 of the request's distinct tokens, less below (raygent/retrieval/search.py, `SearchIndex._lexical_weight`)."""
EXAMPLE_WEIGHTS = {("centroid", "wordllama"): 1.5, ("centroid", "contextual"): 3.0, ("each", "wordllama"): 0.5,
                   ("each", "contextual"): 0.5}
"""`extra_weight` of the tool index by example pooling and embedder: a tool with generated example
requests scores (own cosine + w x its example vector's cosine) / (1 + w) in the dense part
(docs/retrieval.md, "Example requests"). With the centroid the examples' consensus outweighs the
tool's own one-sentence description; a single noisy request (`each`) must not."""


def tool_index_defaults(embedder: Embedder, example_pooling: str = "centroid") -> dict[str, float]:
    """`summary_weight`, `lexical_gate` and `extra_weight` when not given: the gate (3) for every
    embedder, summary vectors (1.0) for all but wordllama, example weights from `EXAMPLE_WEIGHTS`.

    Measured (docs/retrieval.md, "Requests in other words"; recall@5 on the dev tools of
    benchmarks/data/unseen_*.jsonl, then on all of BFCL): the gate raises wordllama 0.630 -> 0.655 and
    leaves BFCL at 0.884; with MiniLM, gate and summary vectors together raise 0.772 -> 0.845 and leave
    BFCL at 0.904. Summary vectors cost wordllama, whose vectors are averages of static token
    embeddings, 0.005-0.007 on BFCL for about +0.01 here, so it keeps the full-text vector. Other
    embedders (local transformers, DashScope) are contextual like MiniLM and get its settings; they
    were not measured. Example weights (tools with generated requests, raygent/retrieval/expand.py),
    the best on the dev tools with benchmarks/data/unseen_tool_examples.json: centroid, weights
    0.5 / 1 / 1.5 / 2 / 3 / 4: MiniLM dev recall@5 0.868 / 0.878 / 0.885 / 0.890 / **0.892** / 0.882,
    wordllama 0.688 / 0.702 / **0.703** / 0.700 / 0.698 / 0.690; each request, 0.5 / 1 / 2: MiniLM
    **0.863** / 0.853 / 0.845, wordllama **0.688** / 0.682 / 0.660.
    """
    check_example_pooling(example_pooling)
    kind = "wordllama" if embedder.name.startswith("wordllama") else "contextual"
    return {"summary_weight": 0.0 if kind == "wordllama" else SUMMARY_WEIGHT, "lexical_gate": LEXICAL_GATE,
            "extra_weight": EXAMPLE_WEIGHTS[(example_pooling, kind)]}


def apply_tool_index_defaults(index: SearchIndex, summary_weight: float | None,
                              index_options: dict[str, Any], example_pooling: str = "centroid") -> float:
    """Give a tool index the `lexical_gate` and `extra_weight` of `tool_index_defaults` unless
    `index_options` set them; returns the summary weight to embed tools with (the given one, else the
    default)."""
    defaults = tool_index_defaults(index.embedder, example_pooling)
    for option in ("lexical_gate", "extra_weight"):
        if option not in index_options:
            setattr(index, option, defaults[option])
    return defaults["summary_weight"] if summary_weight is None else summary_weight


async def embed_tools(embedder: Embedder, specs: Sequence[ToolSpec], summary_weight: float = SUMMARY_WEIGHT
                      ) -> np.ndarray:
    """The dense vectors of tools: the unit-normalised sum of the embedding of `tool_text` (name,
    description, parameters, examples) and `summary_weight` times that of `tool_summary` (name and
    description alone). Parameter lines dilute what a tool is for; a short request ("any planes to
    Denver on Friday?") matches the summary better, while one naming argument values still matches
    the full text. Both texts go to the embedder in one call; 0 gives the full text's vector alone."""
    specs = list(specs)
    if not specs:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    full = [tool_text(s) for s in specs]
    if summary_weight <= 0:
        return await embedder.embed(full)
    vecs = await embedder.embed(full + [tool_summary(s) for s in specs])
    return normalize_rows(vecs[:len(specs)] + summary_weight * vecs[len(specs):])


def _fingerprint(spec: ToolSpec, examples: Sequence[str] = ()) -> str:
    """Changes when anything indexed changes; pydantic's JSON dump is ~5x cheaper than tool_text."""
    raw = spec.model_dump_json(include={"name", "description", "parameters", "examples"})
    if examples:
        raw += json.dumps(list(examples))
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


async def embed_examples(embedder: Embedder, examples: dict[str, list[str]],
                         pooling: ExamplePooling = "centroid") -> dict[str, np.ndarray]:
    """Each tool's example requests embedded, all in one embedder call: name -> one unit row, the
    normalised mean of its requests' vectors (`centroid`), or one unit row per request (`each`).

    Why the centroid: generated requests are noisy one by one (a 0.5B model's guesses); their mean
    keeps what they share, the tool's job in users' words. On the dev tools of the unseen-style set
    it beat the best single request at every weight (MiniLM dev recall@5 0.892 vs 0.863, wordllama
    0.703 vs 0.688; docs/retrieval.md), and it is one extra vector per tool instead of eight."""
    check_example_pooling(pooling)
    names = [n for n, qs in examples.items() if qs]
    vecs = await embedder.embed([q for n in names for q in examples[n]])
    out, pos = {}, 0
    for n in names:
        rows = vecs[pos:pos + len(examples[n])]
        out[n] = normalize_rows(rows.mean(axis=0, keepdims=True)) if pooling == "centroid" else rows
        pos += len(examples[n])
    return out


def as_spec(obj: Any) -> ToolSpec:
    """A ToolSpec from a spec, a raygent Tool, or a dict like `{"name", "description", "parameters"}`."""
    if isinstance(obj, ToolSpec):
        return obj
    if hasattr(obj, "spec") and isinstance(obj.spec, ToolSpec):
        return obj.spec
    if isinstance(obj, dict):
        params = obj.get("parameters") or {"type": "object", "properties": {}}
        return ToolSpec(name=obj["name"], description=obj.get("description", ""), parameters=params)
    raise TypeError(f"not a tool spec: {obj!r}")


class ToolRetriever:
    """Indexes tool specs and returns the top-k for a query (see the module docstring).

    `embedder` is an Embedder or a spec string ("wordllama", "st:/folder", "dashscope:..."); the
    other keyword arguments go to `SearchIndex` (method, fusion, index kind). With `path`, the index
    is loaded from that folder when present and `save()` writes it there. `decompose` (on by default)
    also searches each clause of a multi-intent request ("convert 5000 EUR to USD, then find the
    weather in Paris"), so that every tool the request needs reaches the top k
    (raygent/retrieval/decompose.py). `summary_weight` (a tool's vector mixes in its name +
    description, `embed_tools`; on for MiniLM and other contextual embedders, off for wordllama) and
    the index option `lexical_gate` (the BM25 part's full weight needs 3 of the request's words in the
    best BM25 match) default by embedder (`tool_index_defaults`).

    `examples`: generated example requests (an `ExampleCache`, its JSON file, or name -> requests);
    their normalised mean (`example_pooling="centroid"`; `"each"`: every request) becomes an extra
    vector of its tool, whose dense score is then (own cosine + `example_weight` x the best extra
    cosine) / (1 + `example_weight`) (default by embedder and pooling, `tool_index_defaults`; index
    options `extra_weight`, `extra_mode`). `expander`: a ChatModel that writes them for
    tools that have none at `add` (once: they go into the cache, `examples` when that is a cache or a
    file). Tools without examples rank exactly as without this option.
    """

    def __init__(self, embedder: Embedder | str | None = None, *, path: str | os.PathLike[str] | None = None,
                 method: Method = "hybrid", decompose: bool = True, summary_weight: float | None = None,
                 examples: ExampleSource = None, expander: Any = None, example_weight: float | None = None,
                 example_pooling: ExamplePooling = "centroid", **index_options: Any):
        self.path = Path(path).expanduser() if path else None
        self.method: Method = method
        self._specs: dict[str, ToolSpec] = {}
        self._prints: dict[str, str] = {}
        if example_weight is not None:
            index_options["extra_weight"] = example_weight
        check_example_pooling(example_pooling)
        self.example_pooling: ExamplePooling = example_pooling
        self.expander = expander
        self._cache = examples if isinstance(examples, ExampleCache) else \
            ExampleCache(examples if isinstance(examples, (str, os.PathLike)) else None)
        self.examples = load_examples(examples)
        if self.path is not None and (self.path / _EXAMPLES).exists():  # what the saved vectors were made from
            self.examples = {**json.loads((self.path / _EXAMPLES).read_text()), **self.examples}
        if self.path is not None and (self.path / _SPECS).exists():
            self.index = SearchIndex.load(self.path, embedder, default_method=method, decompose=decompose,
                                          **index_options)
            saved = json.loads((self.path / _SPECS).read_text())
            self._specs = {s["name"]: ToolSpec(**s) for s in saved}
            self._prints = {name: _fingerprint(s, self.examples.get(name, ())) for name, s in self._specs.items()}
        else:
            self.index = SearchIndex(embedder, default_method=method, decompose=decompose, **index_options)
        self.summary_weight = apply_tool_index_defaults(self.index, summary_weight, index_options, example_pooling)
        if self._prints and self._saved_vector_settings() != self._vector_settings():
            self._prints = {}  # vectors made another way: the next add() of these tools embeds them again

    def _vector_settings(self) -> dict[str, Any]:
        return {"summary_weight": self.summary_weight, "example_pooling": self.example_pooling}

    def _saved_vector_settings(self) -> dict[str, Any]:
        """How the saved vectors were made; files from before a setting existed get its old behaviour
        (full-text vectors, one extra vector per example)."""
        meta = self.path / _VECTORS if self.path is not None else None
        saved = json.loads(meta.read_text()) if meta is not None and meta.exists() else {}
        return {"summary_weight": float(saved.get("summary_weight", 0.0)),
                "example_pooling": saved.get("example_pooling", "each")}

    # -- contents ----------------------------------------------------------------------------
    async def add(self, specs: Iterable[Any]) -> int:
        """Index (or re-index) tools; returns how many were embedded (unchanged ones are skipped)."""
        specs = [as_spec(obj) for obj in specs]
        if self.expander is not None:
            await self._expand(specs)
        fresh: dict[str, ToolSpec] = {}
        for spec in specs:
            if self._prints.get(spec.name) != _fingerprint(spec, self.examples.get(spec.name, ())):
                fresh[spec.name] = spec
        if not fresh:
            return 0
        vecs = await embed_tools(self.index.embedder, list(fresh.values()), self.summary_weight)
        await self.index.add({name: tool_text(s) for name, s in fresh.items()}, vectors=vecs)
        examples = {name: self.examples.get(name, []) for name in fresh}
        extra = await embed_examples(self.index.embedder, examples, self.example_pooling)
        self.index.set_extra({name: extra.get(name, np.zeros((0, self.index.extra.dim), dtype=np.float32))
                              for name in fresh})
        for name, spec in fresh.items():
            self._specs[name] = spec
            self._prints[name] = _fingerprint(spec, examples[name])
        return len(fresh)

    async def _expand(self, specs: Sequence[ToolSpec]) -> None:
        """Have `expander` write example requests for new or changed tools (cached: once per tool)."""
        todo = [s for s in specs if s.name not in self.examples or (
            s.name in self._prints and self._prints[s.name] != _fingerprint(s, self.examples[s.name]))]
        if todo:
            self.examples.update(await expand_tools(todo, self.expander, self._cache))

    async def remove(self, names: Iterable[str]) -> int:
        names = [n for n in names if n in self._specs]
        for n in names:
            self._specs.pop(n)
            self._prints.pop(n)
        return self.index.remove(names)

    async def sync(self, specs: Iterable[Any]) -> dict[str, int]:
        """Make the index hold exactly `specs` (from `registry.list_specs()`): add new or changed
        tools, drop the others. Returns {"added": n, "removed": m, "total": t}."""
        specs = [as_spec(s) for s in specs]
        if len(specs) == len(self._specs) and all(self._specs.get(s.name) is s for s in specs):
            # the same spec objects as last time (an in-process registry): nothing can have changed
            return {"added": 0, "removed": 0, "total": len(self._specs)}
        names = {s.name for s in specs}
        removed = await self.remove([n for n in list(self._specs) if n not in names])
        added = await self.add(specs)
        return {"added": added, "removed": removed, "total": len(self._specs)}

    async def index_registry(self, registry: Any) -> dict[str, int]:
        """Sync with any object that has an awaitable `list_specs()` (a registry, a hub, an actor proxy)."""
        return await self.sync(await registry.list_specs())

    async def count(self) -> int:
        return len(self._specs)

    # -- queries -----------------------------------------------------------------------------
    async def search(self, query: str, k: int = 5, method: Method | None = None) -> list[ToolSpec]:
        """The k tool specs that best match `query`, best first."""
        hits = await self.index.search(query, k, method or self.method)
        return [self._specs[h.key] for h in hits]

    async def search_scored(self, query: str, k: int = 5, method: Method | None = None) -> list[tuple[str, float]]:
        """(tool name, score) pairs, best first."""
        return [(h.key, h.score) for h in await self.index.search(query, k, method or self.method)]

    async def select(self, query: str, specs: Sequence[Any], k: int = 5) -> list[ToolSpec]:
        """Sync with `specs`, then return their top-k for `query` (the agent's per-turn call)."""
        await self.sync(specs)
        return await self.search(query, k)

    # -- persistence -------------------------------------------------------------------------
    async def save(self, path: str | os.PathLike[str] | None = None) -> str:
        folder = Path(path).expanduser() if path else self.path
        if folder is None:
            raise ValueError("no folder to save the tool index to: pass path= here or to ToolRetriever()")
        self.index.save(folder)
        tmp = folder / (_SPECS + ".tmp")
        tmp.write_text(json.dumps([s.model_dump(mode="json") for s in self._specs.values()], ensure_ascii=False))
        os.replace(tmp, folder / _SPECS)
        (folder / _VECTORS).write_text(json.dumps(self._vector_settings()))
        used = {n: self.examples[n] for n in self._specs if self.examples.get(n)}
        if used or (folder / _EXAMPLES).exists():
            (folder / _EXAMPLES).write_text(json.dumps(used, ensure_ascii=False))
        return str(folder)
