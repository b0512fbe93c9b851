"""Observability: metrics recorded by real agent runs (scripted model, real tools), `/metrics` on the
served API, a run's span tree (in process, across a Ray actor, across Serve replicas), the JSONL
fallback and `raygent trace`, OTLP export to a local receiver, MessageHub depth and redeliveries,
and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from raygent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.schema import Envelope, Message
from raygent.telemetry import metrics, tracing
from raygent.toolhub.builtin import default_tools

ROOT = Path(__file__).resolve().parents[1]


def _tool_reply(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def _value(metric, *labels) -> float:
    return metric.labels(*labels).value


def _count(metric, *labels) -> int:
    return sum(metric.labels(*labels).counts)


@pytest.fixture
def traces(tmp_path, monkeypatch):
    """JSONL traces of this process in a folder of the test's own."""
    monkeypatch.setenv("RAYGENT_TRACE_DIR", str(tmp_path / "traces"))
    tracing.configure("jsonl")
    yield tmp_path / "traces"
    tracing.flush()
    monkeypatch.delenv("RAYGENT_TRACE_DIR")
    tracing.configure()


def trace_cmd(*argv: str) -> int:
    """`raygent trace ...` as the CLI parses it (raygent.cli.main runs its own event loop)."""
    from raygent.cli import build_parser
    from raygent.telemetry import trace_cli

    return trace_cli.main(build_parser().parse_args(["trace", *argv]))


