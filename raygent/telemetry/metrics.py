"""raygent's metrics: one small facade over two sinks.

- a process-local `prometheus_client` registry (`REGISTRY`), always: the API's `GET /metrics`
  renders it, merged with the other processes' (below);
- Ray's metrics (`ray.util.metrics` Counter / Gauge / Histogram) when the process is connected to
  Ray: Ray's metrics agent on each node exports them for Prometheus (names get Ray's `ray_` prefix).

Recording is cheap on purpose (the agent loop and the tool path call it per step): a bound series is
cached per label tuple, an `inc`/`observe` is one prometheus_client update (~0.3-1 µs). Everything
that costs more (Ray's metric objects, pushing this process's values to the cluster-wide collector)
happens on a daemon thread about once a second (`_Flusher`). Where prometheus_client is missing, every
metric is a no-op. Nothing here raises into the caller: a failing sink is switched off with a warning.

Cardinality is bounded: each metric keeps at most `MAX_SERIES` label tuples; later ones are recorded
under the label value `_other`.

Cross-process view: every process connected to Ray pushes a snapshot of its registry to one named
actor (`raygent-telemetry` in namespace `raygent`, `MetricsCollector`) at most once a second while it
records, and at least every 15 s; `cluster_text()` (used by the API's `/metrics`) returns the sum over
processes. Gauges of a process silent for `STALE_GAUGE_S` are dropped (a dead replica's queue is not
still queued); its counters and histograms stay, so totals never go down.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

MAX_SERIES = 500
OTHER = "_other"
PUSH_INTERVAL_S = 1.0
HEARTBEAT_S = 15.0
STALE_GAUGE_S = 45.0
COLLECTOR_NAME = "raygent-telemetry"
COLLECTOR_NAMESPACE = "raygent"

try:  # the `raygent[telemetry]` / `raygent[serve]` extra
    import prometheus_client as _prom
    from prometheus_client import CollectorRegistry

    REGISTRY: Any = CollectorRegistry(auto_describe=False)
except Exception:  # pragma: no cover - exercised only without the extra
    _prom = None
    REGISTRY = None

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class _NoSeries:
    __slots__ = ()

    def inc(self, value: float = 1.0) -> None:
        pass

    def dec(self, value: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


_NO_SERIES = _NoSeries()
_DIRTY = [False]  # something was recorded since the last push (a list: no `global` in the hot path)


class _Series:
    """One label tuple of a metric: plain Python numbers (no lock: the GIL makes each update one
    step, and a rare lost update under threads is acceptable for monitoring), read by the collector
    for Prometheus and by the flusher for Ray."""

    __slots__ = ("metric", "values", "value", "counts", "sum", "pending")

    def __init__(self, metric: Metric, values: tuple[str, ...]):
        self.metric = metric
        self.values = values
        self.value = 0.0
        self.counts = [0] * (len(metric.buckets) + 1) if metric.buckets else []
        self.sum = 0.0
        self.pending: list[float] = []  # histogram observations not yet given to Ray

    def inc(self, value: float = 1.0) -> None:
        self.value += value
        _DIRTY[0] = True

    def dec(self, value: float = 1.0) -> None:
        self.value -= value
        _DIRTY[0] = True

    def set(self, value: float) -> None:
        self.value = value
        _DIRTY[0] = True

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.metric.buckets, value)] += 1
        self.sum += value
        if _RAY_ON[0] and len(self.pending) < 10_000:
            self.pending.append(value)
        _DIRTY[0] = True


_RAY_ON = [False]


class Metric:
    """A counter, gauge or histogram with fixed label names. `labels(*values)` -> a cached series."""

    def __init__(self, kind: str, name: str, doc: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] | None = None):
        self.kind, self.name, self.doc = kind, name, doc
        self.label_names = tuple(labels)
        self.buckets = tuple(float(b) for b in buckets) if kind == "histogram" and buckets else \
            ((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0) if kind == "histogram" else ())
        self._series: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        METRICS[name] = self

    def labels(self, *values: Any) -> Any:
        series = self._series.get(values)
        if series is not None:
            return series
        return self._new_series(values)

    def _new_series(self, values: tuple[Any, ...]) -> Any:
        if _prom is None or _FLUSHER.disabled:
            return _NO_SERIES
        with self._lock:
            key = tuple(str(v) for v in values)
            distinct = {id(s) for s in self._series.values()}
            if len(distinct) >= MAX_SERIES and key not in self._series:
                key = (OTHER,) * len(self.label_names)
            series = self._series.get(key)
            if series is None:
                series = _Series(self, key)
                self._series[key] = series
            if len(self._series) < 4 * MAX_SERIES:
                self._series[values] = series  # the caller's own tuple finds it next time
        _FLUSHER.start()
        return series

    def series(self) -> list[_Series]:
        seen: dict[int, _Series] = {}
        for s in list(self._series.values()):
            seen[id(s)] = s
        return list(seen.values())

    def family(self) -> Any:
        """This metric as a prometheus_client family (for the registry's collect)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        labels = list(self.label_names)
        if self.kind == "counter":
            fam: Any = CounterMetricFamily(self.name, self.doc, labels=labels)
            for s in self.series():
                fam.add_metric(list(s.values), s.value)
        elif self.kind == "gauge":
            fam = GaugeMetricFamily(self.name, self.doc, labels=labels)
            for s in self.series():
                fam.add_metric(list(s.values), s.value)
        else:
            fam = HistogramMetricFamily(self.name, self.doc, labels=labels)
            for s in self.series():
                counts = list(s.counts)
                running, buckets = 0, []
                for bound, n in zip(list(self.buckets) + [float("inf")], counts):
                    running += n
                    buckets.append(("+Inf" if bound == float("inf") else _prom_float(bound), running))
                fam.add_metric(list(s.values), buckets, s.sum)
        return fam


def _prom_float(value: float) -> str:
    from prometheus_client.utils import floatToGoString

    return floatToGoString(value)


class _Collector:
    """prometheus_client's view of raygent's metrics (registered once in REGISTRY)."""

    def collect(self) -> Any:
        for metric in list(METRICS.values()):
            if metric.series():
                yield metric.family()


METRICS: dict[str, Metric] = {}
if REGISTRY is not None:
    REGISTRY.register(_Collector())

# -- the metrics (names as Prometheus shows them: counters get `_total`) ------------------------------
MODEL_TOKENS = Metric("counter", "raygent_model_tokens_generated", "Completion tokens generated", ["model"])
MODEL_PROMPT_TOKENS = Metric("counter", "raygent_model_prompt_tokens", "Prompt tokens read", ["model"])
MODEL_REQUESTS = Metric("counter", "raygent_model_requests", "Model requests answered", ["model", "status"])
MODEL_SECONDS = Metric("histogram", "raygent_model_request_seconds", "Model request duration (first byte to "
                       "last)", ["model"], LATENCY_BUCKETS)
MODEL_TTFT = Metric("histogram", "raygent_model_time_to_first_token_seconds",
                    "Time to the first token reaching the caller (a whole reply: its arrival)", ["model"],
                    TTFT_BUCKETS)
MODEL_QUEUE = Metric("gauge", "raygent_model_queue_depth", "Model requests waiting or being served", ["model"])
MODEL_REJECTED = Metric("counter", "raygent_model_requests_rejected", "Model requests refused (pool full)",
                        ["model", "reason"])
TOOL_CALLS = Metric("counter", "raygent_tool_calls", "Tool calls run", ["tool"])
TOOL_ERRORS = Metric("counter", "raygent_tool_errors", "Tool calls that ended in an error", ["tool", "kind"])
TOOL_LATENCY = Metric("histogram", "raygent_tool_latency_seconds", "Tool call duration (validation + run)",
                      ["tool"], LATENCY_BUCKETS)
HUB_DEPTH = Metric("gauge", "raygent_hub_mailbox_depth", "Envelopes queued or in handling per mailbox",
                   ["hub", "recipient"])
HUB_REDELIVERIES = Metric("counter", "raygent_hub_redeliveries", "Envelopes delivered again (expired lease, "
                          "nack, hub restart)", ["hub", "recipient"])
HUB_SENT = Metric("counter", "raygent_hub_messages", "Envelopes queued for a recipient", ["hub", "recipient"])


def metric_names() -> list[str]:
    """The names raygent records (without Prometheus's `_total` / `_bucket` suffixes)."""
    return sorted(METRICS)


# -- Ray and the cluster-wide collector -------------------------------------------------------------
def _ray_connected() -> bool:
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        return bool(ray.is_initialized())
    except Exception:
        return False


class _Flusher:
    """Daemon thread: gives Ray's metrics their values and pushes this process's snapshot to the
    collector actor, about once a second while something is recorded."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.ray_metrics: dict[str, Any] = {}
        self.last_counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self.collector: Any = None
        self.last_push = 0.0
        self.pid = os.getpid()
        self.disabled = os.environ.get("RAYGENT_METRICS", "1").lower() in ("0", "off", "false", "no")

    def start(self) -> None:
        if self.disabled or (self.thread is not None and self.thread.is_alive() and self.pid == os.getpid()):
            return
        self.pid = os.getpid()
        _RAY_ON[0] = _ray_connected()
        self.thread = threading.Thread(target=self._loop, name="raygent-metrics", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        quiet = 0.0
        while True:
            time.sleep(PUSH_INTERVAL_S)
            quiet += PUSH_INTERVAL_S
            if not _DIRTY[0] and quiet < HEARTBEAT_S:
                continue
            _DIRTY[0] = False
            quiet = 0.0
            try:
                self.flush()
            except Exception as exc:  # never let the thread die silently with a loop of errors
                log.debug("raygent metrics flush failed: %s", exc)

    def flush(self) -> None:
        if not _ray_connected():
            _RAY_ON[0] = False
            return
        _RAY_ON[0] = True
        self._to_ray()
        self._push()

    def _to_ray(self) -> None:
        from ray.util import metrics as ray_metrics

        for metric in list(METRICS.values()):
            for series in metric.series():
                tags = dict(zip(metric.label_names, series.values))
                target = self._ray_metric(ray_metrics, metric)
                if target is None:
                    continue
                if metric.kind == "counter":
                    value = series.value
                    key = (metric.name, series.values)
                    delta = value - self.last_counts.get(key, 0.0)
                    if delta > 0:
                        target.inc(delta, tags=tags)
                        self.last_counts[key] = value
                elif metric.kind == "gauge":
                    target.set(series.value, tags=tags)
                else:
                    pending, series.pending = series.pending, []
                    for v in pending:
                        target.observe(v, tags=tags)

    def _ray_metric(self, ray_metrics: Any, metric: Metric) -> Any:
        if metric.name in self.ray_metrics:
            return self.ray_metrics[metric.name]
        try:
            if metric.kind == "counter":
                made = ray_metrics.Counter(metric.name, metric.doc, tag_keys=metric.label_names)
            elif metric.kind == "gauge":
                made = ray_metrics.Gauge(metric.name, metric.doc, tag_keys=metric.label_names)
            else:
                made = ray_metrics.Histogram(metric.name, metric.doc, boundaries=list(metric.buckets or ()),
                                             tag_keys=metric.label_names)
        except Exception as exc:
            log.debug("ray metric %s unavailable: %s", metric.name, exc)
            made = None
        self.ray_metrics[metric.name] = made
        return made

    def _push(self) -> None:
        if not _is_ray_worker():  # drivers (scripts, benchmarks) are in Ray's metrics; replicas and actors push
            return
        collector = self._collector()
        if collector is None:
            return
        collector.push.remote(process_key(), snapshot())
        self.last_push = time.time()

    def _collector(self) -> Any:
        if self.collector is None:
            self.collector = collector_actor()
        return self.collector


_FLUSHER = _Flusher()


def flush() -> None:
    """Push this process's values now (tests, and the API before it renders `/metrics`)."""
    try:
        _FLUSHER.flush()
    except Exception as exc:
        log.debug("raygent metrics flush failed: %s", exc)


def _is_ray_worker() -> bool:
    ray = sys.modules.get("ray")
    try:
        return ray is not None and ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:
        return False


def process_key() -> str:
    ray = sys.modules.get("ray")
    node = ""
    try:
        node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else ""
    except Exception:
        pass
    return f"{node}:{os.getpid()}"


def snapshot() -> dict[str, Any]:
    """This process's raygent metrics as plain data: {name: {kind, doc, samples: [[sample, labels, value]]}}."""
    out: dict[str, Any] = {}
    if REGISTRY is None:
        return out
    for family in REGISTRY.collect():
        samples = [[s.name, dict(s.labels), s.value] for s in family.samples if not s.name.endswith("_created")]
        if samples:
            out[family.name] = {"kind": family.type, "doc": family.documentation, "samples": samples}
    return out


class MetricsCollector:
    """The cluster-wide view: the latest snapshot of each process, summed on request."""

    def __init__(self) -> None:
        self.snapshots: dict[str, tuple[float, dict[str, Any]]] = {}

    def push(self, process: str, snap: dict[str, Any]) -> None:
        self.snapshots[process] = (time.time(), snap)
        if len(self.snapshots) > 2000:  # forget the oldest processes
            for key in sorted(self.snapshots, key=lambda k: self.snapshots[k][0])[:500]:
                self.snapshots.pop(key, None)

    def merged(self) -> dict[str, Any]:
        return merge(list(self.snapshots.values()))


def merge(snaps: list[tuple[float, dict[str, Any]]], now: float | None = None) -> dict[str, Any]:
    """Sum snapshots sample by sample (gauges only from processes heard from within STALE_GAUGE_S)."""
    now = time.time() if now is None else now
    out: dict[str, Any] = {}
    for stamp, snap in snaps:
        for name, family in snap.items():
            if family["kind"] == "gauge" and now - stamp > STALE_GAUGE_S:
                continue
            merged = out.setdefault(name, {"kind": family["kind"], "doc": family["doc"], "samples": {}})
            for sample, labels, value in family["samples"]:
                key = (sample, tuple(sorted(labels.items())))
                merged["samples"][key] = merged["samples"].get(key, 0.0) + value
    return out


def render(merged: dict[str, Any]) -> str:
    """Prometheus text format of a `merge` result."""
    lines: list[str] = []
    for name in sorted(merged):
        family = merged[name]
        kind = family["kind"] if family["kind"] in ("counter", "gauge", "histogram", "summary") else "untyped"
        lines.append(f"# HELP {name} {family['doc']}")
        lines.append(f"# TYPE {name} {kind}")
        for (sample, labels), value in family["samples"].items():
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{sample}{{{text}}} {_number(value)}" if text else f"{sample} {_number(value)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _escape(value: str) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def collector_actor(create: bool = True) -> Any:
    """The named collector actor (created on first use; detached, so it outlives its creator)."""
    if not _ray_connected():
        return None
    import ray

    try:
        return ray.get_actor(COLLECTOR_NAME, namespace=COLLECTOR_NAMESPACE)
    except ValueError:
        if not create:
            return None
    actor_cls = ray.remote(num_cpus=0, max_restarts=-1)(MetricsCollector)
    return actor_cls.options(name=COLLECTOR_NAME, namespace=COLLECTOR_NAMESPACE, lifetime="detached",
                             get_if_exists=True).remote()


async def cluster_text() -> str:
    """Every process's raygent metrics summed (this one's as of now), in Prometheus text format;
    this process's alone when it is not connected to Ray."""
    local = (time.time(), snapshot())
    if not _ray_connected():
        return render(merge([local]))
    try:
        actor = collector_actor()
        key = process_key()
        actor.push.remote(key, local[1])
        return render(await actor.merged.remote())
    except Exception as exc:
        log.warning("raygent metrics collector unavailable (%s); this process's metrics only", exc)
        return render(merge([local]))


def local_text() -> str:
    return render(merge([(time.time(), snapshot())]))
