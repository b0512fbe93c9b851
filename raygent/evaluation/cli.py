"""`raygent eval bfcl ...` (registered by raygent/cli.py); `raygent eval trajectories` plugs in when present."""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs; a VALUE that reads as JSON (4.0, true, null, [1]) is taken as that."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


async def _bfcl(args: argparse.Namespace) -> int:
    from raygent.evaluation.bfcl import parse_categories, wheel_path
    from raygent.evaluation.runner import evaluate, format_summary

    parse_categories(args.category)  # a clear error before anything loads
    wheel_path()  # BFCLDataMissing names the command that fetches the data
    summary = await evaluate(args.category, limit=args.limit, seed=args.seed, model=args.model,
                             workers=args.workers, out=args.out, progress=not args.no_progress,
                             threads=args.threads, max_calls=args.max_calls,
                             model_options=parse_options(args.set))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(format_summary(summary))
        where = f"; one line per case in {summary['out']}" if summary.get("out") else ""
        print(f"model {summary['model_name'] or summary['model']}, {summary['cases']} cases, "
              f"{summary['workers']} worker(s), {summary['seconds']:.0f} s{where}")
    return 0


def add_commands(sub: Any) -> None:
    """Register `eval` (with `eval bfcl`) on raygent's subparsers."""
    ev = sub.add_parser("eval", help="evaluate models and agents (BFCL function calling, trajectories)")
    eval_sub = ev.add_subparsers(dest="eval_command", required=True)
    b = eval_sub.add_parser("bfcl", help="Berkeley Function Calling Leaderboard (v4) AST accuracy of a chat model",
                            description="Run BFCL v4 single-turn categories through a raygent chat model and check "
                                        "the calls with BFCL's AST rules (docs/evaluation.md). Needs the bfcl-eval "
                                        "wheel's data: pip download bfcl-eval==2026.3.23 --no-deps -d "
                                        "~/.cache/raygent/bfcl")
    b.add_argument("--category", default="simple_python",
                   help="comma-separated: simple_python, multiple, parallel, parallel_multiple, irrelevance, "
                        "live_simple, live_multiple, live_parallel, live_parallel_multiple, live_irrelevance, "
                        "live_relevance, or all (default: simple_python)")
    b.add_argument("--limit", type=int, default=None,
                   help="cases per category: the first N of a shuffle seeded with --seed (default: all)")
    b.add_argument("--seed", type=int, default=0, help="shuffle seed for --limit (default 0)")
    b.add_argument("--model", default=None,
                   help="embedded (default: the embedded 0.5B with its default adapter), embedded-plain (no "
                        "adapter), embedded-raw (the same GGUF used plainly: its own chat template, greedy, no "
                        "grammar, exemplars, biases or adapter), or a model config name (raygent.llm_pool.config; "
                        "MODEL_CONFIG_FILE)")
    b.add_argument("--workers", type=int, default=1,
                   help="spread the cases over N Ray actors, each with its own model (default 1: in-process)")
    b.add_argument("--threads", type=int, default=None,
                   help="llama.cpp threads per worker (default: this machine's CPUs divided among the workers)")
    b.add_argument("--max-calls", type=int, default=None,
                   help="calls the llama.cpp model may make per reply (default: the model's own, 4 for the "
                        "embedded model; 1 caps the parallel categories at 0)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a constructor option of the model, repeatable (e.g. --set call_bias=4 --set max_calls=4)")
    b.add_argument("--out", default=None, help="write one JSON line per case to this file")
    b.add_argument("--json", action="store_true", help="print a JSON summary")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    b.set_defaults(handler=_bfcl)
    try:
        from raygent.evaluation.trajectories_cli import add_parser as add_trajectories
    except ImportError:
        pass
    else:
        add_trajectories(eval_sub)

