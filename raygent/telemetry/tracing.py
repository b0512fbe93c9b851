"""Traces of agent runs: a span tree per run (run -> step -> model call / tool call -> the actor call
that served it), exported with OpenTelemetry.

Where spans go (decided once per process, `configure()` to change it):
- OTLP/HTTP (`opentelemetry-exporter-otlp-proto-http`) when `RAYGENT_OTLP_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set;
- else JSONL under `RAYGENT_TRACE_DIR` (default `RAYGENT_HOME/traces`), a line per span with its run id
  in each process's segment file, which `raygent trace RUN_ID` gathers and prints as a tree;
- `RAYGENT_TRACING=off|jsonl|otlp|both|auto` (default auto) overrides the choice.

Cost: an OpenTelemetry SDK span costs 12-17 µs to start and end (measured here), a sixth of an
in-process agent step. So raygent's spans are recorded as small slotted objects (~1 µs: ids from
`random.getrandbits`, `time.time_ns`, a ContextVar), and a daemon thread turns them into OpenTelemetry
`ReadableSpan`s and hands them to the exporter in batches (about every 0.5 s, and at exit).
The ids are W3C ids; the process's TracerProvider (set up once, as the global one when none is set)
exports with the same exporter, so spans of instrumented libraries join the same trace: a run started
under a current OpenTelemetry span becomes its child.

Across processes: `carrier()` is the current span as a W3C `traceparent` plus the run id; the
runtime's actor proxies send it with each call and the actor host runs the call in `remote_span(...)`
(raygent.runtime), the pool does the same through its Serve handles (raygent.llm_pool.pool). Each
process exports its own spans to its own segment; `read_trace` gathers a run from all of them.

Without OpenTelemetry (`pip install 'raygent[telemetry]'`), every function here is a cheap no-op.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'raygent[telemetry]'"
EXPORT_INTERVAL_S = 0.5


def new_run_id() -> str:
    """A run id like the API's (`run_` + 16 hex digits), from `random` (a run id is a name, not a
    secret: the API checks who owns a run)."""
    return f"run_{random.getrandbits(64):016x}"
_RUN_FILE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class Span:
    """One timed operation. `end()` records it; `set(key, value)` adds an attribute."""

    __slots__ = ("name", "trace_id", "span_id", "parent_id", "start_ns", "end_ns", "attrs", "error", "run_id")

    def __init__(self, name: str, trace_id: int, parent_id: int, run_id: str | None, attrs: dict[str, Any] | None):
        self.name = name
        self.trace_id = trace_id
        self.span_id = random.getrandbits(64) or 1
        self.parent_id = parent_id
        self.run_id = run_id
        self.attrs = attrs if attrs is not None else {}
        self.error: str | None = None
        self.end_ns = 0
        self.start_ns = time.time_ns()

    def set(self, key: str, value: Any) -> None:
        self.attrs[key] = value

    def fail(self, error: Any) -> None:
        self.error = str(error)[:500]

    def end(self) -> None:
        if self.end_ns:
            return
        self.end_ns = time.time_ns()
        _STATE.buffer.append(self)  # the export thread takes it within EXPORT_INTERVAL_S


class _NoSpan:
    __slots__ = ()
    name = ""
    run_id = None

    def set(self, key: str, value: Any) -> None:
        pass

    def fail(self, error: Any) -> None:
        pass

    def end(self) -> None:
        pass


NO_SPAN: Any = _NoSpan()
_CURRENT: ContextVar[Any] = ContextVar("raygent_span", default=None)


class _State:
    def __init__(self) -> None:
        self.enabled: bool | None = None  # decided on first use
        self.mode = "off"
        self.directory: Path | None = None
        self.endpoint: str | None = None
        self.buffer: list[Span] = []
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.exporters: list[Any] = []
        self.resource: Any = None


_STATE = _State()


def otel_available() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None and \
        importlib.util.find_spec("opentelemetry.sdk") is not None


def trace_dir() -> Path:
    """Where JSONL traces go: RAYGENT_TRACE_DIR, else RAYGENT_HOME/traces."""
    if os.environ.get("RAYGENT_TRACE_DIR"):
        return Path(os.environ["RAYGENT_TRACE_DIR"])
    from raygent.llm_pool.embedded import raygent_home

    return raygent_home() / "traces"


def _otlp_endpoint() -> str | None:
    own = os.environ.get("RAYGENT_OTLP_ENDPOINT")
    if own:
        return own.rstrip("/") + "/v1/traces" if not own.rstrip("/").endswith("/v1/traces") else own
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ""  # the exporter reads OpenTelemetry's own variables
    return None


def configure(mode: str | None = None, *, endpoint: str | None = None, directory: str | Path | None = None) -> str:
    """(Re)decide where this process's spans go; returns the mode in effect ('off', 'jsonl', 'otlp',
    'both'). Arguments left out come from the environment (see the module docstring)."""
    flush()
    with _STATE.lock:
        for exporter in _STATE.exporters:
            with contextlib.suppress(Exception):
                exporter.shutdown()
        _STATE.exporters = []
        wanted = (mode or os.environ.get("RAYGENT_TRACING") or "auto").lower()
        found = endpoint if endpoint is not None else _otlp_endpoint()
        if wanted in ("0", "off", "false", "no") or not otel_available():
            chosen = "off"
        elif wanted == "auto":
            chosen = "otlp" if found is not None else "jsonl"
        else:
            chosen = wanted if wanted in ("jsonl", "otlp", "both") else "jsonl"
        _STATE.directory = Path(directory) if directory is not None else None
        _STATE.endpoint = found
        try:
            if chosen in ("jsonl", "both"):
                _STATE.exporters.append(JsonlSpanExporter(_STATE.directory))
            if chosen in ("otlp", "both"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                _STATE.exporters.append(OTLPSpanExporter(endpoint=found or None))
        except Exception as exc:  # e.g. the OTLP exporter is not installed: JSONL instead
            log.warning("raygent tracing: %s; writing JSONL traces instead (%s)", exc, INSTALL_HINT)
            chosen = "jsonl"
            _STATE.exporters = [JsonlSpanExporter(_STATE.directory)]
        _STATE.mode = chosen
        _STATE.enabled = chosen != "off"
        if _STATE.enabled:
            _setup_provider()
            _ensure_thread()
        return chosen


def enabled() -> bool:
    if _STATE.enabled is None:
        configure()
    return bool(_STATE.enabled)


def _setup_provider() -> None:
    """One TracerProvider per process (the global one unless the program set its own), exporting with
    the same exporters, so OpenTelemetry-instrumented code lands in the same traces."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        _STATE.resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "raygent"),
                                           "process.pid": os.getpid()})
        current = trace.get_tracer_provider()
        if type(current).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
            provider = TracerProvider(resource=_STATE.resource)
            for exporter in _STATE.exporters:
                provider.add_span_processor(BatchSpanProcessor(_Shared(exporter)))
            trace.set_tracer_provider(provider)
    except Exception as exc:
        log.debug("raygent tracing: no TracerProvider: %s", exc)


