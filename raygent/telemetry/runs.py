"""The agent loop's hooks: one `RunTrace` per run (the run span, a span per step, per model call and
per batch of tool calls) and the model metrics of calls to models that do not record their own.

Everything here is built to cost about a microsecond per hook and to never raise into the run.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from raygent.telemetry import metrics as m
from raygent.telemetry import tracing as t


def records_own_metrics(llm: Any) -> bool:
    """True for models whose serving side records the model metrics (a pool: its replicas do)."""
    return getattr(type(llm), "records_model_metrics", False) is True


class ModelCall:
    """One model request as seen by its caller: span, time to first token, tokens, queue depth."""

    __slots__ = ("span", "started", "first", "model", "metered", "previous")

    def __init__(self, model: str, metered: bool, span: Any):
        self.model = model
        self.metered = metered
        self.span = span
        self.previous = t.activate(span)
        self.first = 0.0
        if self.metered:
            m.MODEL_QUEUE.labels(self.model).inc()
        self.started = time.perf_counter()

    def token(self) -> None:
        """The first delta reached the caller (call on every delta; only the first counts)."""
        if not self.first:
            self.first = time.perf_counter()

    def end(self, final: Any = None, error: BaseException | None = None) -> None:
        now = time.perf_counter()
        t.restore(self.previous)
        usage = getattr(final, "usage", None)
        if usage is not None:
            self.span.set("tokens.completion", usage.completion_tokens)
            self.span.set("tokens.prompt", usage.prompt_tokens)
        if final is not None and final.tool_calls:
            self.span.set("tool_calls", [c.name for c in final.tool_calls])
        if error is not None:
            self.span.fail(f"{type(error).__name__}: {error}")
        self.span.end()
        if not self.metered:
            return
        model = self.model
        m.MODEL_QUEUE.labels(model).dec()
        if error is not None:
            cancelled = isinstance(error, (GeneratorExit, asyncio.CancelledError))
            m.MODEL_REQUESTS.labels(model, "cancelled" if cancelled else "error").inc()
            return
        m.MODEL_REQUESTS.labels(model, "ok").inc()
        m.MODEL_SECONDS.labels(model).observe(now - self.started)
        m.MODEL_TTFT.labels(model).observe((self.first or now) - self.started)
        if usage is not None:
            if usage.completion_tokens:
                m.MODEL_TOKENS.labels(model).inc(usage.completion_tokens)
            if usage.prompt_tokens:
                m.MODEL_PROMPT_TOKENS.labels(model).inc(usage.prompt_tokens)


class RunTrace:
    """The spans of one agent run. `step(n)` opens step n (closing the last), `model_call()` /
    `tools(calls)` time the step's parts, `finish(result)` closes the run with its outcome."""

    __slots__ = ("run_id", "run", "step", "model", "meter_model", "previous", "closed")

    def __init__(self, run_id: str, agent: Any):
        self.run_id = run_id
        self.run = t.start_span("agent.run", {"agent.max_steps": agent.max_steps}, run_id=run_id)
        self.previous = t.activate(self.run)
        self.step = self.run
        self.model = ""
        self.meter_model = not records_own_metrics(agent.llm)
        self.closed = False

    def set_model(self, model: str) -> None:
        self.model = model or "unknown"
        self.run.set("model", self.model)

    def begin_step(self, n: int) -> None:
        if self.step is not self.run:
            self.step.end()
        self.step = t.start_span("agent.step", {"step": n}, parent=self.run)
        t.activate(self.step)

    def model_call(self, streaming: bool) -> ModelCall:
        span = t.start_span("model.stream" if streaming else "model.chat", {"model": self.model}, parent=self.step)
        return ModelCall(self.model, self.meter_model, span)

    def tools(self, calls: list[Any]) -> Any:
        if not calls:
            return t.NO_SPAN
        span = t.start_span("tool.call_many", {"tools": [c.name for c in calls]}, parent=self.step)
        t.activate(span)
        return span

    def tools_done(self, span: Any) -> None:
        span.end()
        t.activate(self.step)

    def finish(self, result: Any) -> None:
        if result is None:
            return
        try:
            result.run_id = self.run_id
        except Exception:
            pass
        run = self.run
        run.set("steps", result.steps)
        run.set("stop_reason", result.stop_reason)
        run.set("tool_calls", len(result.tool_calls))
        if result.error:
            run.fail(result.error)

    def close(self, error: BaseException | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.step is not self.run:
            self.step.end()
        if error is not None:
            self.run.fail(f"{type(error).__name__}: {error}")
        t.restore(self.previous)
        self.run.end()


class _NullCall:
    __slots__ = ()

    def token(self) -> None:
        pass

    def end(self, final: Any = None, error: BaseException | None = None) -> None:
        pass


class _NullTrace:
    """What a run gets when its telemetry could not be set up: the run goes on untraced."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def set_model(self, model: str) -> None:
        pass

    def begin_step(self, n: int) -> None:
        pass

    def model_call(self, streaming: bool) -> Any:
        return _NullCall()

    def tools(self, calls: list[Any]) -> Any:
        return t.NO_SPAN

    def tools_done(self, span: Any) -> None:
        pass

    def finish(self, result: Any) -> None:
        if result is not None:
            result.run_id = self.run_id

    def close(self, error: BaseException | None = None) -> None:
        pass


def run_trace(run_id: str, agent: Any) -> Any:
    """A RunTrace for this run; a no-op one if telemetry fails to start (it never stops a run)."""
    try:
        return RunTrace(run_id, agent)
    except Exception as exc:  # pragma: no cover - a broken exporter setup, an odd agent
        import logging

        logging.getLogger(__name__).warning("raygent telemetry off for run %s: %s", run_id, exc)
        return _NullTrace(run_id)


# -- tools: recorded where a tool runs (ToolRegistry._execute: in process, or in its hub actor) ----------
def tool_span(name: str) -> Any:
    """A span per tool call, under the current one (the agent's `tool.call_many`, or the hub actor's
    call); none when nothing is being traced here."""
    current = t._CURRENT.get()
    if current is None or current.name == "tool.call_many":  # in the agent's process: its span says it all
        return t.NO_SPAN
    return t.start_span("tool.execute", {"tool": name})


def _error_kind(error: str) -> str:
    if error.startswith("unknown tool"):
        return "unknown_tool"
    if error.startswith(("invalid arguments", "arguments for")):
        return "invalid_arguments"
    if "timed out" in error:
        return "timeout"
    if "invalid artifact" in error:
        return "bad_artifact"
    return "failed"


def tool_done(known: bool, row: dict[str, Any], span: Any) -> None:
    """Count the call, its error (by kind) and its latency; close its span. Names the model made up
    are counted as `_unknown` (bounded labels)."""
    try:
        label = row["name"] if known else "_unknown"
        m.TOOL_CALLS.labels(label).inc()
        m.TOOL_LATENCY.labels(label).observe(row["duration_s"])
        error = row["error"]
        if error:
            kind = _error_kind(error)
            m.TOOL_ERRORS.labels(label, kind).inc()
            span.fail(error)
            span.set("error.kind", kind)
        span.end()
    except Exception:  # telemetry never breaks a tool call
        pass


def served_call(model: str, context: dict[str, str] | None, streaming: bool) -> Any:
    """A model request in a pool replica (ModelServer): its metrics, and a span under the caller's
    when the request carried one."""
    try:
        span = t.start_remote(context, "model.generate", {"model": model, "streaming": streaming,
                                                          "process.pid": os.getpid()})
        return ModelCall(model, True, span)
    except Exception:
        return _NullCall()
