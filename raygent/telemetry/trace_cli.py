"""`raygent trace RUN_ID`: a run's span tree with timings; `raygent trace --list`: the recorded runs.

Reads the JSONL traces (`RAYGENT_TRACE_DIR`, else `RAYGENT_HOME/traces`: every process's segment files). Runs exported by OTLP
only live in your tracing backend (search for the attribute `raygent.run_id`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from raygent.telemetry import tracing
from raygent.telemetry.tracing import INSTALL_HINT, read_trace, span_tree, trace_dir

# attributes shown after a span's name (the rest with --attributes)
_SHOWN = ("model", "tool", "tools", "step", "tool_calls", "tokens.completion", "stop_reason", "process.pid")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="print an agent run's span tree with timings (or --list the runs)")
    p.add_argument("run_id", nargs="?", help="the run's id (RunResult.run_id, or the API's run id run_...)")
    p.add_argument("--list", action="store_true", help="list the recorded runs, newest first")
    p.add_argument("--limit", type=int, default=20, help="how many runs --list shows (default 20)")
    p.add_argument("--dir", default=None, help="the trace folder (default: RAYGENT_TRACE_DIR or RAYGENT_HOME/traces)")
    p.add_argument("--json", action="store_true", help="print the spans as JSON lines")
    p.add_argument("--attributes", action="store_true", help="show every attribute of each span")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    return main(args)


def main(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    directory = Path(args.dir) if args.dir else trace_dir()
    if args.list:
        return _list(directory, args.limit, out)
    if not args.run_id:
        print("raygent trace: give a RUN_ID, or --list", file=sys.stderr)
        return 2
    try:
        spans = read_trace(args.run_id, directory)
    except ValueError as exc:
        print(f"raygent trace: {exc}", file=sys.stderr)
        return 2
    if not spans:
        hint = "" if tracing.otel_available() else f" Tracing is off: it needs OpenTelemetry ({INSTALL_HINT})."
        if tracing.otel_available() and (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("RAYGENT_OTLP_ENDPOINT")):
            hint = " Traces are exported by OTLP here (set RAYGENT_TRACING=both to also keep JSONL files)."
        print(f"raygent trace: no trace of {args.run_id} in {directory}.{hint}", file=sys.stderr)
        return 1
    if args.json:
        for s in spans:
            print(json.dumps(s, ensure_ascii=False), file=out)
        return 0
    print(render_tree(spans, all_attributes=args.attributes), file=out)
    return 0


def render_tree(spans: list[dict[str, Any]], *, all_attributes: bool = False) -> str:
    """An indented tree: `name  12.345 ms  +0.120 ms  key=value ...` (the offset from the run's start)."""
    if not spans:
        return ""
    origin = min(s.get("start_ns") or 0 for s in spans)
    rows = []
    for depth, s in span_tree(spans):
        attrs = s.get("attributes") or {}
        keys = sorted(attrs) if all_attributes else [k for k in _SHOWN if k in attrs]
        shown = " ".join(f"{k}={_short(attrs[k])}" for k in keys)
        error = f"  ERROR: {s['error']}" if s.get("status") == "error" and s.get("error") else ""
        offset = ((s.get("start_ns") or origin) - origin) / 1e6
        label = "  " * depth + s.get("name", "?")
        rows.append(f"{label:<40} {s.get('duration_ms', 0):>10.3f} ms  +{offset:.3f} ms  {shown}{error}".rstrip())
    return "\n".join(rows)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _list(directory: Path, limit: int, out: Any) -> int:
    roots = tracing.list_runs(directory, limit) if directory.exists() else []
    if not roots:
        hint = "" if tracing.otel_available() else f" (tracing needs OpenTelemetry: {INSTALL_HINT})"
        print(f"no traces in {directory}{hint}", file=out)
        return 0
    print(f"{'run':<28} {'started (UTC)':<20} {'ms':>10}  summary", file=out)
    for root in roots:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((root.get("start_ns") or 0) / 1e9))
        attrs = root.get("attributes") or {}
        summary = " ".join(f"{k}={attrs[k]}" for k in ("model", "steps", "stop_reason") if k in attrs)
        print(f"{root.get('run_id') or '?':<28} {started:<20} {root.get('duration_ms', 0):>10.1f}  {summary}",
              file=out)
    return 0