class _Shared:
    """An exporter used both by the provider's processor and by raygent's thread (shut down once)."""

    def __init__(self, exporter: Any):
        self.exporter = exporter

    def export(self, spans: Any) -> Any:
        return self.exporter.export(spans)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# -- the hot path -----------------------------------------------------------------------------------
def start_span(name: str, attrs: dict[str, Any] | None = None, *, parent: Any = None,
               run_id: str | None = None) -> Any:
    """A span under `parent` (default: the current span); a new trace when there is none."""
    if not _STATE.enabled:
        if _STATE.enabled is False or not enabled():
            return NO_SPAN
    if parent is None:
        parent = _CURRENT.get()
    if parent is not None and parent is not NO_SPAN:
        return Span(name, parent.trace_id, parent.span_id, run_id or parent.run_id, attrs)
    trace_id, parent_id = _foreign_parent()
    return Span(name, trace_id or (random.getrandbits(128) or 1), parent_id, run_id, attrs)


def _foreign_parent() -> tuple[int, int]:
    """The current OpenTelemetry span of instrumented code, if any (a run started under it joins it)."""
    import sys

    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return 0, 0
    try:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return ctx.trace_id, ctx.span_id
    except Exception:
        pass
    return 0, 0


def current() -> Any:
    return _CURRENT.get()


