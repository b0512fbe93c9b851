"""Tool retrieval: quality on BFCL and latency / memory at scale.

Quality: the BFCL development set (benchmarks/bfcl_data.py: every distinct function of the
single-turn categories as the corpus, each query's ground-truth functions as gold), recall@1,
recall@5 and MRR for bm25, tfidf, dense and hybrid (RRF, weighted and normalized fusion), each with
and without multi-intent query decomposition, on all queries, on the non-live queries (dev: where
the settings were chosen) and on the live ones (held out). Baseline: BM25 in the same run. Goal:
hybrid recall@5 >= 0.90. `--embedder minilm` (or st:FOLDER) adds the rows for another embedder.
`--skip-quality` leaves this part out (it needs the bfcl-eval wheel, below).

Unseen-style quality: benchmarks/data/unseen_tools.jsonl (200 everyday API tools, none from BFCL,
one-sentence descriptions) and unseen_queries.jsonl (10 short requests per tool, written to avoid
the tool's own words). Tools are split 30 % dev / 70 % test (a query's "category"; every tool is in
the corpus either way): settings may be tuned on dev only, figures are reported on test. recall@1,
recall@5 and MRR for bm25, dense and the default hybrid (normalized fusion + decomposition, as
`ToolRetriever()` runs it), with wordllama and, when its weights package is installed, MiniLM.
Goal (issue 15): test recall@5 >= 0.85. `--skip-unseen` leaves it out. `--examples FILE` adds the
rows with generated example requests as extra tool vectors (benchmarks/data/unseen_tool_examples.json,
raygent/retrieval/expand.py).

Scale: synthetic catalogues (raygent/retrieval/synthetic.py) of 1k, 10k, 100k and 1M tools. For
each size: index memory, build time, query latency p50/p99 of the dense search alone with an exact
(flat) and an approximate (IVF; HNSW up to 100k) index, approximate recall@10 against exact, and the
full hybrid query (embed + BM25 + faiss + fusion) on the default index. Vectors are real wordllama
embeddings up to --real-max tools (default 100k); above that they are random unit vectors with
queries made by perturbing stored vectors (said in the output), and the hybrid query is skipped
unless --hybrid-1m. Goal: p50 <= 5 ms at 10k and <= 20 ms at 1M on 2 cores. `--examples-per-tool N`
also times the hybrid query on tools expanded with N templated requests each (their centroid, the
default pooling, is one extra vector per tool; raygent/retrieval/expand.py).

Run: .venv/bin/python benchmarks/retrieval.py [--skip-quality] [--skip-unseen] [--skip-scale]
     [--sizes 1000,10000,100000,1000000]
Data: the bfcl-eval wheel is downloaded once with `pip download bfcl-eval --no-deps` into
~/.cache/raygent/bfcl (RAYGENT_BFCL_CACHE), or taken from RAYGENT_BFCL_WHEEL; only its data files are read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raygent.retrieval.embedders import Embedder, EmbedderError, get_embedder, normalize_rows  # noqa: E402
from raygent.retrieval.evaluate import EvalQuery, build_index, evaluate, load_queries, load_tools  # noqa: E402
from raygent.retrieval.search import SearchIndex  # noqa: E402
from raygent.retrieval.synthetic import _combo, synthetic_query, synthetic_tool  # noqa: E402
from raygent.retrieval.tool_retriever import as_spec, embed_examples, tool_index_defaults, tool_text  # noqa: E402
from raygent.retrieval.vector_index import VectorIndex  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class _MemoEmbedder(Embedder):
    """Wraps an embedder and remembers every text's vector, so that the many rows of the quality table
    embed each query (and clause) once; the vectors are the wrapped embedder's, unchanged."""

    def __init__(self, inner: Embedder):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.memo: dict[str, np.ndarray] = {}

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            self.memo.update(zip(todo, self.inner.embed_sync(todo)))
        return np.stack([self.memo[t] for t in texts])


