"""`raygent retrieval eval ...` and `raygent knowledge add|search|list ...` (registered by raygent/cli.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any


async def _retrieval(args: argparse.Namespace) -> int:
    if args.retrieval_command == "expand":
        from raygent.retrieval.expand import expand_command

        return await expand_command(args.tools, args.out, model=args.model, n=args.n, samples=args.samples)
    from raygent.retrieval.evaluate import eval_command

    options = {"fusion": args.fusion, "min_ratio": args.min_ratio}
    if args.alpha is not None:
        options["alpha"] = args.alpha
    if args.lexical_gate is not None:
        options["lexical_gate"] = args.lexical_gate
    if args.summary_weight is not None:
        options["summary_weight"] = args.summary_weight
    if args.examples:
        options["examples"] = args.examples
    if args.example_weight is not None:
        options["extra_weight"] = args.example_weight
    if args.example_pooling:
        options["example_pooling"] = args.example_pooling
    return await eval_command(args.tools, args.queries, method=args.method, k=args.k, embedder=args.embedder,
                              json_out=args.json, decompose=args.decompose, **options)


async def _knowledge(args: argparse.Namespace) -> int:
    from raygent.retrieval.knowledge import KnowledgeRetriever

    kb = KnowledgeRetriever(args.kb, embedder=args.embedder)
    if args.knowledge_command == "add":
        report = await kb.add_path(args.path, progress=True)
        print(json.dumps(report, ensure_ascii=False) if args.json else
              f"added {report['files']} file(s), {report['chunks']} chunk(s) to knowledge base "
              f"{report['knowledge_base']!r} ({report['total_chunks']} chunks in total)")
        return 0 if report["files"] else 1
    if args.knowledge_command == "search":
        chunks = await kb.search(args.query, args.k)
        if args.json:
            print(json.dumps([c.model_dump() for c in chunks], ensure_ascii=False))
        else:
            for c in chunks:
                print(f"[{c.citation}] ({c.score:.3f})\n{c.text}\n")
        return 0
    sources = await kb.list_sources()
    print(json.dumps(sources, ensure_ascii=False) if args.json else "\n".join(
        f"{s['chunks']:6d}  {s['source']}" for s in sources))
    return 0


def add_commands(sub: Any) -> None:
    """Register the `retrieval` and `knowledge` subcommands on raygent's subparsers."""
    r = sub.add_parser("retrieval", help="tool-retrieval evaluation")
    rsub = r.add_subparsers(dest="retrieval_command", required=True)
    ev = rsub.add_parser("eval", help="recall@1, recall@5 and MRR of a retrieval method on JSONL files")
    ev.add_argument("--tools", required=True, help='JSONL, one {"name", "description", "parameters"} per line')
    ev.add_argument("--queries", required=True, help='JSONL, one {"query", "gold": [tool names]} per line')
    ev.add_argument("--method", default="hybrid", choices=["bm25", "tfidf", "dense", "hybrid"])
    ev.add_argument("--k", type=int, default=5, help="also report recall@k (recall@1 and @5 always)")
    ev.add_argument("--embedder", default=None,
                    help="wordllama (default), minilm, st:FOLDER, hf:FOLDER, dashscope:MODEL")
    ev.add_argument("--fusion", default="normalized", choices=["normalized", "weighted", "rrf"],
                    help="hybrid fusion (docs/retrieval.md)")
    ev.add_argument("--alpha", type=float, default=None, help="dense weight of weighted/normalized fusion (0.6)")
    ev.add_argument("--lexical-gate", type=float, default=None,
                    help="lexical weight scaled by min(1, query tokens in the top lexical match / this) (3; 0: off)")
    ev.add_argument("--summary-weight", type=float, default=None,
                    help="weight of the name + description text in a tool's dense vector; default by embedder: "
                         "0 (full text only) for wordllama, 1.0 for the others")
    ev.add_argument("--decompose", action=argparse.BooleanOptionalAction, default=True,
                    help="also search each clause of multi-intent queries (default on, as in ToolRetriever)")
    ev.add_argument("--min-ratio", type=float, default=0.8,
                    help="a clause's best hit is merged in when its top cosine >= this share of the query's")
    ev.add_argument("--examples", default=None,
                    help="generated example requests (JSON from `raygent retrieval expand`) as extra tool vectors")
    ev.add_argument("--example-weight", type=float, default=None,
                    help="how much a tool's example vector counts against its own vector "
                         "(default: 3 for MiniLM, 1.5 for wordllama with the centroid; 0.5 per request)")
    ev.add_argument("--example-pooling", choices=["centroid", "each"], default=None,
                    help="one extra vector per tool, its requests' centroid (default), or one per request")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ex = rsub.add_parser("expand", help="have a chat model write example requests for each tool, once (cached)")
    ex.add_argument("--tools", required=True, help='JSONL, one {"name", "description", "parameters"} per line')
    ex.add_argument("--out", required=True, help="JSON cache: tools already in it are skipped, new ones added")
    ex.add_argument("--model", default=None, help="GGUF path or embedded model name (default: the embedded 0.5B)")
    ex.add_argument("--n", type=int, default=6, help="requests per tool and reply")
    ex.add_argument("--samples", type=int, default=1,
                    help="replies per tool, merged: the first greedy, the others sampled (seed = reply number)")
    r.set_defaults(handler=_retrieval)

    k = sub.add_parser("knowledge", help="knowledge bases for question answering with citations")
    ksub = k.add_subparsers(dest="knowledge_command", required=True)
    add = ksub.add_parser("add", help="ingest a file or folder (txt, md, html, pdf)")
    add.add_argument("path")
    search = ksub.add_parser("search", help="the chunks that best match a query, with citations")
    search.add_argument("query")
    search.add_argument("--k", type=int, default=4)
    lst = ksub.add_parser("list", help="ingested files and their chunk counts")
    for p in (add, search, lst):
        p.add_argument("--kb", default="default", help="knowledge base name or folder (under RAYGENT_HOME)")
        p.add_argument("--embedder", default=None, help="embedder spec (must match the one the base was built with)")
        p.add_argument("--json", action="store_true")
    k.set_defaults(handler=_knowledge)


__all__ = ["add_commands"]