def activate(span: Any) -> Any:
    """Make `span` current; returns the one to restore with `restore` (a set, not a token reset: the
    agent loop is an async generator whose consumer may switch contexts between steps)."""
    previous = _CURRENT.get()
    if span is not NO_SPAN:
        _CURRENT.set(span)
    return previous


def restore(previous: Any) -> None:
    _CURRENT.set(previous)


@contextlib.contextmanager
def _current(s: Any) -> Iterator[Any]:
    """Make `s` the current span for the block; it fails with the block's exception and ends after."""
    previous = activate(s)
    try:
        yield s
    except BaseException as exc:
        s.fail(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        restore(previous)
        s.end()


def span(name: str, attrs: dict[str, Any] | None = None, **kw: Any) -> contextlib.AbstractContextManager[Any]:
    return _current(start_span(name, attrs, **kw))


def carrier() -> dict[str, str] | None:
    """The current span for another process: {'traceparent': W3C, 'raygent_run': run id}; None when
    no span is current (nothing to propagate)."""
    s = _CURRENT.get()
    if s is None or s is NO_SPAN:
        return None
    out = {"traceparent": f"00-{s.trace_id:032x}-{s.span_id:016x}-01"}
    if s.run_id:
        out["raygent_run"] = s.run_id
    return out


def parse_traceparent(value: str) -> tuple[int, int] | None:
    parts = value.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        return int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


def start_remote(context: dict[str, str] | None, name: str, attrs: dict[str, Any] | None = None) -> Any:
    """A span whose parent is in another process (`carrier()` there); NO_SPAN without one."""
    if not context or not enabled():
        return NO_SPAN
    ids = parse_traceparent(context.get("traceparent", ""))
    if ids is None:
        return NO_SPAN
    return Span(name, ids[0], ids[1], context.get("raygent_run"), attrs)


def remote_span(context: dict[str, str] | None, name: str,
                attrs: dict[str, Any] | None = None) -> contextlib.AbstractContextManager[Any]:
    """Run a call that came from another process under its caller's span (a child span here)."""
    s = start_remote(context, name, attrs)
    if s is NO_SPAN:
        return contextlib.nullcontext(NO_SPAN)
    s.attrs["process.pid"] = os.getpid()
    return _current(s)


# -- export -----------------------------------------------------------------------------------------
def _ensure_thread() -> None:
    if _STATE.thread is not None and _STATE.thread.is_alive() and _STATE.pid == os.getpid():
        return
    _STATE.pid = os.getpid()
    _STATE.thread = threading.Thread(target=_loop, name="raygent-traces", daemon=True)
    _STATE.thread.start()


def _loop() -> None:
    while True:
        _STATE.wake.wait(EXPORT_INTERVAL_S)
        _STATE.wake.clear()
        try:
            flush()
        except Exception as exc:
            log.debug("raygent trace export failed: %s", exc)


def flush() -> None:
    """Export the spans ended so far (the thread does it about every 0.5 s; tests and exits call it)."""
    if not _STATE.buffer:
        if _STATE.enabled:
            _ensure_thread()
        return
    with _STATE.lock:
        spans, _STATE.buffer = _STATE.buffer, []
        exporters = list(_STATE.exporters)
        if _STATE.enabled:
            _ensure_thread()
    if not spans or not exporters:
        return
    readable: list[Any] | None = None
    for exporter in exporters:
        try:
            if isinstance(exporter, JsonlSpanExporter):
                exporter.write(spans)  # straight from raygent's spans: a third of the cost
                continue
            if readable is None:
                readable = [_readable(s) for s in spans]
            exporter.export(readable)
        except Exception as exc:  # said once per exporter (the thread retries every 0.5 s with new spans)
            if id(exporter) not in _WARNED:
                _WARNED.add(id(exporter))
                log.warning("raygent trace export to %s failed: %s", type(exporter).__name__, exc)


_WARNED: set[int] = set()
atexit.register(flush)


def _readable(s: Span) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    flags = TraceFlags(TraceFlags.SAMPLED)
    attrs = {k: _attr(v) for k, v in s.attrs.items()}
    if s.run_id:
        attrs["raygent.run_id"] = s.run_id
    status = Status(StatusCode.ERROR, s.error) if s.error else Status(StatusCode.UNSET)
    return ReadableSpan(
        name=s.name,
        context=SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=flags),
        parent=SpanContext(s.trace_id, s.parent_id, is_remote=True, trace_flags=flags) if s.parent_id else None,
        resource=_STATE.resource, attributes=attrs, status=status, start_time=s.start_ns, end_time=s.end_ns,
        instrumentation_scope=InstrumentationScope("raygent"))