# rows of the quality table: (method, SearchIndex options, decompose); the last row is ToolRetriever's default.
# Tools' vectors are ToolRetriever's in every row (tool_index_defaults: full text + summary for MiniLM)
ROWS_WORDLLAMA = [("bm25", {}, False), ("bm25", {}, True), ("tfidf", {}, False), ("dense", {}, False),
                  ("dense", {}, True), ("hybrid", {"fusion": "rrf"}, False), ("hybrid", {"fusion": "weighted"}, False),
                  ("hybrid", {"fusion": "normalized"}, False), ("hybrid", {"fusion": "rrf"}, True),
                  ("hybrid", {"fusion": "weighted"}, True), ("hybrid", {"fusion": "normalized"}, True)]
ROWS_OTHER = [("dense", {}, False), ("dense", {}, True), ("hybrid", {"fusion": "rrf"}, False),
              ("hybrid", {"fusion": "weighted"}, False), ("hybrid", {"fusion": "normalized"}, False),
              ("hybrid", {"fusion": "weighted"}, True), ("hybrid", {"fusion": "normalized", "lexical_gate": 0.0}, True),
              ("hybrid", {"fusion": "normalized"}, True)]


async def quality(embedders: list[str | None]) -> list[dict]:
    from bfcl_data import build_dev_set

    raw_tools, raw_queries = build_dev_set()
    tools = [as_spec(t) for t in raw_tools]
    queries = [EvalQuery(query=q["query"], gold=q["gold"], category=q["category"]) for q in raw_queries]
    dev = [q for q in queries if not q.category.startswith("live")]
    held = [q for q in queries if q.category.startswith("live")]
    print(f"\n== quality: BFCL dev set, {len(tools)} distinct functions ({len({t.name for t in tools})} names), "
          f"{len(queries)} queries, {sum(len(q.gold) for q in queries)} gold calls; settings were chosen on the "
          f"{len(dev)} non-live queries (dev), the {len(held)} live ones are held out")
    rows = []
    for emb in embedders:
        embedder = _MemoEmbedder(get_embedder(emb))
        label = emb or "wordllama"
        start = time.perf_counter()
        index = await build_index(tools, embedder, method="hybrid", progress=True)
        print(f"[{label}] index built in {time.perf_counter() - start:.1f} s")
        lat = []
        for q in queries[:101]:  # one query at a time, as an agent turn does (the first one warms up)
            t = time.perf_counter()
            await embedder.inner.embed([q.query])
            lat.append((time.perf_counter() - t) * 1000)
        print(f"[{label}] one query embedded: p50 {_pct(lat[1:], 50):.2f} ms, p99 {_pct(lat[1:], 99):.2f} ms")
        for method, opts, decompose in (ROWS_WORDLLAMA if emb is None else ROWS_OTHER):
            index[0].fusion = opts.get("fusion", "weighted")
            index[0].alpha = 0.6
            index[0].lexical_gate = opts.get("lexical_gate", tool_index_defaults(embedder)["lexical_gate"])
            name = method + (f" ({opts['fusion']})" if opts else "") + (" + decomposition" if decompose else "") + \
                (" (no lexical gate)" if opts.get("lexical_gate") == 0 else "")
            row = {"embedder": label, "method": name}
            for part, qs in (("", queries), ("dev ", dev), ("held-out ", held)):
                r = await evaluate(tools, qs, method=method, index=index, progress=False, decompose=decompose)
                if part:
                    row[f"{part}recall@5"] = r["recall@5"]
                else:
                    row.update(r)
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = next(r for r in rows if r["method"] == "bm25")
    for r in rows:
        r["recall@5 / bm25"] = round(r["recall@5"] / base["recall@5"], 3)
    print("\n| embedder | method | recall@1 | recall@5 | MRR | dev recall@5 | held-out recall@5 | recall@5 ÷ BM25 |"
          "\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['embedder']} | {r['method']} | {r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['mrr']:.3f} | "
              f"{r['dev recall@5']:.3f} | {r['held-out recall@5']:.3f} | {r['recall@5 / bm25']:.3f} |")
    cats = sorted({c for r in rows for c in r["recall@5_by_category"]})
    print("\nrecall@5 per category\n| embedder | method | " + " | ".join(cats) + " |\n|---|---|" + "---|" * len(cats))
    for r in rows:
        print(f"| {r['embedder']} | {r['method']} | " + " | ".join(
            f"{r['recall@5_by_category'].get(c, 0):.3f}" for c in cats) + " |")
    return rows