def _wait_for(check, timeout_s: float = 15.0, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


async def test_agent_run_records_model_and_tool_metrics(traces):
    model = ScriptedChatModel([_tool_reply("calculator", expression="6*7"), _tool_reply("no_such_tool"),
                               _tool_reply("calculator", expression="1/"), "42"])
    agent = Agent(llm=model, tools=default_tools())
    name = await model.get_model_name()
    before = {
        "tokens": _value(metrics.MODEL_TOKENS, name), "ttft": _count(metrics.MODEL_TTFT, name),
        "calls": _value(metrics.TOOL_CALLS, "calculator"), "latency": _count(metrics.TOOL_LATENCY, "calculator"),
        "unknown": _value(metrics.TOOL_ERRORS, "_unknown", "unknown_tool"),
        "failed": _value(metrics.TOOL_ERRORS, "calculator", "failed"),
    }
    result = await agent.run("what is 6*7?")
    assert result.answer == "42" and result.run_id and result.run_id.startswith("run_")
    assert _value(metrics.MODEL_TOKENS, name) - before["tokens"] == result.usage.completion_tokens > 0
    assert _count(metrics.MODEL_TTFT, name) - before["ttft"] == 4  # one per model call
    assert _value(metrics.TOOL_CALLS, "calculator") - before["calls"] == 2
    assert _count(metrics.TOOL_LATENCY, "calculator") - before["latency"] == 2
    assert _value(metrics.TOOL_ERRORS, "_unknown", "unknown_tool") - before["unknown"] == 1  # made-up names: one label
    assert _value(metrics.TOOL_ERRORS, "calculator", "failed") - before["failed"] == 1
    assert _value(metrics.MODEL_QUEUE, name) == 0
    text = metrics.local_text()
    for series in ("raygent_model_tokens_generated_total", "raygent_model_time_to_first_token_seconds_bucket",
                   "raygent_tool_calls_total", "raygent_tool_errors_total", "raygent_tool_latency_seconds_bucket",
                   "raygent_model_queue_depth"):
        assert series in text, series


async def test_span_tree_in_jsonl_and_the_trace_cli(traces, capsys):
    agent = Agent(llm=ScriptedChatModel([_tool_reply("calculator", expression="2+3"), "5"]), tools=default_tools())
    result = await agent.run("2+3?", run_id="run_00000000000000aa")
    assert result.run_id == "run_00000000000000aa"
    tracing.flush()
    spans = tracing.read_trace(result.run_id)
    tree = [(depth, s["name"]) for depth, s in tracing.span_tree(spans)]
    assert tree == [(0, "agent.run"), (1, "agent.step"), (2, "model.chat"), (2, "tool.call_many"),
                    (1, "agent.step"), (2, "model.chat")]
    assert list(traces.glob("spans-*.jsonl"))  # this process's segment
    root = spans[0]
    assert root["attributes"]["stop_reason"] == "answer" and root["attributes"]["steps"] == 2
    assert all(s["trace_id"] == root["trace_id"] for s in spans)

    assert trace_cmd(result.run_id) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("agent.run") and " ms" in out[0]
    assert out[2].startswith("    model.chat") and "model=scripted" in out[2]
    assert out[3].startswith("    tool.call_many") and "calculator" in out[3]
    assert trace_cmd("--list") == 0
    assert result.run_id in capsys.readouterr().out
    assert trace_cmd("run_ffffffffffffffff") == 1
    assert "no trace of run_ffffffffffffffff" in capsys.readouterr().err


async def test_without_opentelemetry_runs_go_on_untraced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYGENT_TRACE_DIR", str(tmp_path))
    monkeypatch.setattr(tracing, "otel_available", lambda: False)
    assert tracing.configure() == "off"
    try:
        agent = Agent(llm=ScriptedChatModel([_tool_reply("calculator", expression="1+1"), "2"]),
                      tools=default_tools())
        result = await agent.run("1+1?")
        assert result.answer == "2" and result.run_id
        tracing.flush()
        assert not list(tmp_path.glob("*.jsonl"))
        assert trace_cmd(result.run_id) == 1
        assert "pip install 'raygent[telemetry]'" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        tracing.configure()


class _OtlpReceiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


async def test_otlp_export_reaches_a_local_receiver():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = HTTPServer(("127.0.0.1", 0), _OtlpReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert tracing.configure("otlp", endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces") == "otlp"
        agent = Agent(llm=ScriptedChatModel([_tool_reply("calculator", expression="3*3"), "9"]),
                      tools=default_tools())
        result = await agent.run("3*3?")
        tracing.flush()
    finally:
        tracing.configure()
        server.shutdown()
    assert _OtlpReceiver.bodies and _OtlpReceiver.bodies[0][0] == "/v1/traces"
    names, run_ids = [], set()
    for _, body in _OtlpReceiver.bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    names.append(span.name)
                    run_ids |= {a.value.string_value for a in span.attributes if a.key == "raygent.run_id"}
    assert {"agent.run", "agent.step", "model.chat", "tool.call_many"} <= set(names)
    assert result.run_id in run_ids


async def test_message_hub_depth_and_redeliveries():
    from raygent.actors.hub import MessageHub

    hub = MessageHub(name="telemetry-hub", lease_s=60)
    await hub.register("bob")
    base = _value(metrics.HUB_REDELIVERIES, "telemetry-hub", "bob")
    for i in range(3):
        await hub.send(Envelope(sender="alice", recipient="bob", content=Message.user(f"m{i}")))
    assert _value(metrics.HUB_DEPTH, "telemetry-hub", "bob") == 3
    got = await hub.receive("bob", max_items=2)
    assert _value(metrics.HUB_DEPTH, "telemetry-hub", "bob") == 3  # leased envelopes are still in the mailbox
    await hub.nack("bob", [got[0].id])
    assert _value(metrics.HUB_REDELIVERIES, "telemetry-hub", "bob") - base == 1
    await hub.ack("bob", [e.id for e in got])
    assert _value(metrics.HUB_DEPTH, "telemetry-hub", "bob") == 1
    rest = await hub.receive("bob", max_items=5)
    await hub.ack("bob", [e.id for e in rest])
    assert _value(metrics.HUB_DEPTH, "telemetry-hub", "bob") == 0
    text = metrics.local_text()
    assert 'raygent_hub_mailbox_depth{hub="telemetry-hub",recipient="bob"} 0.0' in text
    assert 'raygent_hub_redeliveries_total{hub="telemetry-hub",recipient="bob"}' in text
    await hub.close()


def test_cardinality_is_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_SERIES", 3)
    metric = metrics.Metric("counter", "raygent_test_bounded", "test", ["tool"])
    try:
        for i in range(10):
            metric.labels(f"t{i}").inc()
        assert {s.values for s in metric.series()} == {("t0",), ("t1",), ("t2",), ("_other",)}
        assert metric.labels("_other").value == 7
    finally:
        metrics.METRICS.pop("raygent_test_bounded", None)


def test_dashboard_queries_only_metrics_the_code_records():
    dashboard = json.loads((ROOT / "cluster" / "grafana" / "raygent-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs and any(v["name"] == "datasource" and v["type"] == "datasource"
                         for v in dashboard["templating"]["list"])
    from raygent.serve.metrics import Metrics

    known = set(metrics.metric_names()) | {m.name for m in Metrics().registry.collect()}
    queried = set()
    for expr in exprs:
        for name in re.findall(r"raygent_[a-z_]+", expr.replace("${prefix}", "")):
            queried.add(re.sub(r"_(total|bucket|sum|count)$", "", name))
    assert queried - known == set(), queried - known
    required = {"raygent_model_tokens_generated", "raygent_model_time_to_first_token_seconds",
                "raygent_model_queue_depth", "raygent_model_requests_rejected", "raygent_tool_calls",
                "raygent_tool_errors", "raygent_tool_latency_seconds", "raygent_hub_mailbox_depth",
                "raygent_hub_redeliveries"}
    assert required <= queried, required - queried


# -- across Ray ---------------------------------------------------------------------------------------
@pytest.mark.ray
async def test_hub_actor_call_is_nested_under_the_step(ray_cluster, traces):
    from raygent import runtime
    from raygent.toolhub.hub import HubClient, ToolHub

    proxy = runtime.deploy(ToolHub, remote=True, name=None, get_if_exists=False,
                           init_kwargs={"domain": "math", "tools": default_tools()},
                           runtime_env={"env_vars": {"RAYGENT_TRACE_DIR": str(traces)}})
    try:
        agent = Agent(llm=ScriptedChatModel([_tool_reply("calculator", expression="7*6"), "42"]),
                      tools=HubClient(proxy))
        result = await agent.run("7*6?")
        assert result.tool_calls[0].result is not None and result.answer == "42"
        tracing.flush()

        def nested():
            spans = tracing.read_trace(result.run_id)
            return spans if any(s["name"] == "tool.execute" for s in spans) else None

        spans = _wait_for(nested)
        assert spans, tracing.read_trace(result.run_id)
        by_id = {s["span_id"]: s for s in spans}
        execute = next(s for s in spans if s["name"] == "tool.execute")
        actor_call = by_id[execute["parent_span_id"]]
        assert actor_call["name"] == "ToolHub.call_wire" and actor_call["pid"] != os.getpid()
        assert by_id[actor_call["parent_span_id"]]["name"] == "tool.call_many"
        assert by_id[by_id[actor_call["parent_span_id"]]["parent_span_id"]]["name"] == "agent.step"
        assert execute["attributes"]["tool"] == "calculator"
    finally:
        runtime.kill(proxy)


_RAY_AGENT_SCRIPT = r'''
import os, socket, sys, time
os.environ["RAY_enable_metrics_collection"] = "1"
os.environ["RAY_metrics_report_interval_ms"] = "1000"
import httpx, ray
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
ray.init(num_cpus=1, _metrics_export_port=port, include_dashboard=False, log_to_driver=False)

@ray.remote
class Tools:
    async def go(self):
        from raygent.toolhub.builtin import default_tools
        from raygent.toolhub.registry import ToolRegistry
        registry = ToolRegistry(default_tools())
        for i in range(3):
            await registry.call("calculator", {"expression": f"{i}*3"})
        await registry.call("calculator", {"expression": "1/"})

tools = Tools.remote()  # kept alive: its metrics reach Ray a second or so after the calls
ray.get(tools.go.remote())
deadline, lines = time.time() + 90, []
while time.time() < deadline:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        text = ""
    lines = [l for l in text.splitlines() if l.startswith(("ray_raygent_tool_calls_total", "ray_raygent_tool_errors_total"))]
    if len(lines) >= 2:
        break
    time.sleep(1)
print("\n".join(lines))
ray.shutdown()
'''


def test_ray_metrics_agent_exports_raygent_metrics(tmp_path):
    """The Ray way: on a Ray started with metrics on, a tool run in an actor shows up on the node's
    metrics agent (what Prometheus scrapes) as ray_raygent_* series, labelled by tool."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAYGENT_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-c", _RAY_AGENT_SCRIPT], capture_output=True, text=True, timeout=240,
                         env=env, cwd=tmp_path)
    calls = [l for l in out.stdout.splitlines() if l.startswith("ray_raygent_tool_calls_total")]
    errors = [l for l in out.stdout.splitlines() if l.startswith("ray_raygent_tool_errors_total")]
    assert calls and errors, out.stdout[-2000:] + out.stderr[-3000:]
    assert any('tool="calculator"' in l and l.endswith(" 4.0") for l in calls), calls
    assert any('tool="calculator"' in l and l.endswith(" 1.0") for l in errors), errors


async def test_a_run_closed_mid_reply_leaves_no_queued_model_request():
    """A caller that stops reading while the model streams (a closed SSE, a cancelled run) ends the
    model call too: the queue depth goes back down (it stayed at 1 in a shared CI process)."""
    agent = Agent(ScriptedChatModel(["A long answer in several words."], model_name="scripted-closed"), system=None)
    events = agent.stream("Say something long.")
    async for event in events:
        if event.type == "answer_delta":
            assert _value(metrics.MODEL_QUEUE, "scripted-closed") == 1
            break
    await events.aclose()
    assert _value(metrics.MODEL_QUEUE, "scripted-closed") == 0
    assert _value(metrics.MODEL_REQUESTS, "scripted-closed", "cancelled") == 1
