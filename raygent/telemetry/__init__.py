"""Observability: metrics (`raygent.telemetry.metrics`, Prometheus + Ray's metrics agent), traces
(`raygent.telemetry.tracing`, OpenTelemetry: OTLP or JSONL files) and `raygent trace RUN_ID`
(`raygent.telemetry.trace_cli`). See docs/observability.md.

Optional: `pip install 'raygent[telemetry]'`. Without it metrics and traces are no-ops.
"""

from raygent.telemetry.tracing import INSTALL_HINT, configure, flush, read_trace, span_tree, trace_dir

__all__ = ["INSTALL_HINT", "configure", "flush", "read_trace", "span_tree", "trace_dir"]