DATA = Path(__file__).resolve().parent / "data"
# rows of the unseen-style table: (method, decompose); the last row is ToolRetriever's default
ROWS_UNSEEN = [("bm25", False), ("dense", False), ("hybrid", True)]


async def unseen(embedders: list[str | None], examples: str | None = None) -> list[dict]:
    """recall@1 / recall@5 / MRR on the unseen-style set (module docstring), dev and test apart; with
    `examples`, the default hybrid again with the generated requests as extra tool vectors: one per
    request (the first pooling, the baseline) and their centroid (the default)."""
    tools = load_tools(DATA / "unseen_tools.jsonl")
    queries = load_queries(DATA / "unseen_queries.jsonl")
    parts = {split: [q for q in queries if q.category == split] for split in ("dev", "test")}
    print(f"\n== quality: unseen-style set, {len(tools)} tools, {len(queries)} queries "
          f"({len(parts['dev'])} dev: settings may be tuned on these; {len(parts['test'])} test: reported)")
    rows = []
    for emb in embedders:
        label = emb or "wordllama"
        try:
            embedder = _MemoEmbedder(get_embedder(emb))
        except EmbedderError as exc:
            print(f"[{label}] skipped: {exc}")
            continue
        index = await build_index(tools, embedder, method="hybrid", progress=False)
        for method, decompose in ROWS_UNSEEN if emb is None else ROWS_UNSEEN[1:]:  # bm25 has no embedder
            row = {"embedder": label, "method": method + (" (default)" if method == "hybrid" else "")}
            for split, qs in parts.items():
                r = await evaluate(tools, qs, method=method, index=index, progress=False, decompose=decompose)
                row.update({f"{split} {m}": r[m] for m in ("recall@1", "recall@5", "mrr")})
            rows.append(row)
            print(json.dumps(row), flush=True)
        for pooling in ("each", "centroid") if examples else ():
            index = await build_index(tools, embedder, method="hybrid", progress=False, examples=examples,
                                      example_pooling=pooling)
            row = {"embedder": label, "method": "hybrid (default) + examples" + (
                " (centroid, default)" if pooling == "centroid" else " (each request)")}
            for split, qs in parts.items():
                r = await evaluate(tools, qs, method="hybrid", index=index, progress=False, decompose=True)
                row.update({f"{split} {m}": r[m] for m in ("recall@1", "recall@5", "mrr")})
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| embedder | method | test recall@1 | test recall@5 | test MRR | dev recall@1 | dev recall@5 |"
          "\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['embedder']} | {r['method']} | {r['test recall@1']:.3f} | {r['test recall@5']:.3f} | "
              f"{r['test mrr']:.3f} | {r['dev recall@1']:.3f} | {r['dev recall@5']:.3f} |")
    return rows


def _time_queries(index: VectorIndex, queries: np.ndarray, k: int = 10) -> tuple[list[float], np.ndarray]:
    lat, found = [], []
    index.search(queries[:1], k)  # warm
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None, :], k)
        lat.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    return lat, np.vstack(found)


async def _timed_hybrid(search: SearchIndex, q_ids, qtexts: list[str]) -> tuple[list[float], int]:
    """Milliseconds per hybrid query, and how many found their target tool in the top 10."""
    lat, hits = [], 0
    for qi, qt in zip(q_ids, qtexts):
        t = time.perf_counter()
        res = await search.search(qt, 10)
        lat.append((time.perf_counter() - t) * 1000)
        hits += f"t{qi}" in {h.key for h in res}
    return lat, hits


