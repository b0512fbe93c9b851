"""`raygent eval trajectories FILE` and `raygent eval export-sessions --out FILE`.

`add_parser(eval_sub)` registers both on the subparsers of the `raygent eval` parser; each sets
`handler=` to an async function of the parsed arguments returning the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_parser(eval_sub: Any) -> None:
    t = eval_sub.add_parser(
        "trajectories", help="Action EM, Argument F1 and ROUGE-L on MSAgent-Bench-format trajectories",
        description="Score a model's tool-use trajectories against MSAgent-Bench references "
                    "(docs/evaluation.md). The predictions come from the file itself (a "
                    "'predictions' list per record), from --predictions FILE, or from --run.")
    t.add_argument("file", help="reference records, JSONL (or a JSON list) in MSAgent-Bench format")
    source = t.add_mutually_exclusive_group()
    source.add_argument("--predictions", metavar="FILE", default=None,
                        help="predicted records: 'predictions' (assistant turns) or 'conversations' per line, "
                             "matched by id, else by line order")
    source.add_argument("--run", action="store_true",
                        help="produce the predictions with raygent's agent on the embedded model (tools replay "
                             "the references' recorded outputs)")
    t.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N references")
    t.add_argument("--json", action="store_true", help="print one JSON object: the aggregate and per-record results")
    t.add_argument("--per-record", action="store_true", help="also print one line per record (text output)")
    t.add_argument("--save-predictions", metavar="FILE", default=None,
                   help="with --run: write the references with the agent's 'predictions' (rescore without --run)")
    t.add_argument("--model", default=None, help="with --run: GGUF path or embedded model name")
    t.add_argument("--format", default="hermes", help="with --run: tool-call format (hermes, msagent, react)")
    t.add_argument("--lora", default="auto", help="with --run: LoRA adapter (as for `raygent run`)")
    t.add_argument("--max-steps", type=int, default=6)
    t.add_argument("--max-tokens", type=int, default=384)
    t.add_argument("--n-ctx", type=int, default=4096)
    t.set_defaults(handler=run)

    e = eval_sub.add_parser(
        "export-sessions", help="write stored chat sessions as MSAgent-Bench JSONL (trajectories for training)",
        description="Convert sessions of the memory store (default: the SQLite file under RAYGENT_HOME) into "
                    "MSAgent-Bench records, one per session, id = session id.")
    e.add_argument("--session", action="append", dest="sessions", metavar="ID", default=None,
                   help="a session to export (repeatable; default: the most recently written ones)")
    e.add_argument("--out", required=True, metavar="FILE", help="the JSONL file to write")
    e.add_argument("--state", default=None, metavar="URL",
                   help="memory store: sqlite:///path, a SQLite path, or redis://... (default: RAYGENT_HOME's)")
    e.add_argument("--limit", type=int, default=1000, metavar="N", help="without --session: at most N sessions")
    e.add_argument("--system", default=None, help="system text of every record (default: the session's own, "
                                                  "else the agent's default)")
    e.add_argument("--tools", choices=["called", "none"], default="called",
                   help="list the tools each session called in its system turn (default), or none")
    e.add_argument("--keep-repairs", action="store_true",
                   help="keep the agent's 'your tool call could not be read' follow-ups")
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=run_export)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _build_llm(args: argparse.Namespace) -> Any:
    """The embedded chat model for --run (a function, so tests can replace it)."""
    from raygent.llm_pool.embedded import resolve_model_path
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    resolve_model_path(args.model)  # fail fast with the message that says what to install
    return LlamaCppChatModel(args.model, n_ctx=args.n_ctx, format=args.format, lora=args.lora)


async def run(args: argparse.Namespace) -> int:
    """`raygent eval trajectories`: score, print, return 0 (1 on unreadable input)."""
    from raygent.evaluation.msagent import MSAgentFormatError, read_msagent, read_predictions, write_msagent
    from raygent.evaluation.trajectories import pair_predictions, predict_with_agent, report_json, score_pairs

    start = time.perf_counter()
    if args.save_predictions and not args.run:
        print("raygent: note: --save-predictions only applies with --run", file=sys.stderr)
    try:
        references = read_msagent(args.file, limit=args.limit)
        if args.run:
            llm = _build_llm(args)

            def progress(done: int, total: int, record: Any) -> None:
                print(f"[{done}/{total}] {record.id or f'line {record.line}'} "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

            predicted = await predict_with_agent(references, llm, max_steps=args.max_steps,
                                                 params={"max_tokens": args.max_tokens}, progress=progress)
            references = [r.model_copy(update={"predictions": p}) for r, p in zip(references, predicted)]
            if args.save_predictions:
                write_msagent(args.save_predictions, references)
            pairs = pair_predictions(references)
        else:
            predictions = read_predictions(args.predictions) if args.predictions else None
            pairs = pair_predictions(references, predictions, source=args.predictions or args.file)
    except (MSAgentFormatError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"raygent: error: {exc}", file=sys.stderr)
        return 1
    report = score_pairs(pairs)
    if args.json:
        print(report_json(report))
        return 0
    print(f"records            {report.records}" + (f" ({report.missing_predictions} without a prediction)"
                                                      if report.missing_predictions else ""))
    print(f"reference actions  {report.reference_actions} (predicted {report.predicted_actions}, "
          f"{report.extra_actions} beyond the reference, {report.unreadable_predicted_calls} unreadable)")
    print(f"Action EM          {_fmt(report.action_em)}")
    print(f"Argument F1        {_fmt(report.argument_f1)}")
    print(f"Argument EM        {_fmt(report.argument_em)}")
    print(f"ROUGE-L            {_fmt(report.rouge_l)}  ({report.answers} answers)")
    if args.per_record:
        for r in report.results:
            name = r.id or f"line {r.line}"
            print(f"  {name:30s} actions {r.reference_actions:3d}  EM {_fmt(r.action_em)}  "
                  f"F1 {_fmt(r.argument_f1)}  ROUGE-L {_fmt(r.rouge_l)}")
    return 0


async def run_export(args: argparse.Namespace) -> int:
    """`raygent eval export-sessions`: write the sessions, print what was written."""
    from raygent.evaluation.msagent import export_sessions
    from raygent.memory.store import SessionNotFound

    try:
        summary = await export_sessions(args.out, args.state, args.sessions, system=args.system,
                                        tools="called" if args.tools == "called" else None, limit=args.limit,
                                        keep_repairs=args.keep_repairs)
    except (SessionNotFound, ValueError) as exc:
        print(f"raygent: error: {exc.args[0] if isinstance(exc, SessionNotFound) else exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"wrote {summary['written']} record(s) to {summary['out']}"
              + (f"; skipped {len(summary['skipped'])} session(s) without an assistant reply: "
                 f"{', '.join(summary['skipped'])}" if summary["skipped"] else ""))
    return 0