def _attr(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return str(value)


_PLAIN = re.compile(r'^[^"\\\x00-\x1f]*$')


def _attrs_json(attrs: dict[str, Any]) -> str:
    """json.dumps for the usual attributes (short plain strings, ints, lists of names), by hand: a
    third of json.dumps's cost; anything else goes through json.dumps."""
    parts = []
    for k, v in attrs.items():
        t = type(v)
        if t is int:
            parts.append(f'"{k}": {v}')
        elif t is str and _PLAIN.match(v):
            parts.append(f'"{k}": "{v}"')
        elif t is list and all(type(x) is str and _PLAIN.match(x) for x in v):
            parts.append(f'"{k}": [' + ", ".join(f'"{x}"' for x in v) + "]")
        else:
            return json.dumps(attrs, ensure_ascii=False, default=str)
    return "{" + ", ".join(parts) + "}"


class JsonlSpanExporter:
    """An OpenTelemetry SpanExporter writing one JSON line per span (with its `run_id`) to this
    process's segment file `<dir>/spans-<pid>-<start>.jsonl`, appended with one write per batch.

    One open file per process, not one file per run: creating a file per run cost ~140 µs of CPU on
    the benchmark VM (a third of an in-process agent step). `read_trace(run_id)` finds a run's lines
    in the segments (a byte search, then JSON for the matching lines only). A segment is closed at
    RAYGENT_TRACE_SEGMENT_MB (default 16); the folder keeps its newest RAYGENT_TRACE_KEEP files
    (default 64)."""

    def __init__(self, directory: str | Path | None = None):
        self._directory = Path(directory) if directory is not None else None
        self._fd = -1
        self._fd_key: tuple[str, int] = ("", 0)
        self._size = 0
        self._limit = int(float(os.environ.get("RAYGENT_TRACE_SEGMENT_MB", "16")) * 2**20)
        self._lock = threading.Lock()  # the export thread and a caller's flush() may write at once

    @property
    def directory(self) -> Path:
        return self._directory if self._directory is not None else trace_dir()

    def write(self, spans: list[Span]) -> None:
        """raygent's own spans, formatted by hand (json.dumps only where a value needs it)."""
        pid = os.getpid()
        dumps = json.dumps
        safe = _RUN_FILE.match
        runs: dict[Any, str] = {}
        lines = []
        for s in spans:
            run = s.run_id
            run_json = runs.get(run)
            if run_json is None:
                run_json = runs[run] = f'"{run}"' if run and safe(run) else dumps(run)
            attrs = _attrs_json(s.attrs) if s.attrs else "{}"
            parent = f'"{s.parent_id:016x}"' if s.parent_id else "null"
            name = f'"{s.name}"' if safe(s.name) else dumps(s.name)
            status = '"error","error":' + dumps(s.error) if s.error else '"ok","error":null'
            lines.append(
                f'{{"run_id":{run_json},"trace_id":"{s.trace_id:032x}","span_id":"{s.span_id:016x}",'
                f'"parent_span_id":{parent},"name":{name},"start_ns":{s.start_ns},"end_ns":{s.end_ns},'
                f'"duration_ms":{(s.end_ns - s.start_ns) / 1e6:.3f},"status":{status},'
                f'"attributes":{attrs},"pid":{pid}}}')
        self._append(lines)

    def _append(self, lines: list[str]) -> None:
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        folder = str(self.directory)
        with self._lock:
            if self._fd < 0 or self._fd_key != (folder, os.getpid()) or self._size >= self._limit:
                self._open(folder)
            os.write(self._fd, data)
            self._size += len(data)

    def _open(self, folder: str) -> None:
        self._close()
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"spans-{os.getpid()}-{time.time_ns() // 1000}.jsonl")
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fd_key = (folder, os.getpid())
        self._size = 0
        prune(Path(folder))

    def _close(self) -> None:
        if self._fd >= 0 and self._fd_key[1] == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1

    def export(self, spans: Any) -> Any:
        """The OpenTelemetry SpanExporter interface (spans of instrumented libraries, ReadableSpans)."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = []
        for s in spans:
            ctx = s.get_span_context()
            attrs = dict(s.attributes or {})
            run = attrs.pop("raygent.run_id", None)
            line = {
                "run_id": run, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
                "parent_span_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
                "name": s.name, "start_ns": s.start_time, "end_ns": s.end_time,
                "duration_ms": round(((s.end_time or 0) - (s.start_time or 0)) / 1e6, 3),
                "status": "error" if s.status.status_code.name == "ERROR" else "ok",
                "error": s.status.description, "attributes": attrs, "pid": os.getpid(),
            }
            lines.append(json.dumps(line, ensure_ascii=False, default=str))
        self._append(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def prune(directory: Path, keep: int | None = None) -> int:
    """Delete the oldest trace files beyond `keep` (RAYGENT_TRACE_KEEP, default 64); how many went."""
    keep = keep if keep is not None else int(os.environ.get("RAYGENT_TRACE_KEEP", "64"))
    try:
        with os.scandir(directory) as it:
            entries = [e for e in it if e.name.endswith(".jsonl")]
        if len(entries) <= keep:
            return 0
        files = sorted(entries, key=lambda e: e.stat().st_mtime)
    except OSError:
        return 0
    gone = 0
    for entry in files[:len(files) - keep]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            gone += 1
    return gone


# -- reading JSONL traces (the CLI, tests) -------------------------------------------------------------
def _segments(directory: Path) -> list[Path]:
    try:
        files = [Path(e.path) for e in os.scandir(directory) if e.name.endswith(".jsonl")]
        return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []


def _lines_with(needle: bytes, directory: Path) -> list[dict[str, Any]]:
    out = []
    for file in _segments(directory):
        try:
            data = file.read_bytes()
        except OSError:
            continue
        if needle not in data:
            continue
        for line in data.splitlines():
            if needle in line:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
    return out


def read_trace(run_id: str, directory: str | Path | None = None) -> list[dict[str, Any]]:
    """The spans recorded for `run_id` (JSONL, from every process's segments), in start order; []
    when there are none."""
    if not _RUN_FILE.match(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    folder = Path(directory) if directory is not None else trace_dir()
    spans = _lines_with(f'"run_id":"{run_id}"'.encode(), folder)
    return sorted(spans, key=lambda s: s.get("start_ns") or 0)


def list_runs(directory: str | Path | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The runs recorded in the folder (their `agent.run` spans), newest first."""
    folder = Path(directory) if directory is not None else trace_dir()
    roots = _lines_with(b'"name":"agent.run"', folder)
    roots.sort(key=lambda s: s.get("start_ns") or 0, reverse=True)
    return roots[:limit]


def span_tree(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) in tree order: children under their parents, siblings by start time; spans whose
    parent is not in the file are roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s.get("parent_span_id")
        children.setdefault(parent if parent in ids else None, []).append(s)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x.get("start_ns") or 0):
            out.append((depth, s))
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return out