def _example_texts(i: int, n: int) -> list[str]:
    """n templated requests for synthetic tool i (stand-ins for generated ones: the cost, not the quality)."""
    action, obj, ctx, _ = _combo(i)
    forms = ["can you {a} my {o} {c}", "I want to {a} a {o}", "{a} the {o} {c} for me", "need to {a} {o} now",
             "how do I {a} my {o}", "quick: {a} {o} {c}", "help me {a} the {o}", "{o}: {a} it {c}"]
    return [forms[j % len(forms)].format(a=action, o=obj, c=ctx) for j in range(n)]


async def scale(sizes: list[int], real_max: int, n_queries: int, hybrid_1m: bool,
                examples_per_tool: int = 0) -> list[dict]:
    embedder = get_embedder()
    rows = []
    print(f"\n== scale: synthetic catalogues, {n_queries} queries per size, one query at a time, k=10")
    for n in sizes:
        real = n <= real_max
        t0 = time.perf_counter()
        texts = [tool_text(synthetic_tool(i)) for i in range(n)] if real or hybrid_1m else None
        rng = np.random.default_rng(n)
        q_ids = rng.choice(n, n_queries, replace=False)
        if real:
            vecs = await embedder.embed(texts)
            qvecs = await embedder.embed([synthetic_query(int(i)) for i in q_ids])
        else:  # random unit vectors; queries are stored vectors plus noise, so neighbours are meaningful
            vecs = normalize_rows(rng.standard_normal((n, embedder.dim), dtype=np.float32))
            qvecs = normalize_rows(vecs[q_ids] + 0.35 * rng.standard_normal((n_queries, embedder.dim),
                                                                            dtype=np.float32))
        t_embed = time.perf_counter() - t0
        ids = np.arange(n, dtype=np.int64)
        results = {}
        kinds = ["flat", "ivf"] + (["hnsw"] if n <= 100_000 or real else [])
        for kind in kinds:
            t = time.perf_counter()
            index = VectorIndex(embedder.dim, kind)
            index.add(ids, vecs)
            build = time.perf_counter() - t
            lat, found = _time_queries(index, qvecs)
            results[kind] = found
            rows.append({"tools": n, "vectors": "wordllama" if real else "random", "index": kind,
                         "build_s": round(build, 2), "memory_mb": round(index.memory_bytes() / 2**20, 1),
                         "p50_ms": round(_pct(lat, 50), 3), "p99_ms": round(_pct(lat, 99), 3)})
            if kind != "flat":
                exact = results["flat"]
                rows[-1]["recall@10_vs_exact"] = round(float(np.mean(
                    [len(set(a) & set(e)) / 10 for a, e in zip(found, exact)])), 4)
            print(json.dumps(rows[-1]), flush=True)
            del index
        if texts is not None and (real or hybrid_1m):
            t = time.perf_counter()
            # as ToolRetriever builds it: auto index kind, hybrid normalized fusion, its lexical gate
            search = SearchIndex(embedder, lexical_gate=tool_index_defaults(embedder)["lexical_gate"])
            await search.add(list(zip((f"t{i}" for i in range(n)), texts)), vectors=vecs)
            search._scorer("bm25")  # build the BM25 matrix now, not inside the first timed query
            build = time.perf_counter() - t
            qtexts = [synthetic_query(int(i)) for i in q_ids]
            await search.search(qtexts[0], 10)
            lat, hits = await _timed_hybrid(search, q_ids, qtexts)
            rows.append({"tools": n, "vectors": "wordllama" if real else "random", "index": f"hybrid query ({search.vectors.built_kind})",
                         "build_s": round(build, 2), "p50_ms": round(_pct(lat, 50), 3),
                         "p99_ms": round(_pct(lat, 99), 3), "target_in_top10": round(hits / len(q_ids), 3)})
            print(json.dumps(rows[-1]), flush=True)
            # two-intent requests ("<query A>, then <query B>") with decomposition on, as ToolRetriever runs
            # them: the query and both clauses are embedded in one call and searched; both targets counted
            pairs = list(zip(q_ids[0::2], q_ids[1::2]))
            for decompose in (False, True):
                lat, hits = [], 0
                for qa, qb in pairs:
                    text = f"{synthetic_query(int(qa))}, then {synthetic_query(int(qb))}"
                    t = time.perf_counter()
                    res = await search.search(text, 10, decompose=decompose)
                    lat.append((time.perf_counter() - t) * 1000)
                    keys = {h.key for h in res}
                    hits += (f"t{qa}" in keys) + (f"t{qb}" in keys)
                rows.append({"tools": n, "vectors": "wordllama" if real else "random",
                             "index": f"hybrid, 2-intent query{' + decomposition' if decompose else ''} "
                                      f"({search.vectors.built_kind})",
                             "build_s": round(build, 2), "p50_ms": round(_pct(lat, 50), 3),
                             "p99_ms": round(_pct(lat, 99), 3),
                             "target_in_top10": round(hits / (2 * len(pairs)), 3)})
                print(json.dumps(rows[-1]), flush=True)
            if examples_per_tool:
                t = time.perf_counter()
                texts = {f"t{i}": _example_texts(i, examples_per_tool) for i in range(n)}
                extra = await embed_examples(embedder, texts)
                search.set_extra(extra)  # the default pooling: one centroid vector per tool
                build = time.perf_counter() - t
                await search.search(qtexts[0], 10)
                lat, hits = await _timed_hybrid(search, q_ids, qtexts)
                rows.append({"tools": n, "vectors": "wordllama" if real else "random",
                             "index": f"hybrid query + centroid of {examples_per_tool} examples/tool "
                                      f"({search.vectors.built_kind}, extra {search.extra.built_kind})",
                             "build_s": round(build, 2), "p50_ms": round(_pct(lat, 50), 3),
                             "p99_ms": round(_pct(lat, 99), 3), "target_in_top10": round(hits / len(q_ids), 3)})
                print(json.dumps(rows[-1]), flush=True)
            del search
        print(f"   (vectors for {n} tools prepared in {t_embed:.1f} s)", flush=True)
    print("\n| tools | vectors | index | build s | memory MB | p50 ms | p99 ms | recall@10 vs exact |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        recall = r.get("recall@10_vs_exact", r.get("target_in_top10", ""))
        print(f"| {r['tools']:,} | {r['vectors']} | {r['index']} | {r['build_s']} | {r.get('memory_mb', '')} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {recall} |")
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-unseen", action="store_true", help="leave out the unseen-style quality set")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--embedder", action="append", default=[], help="extra embedder spec for the quality rows")
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--real-max", type=int, default=100_000, help="largest size embedded with wordllama")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--hybrid-1m", action="store_true", help="also time hybrid queries above --real-max")
    ap.add_argument("--out", default=None, help="write all rows as JSON here")
    ap.add_argument("--examples", default=None,
                    help="generated example requests for the unseen-style tools "
                         "(benchmarks/data/unseen_tool_examples.json)")
    ap.add_argument("--examples-per-tool", type=int, default=0,
                    help="also time the hybrid query with this many example vectors per synthetic tool")
    args = ap.parse_args()
    import faiss

    print(f"machine: {platform.machine()} cpus={os.cpu_count()} python {platform.python_version()} "
          f"faiss {faiss.__version__} (omp threads {faiss.omp_get_max_threads()}; single queries use 1)")
    out: dict = {}
    if not args.skip_quality:
        out["quality"] = await quality([None] + args.embedder)
    if not args.skip_unseen:
        out["unseen"] = await unseen([None] + (args.embedder or ["minilm"]), args.examples)
    if not args.skip_scale:
        out["scale"] = await scale([int(s) for s in args.sizes.split(",")], args.real_max, args.queries,
                                   args.hybrid_1m, args.examples_per_tool)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
