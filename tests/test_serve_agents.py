"""Agents served over Ray Serve HTTP, as a user reaches them: the official OpenAI SDK, plain HTTP
for runs with server-sent events, sessions, artifacts, metrics. The models are rule-based scripted
models (each answers from its tool's result), so everything but the LLM is real: Serve, the agent
deployments, the built-in tools, the SQLite state, HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from _serve_apps import scripted_agents_config

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(ray_cluster, tmp_path_factory):
    from ray import serve

    from raygent.serve.app import ServeConfig, build_app

    state = tmp_path_factory.mktemp("state") / "memory.sqlite"
    config = ServeConfig(**scripted_agents_config(f"sqlite://{state}"))
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="raygent-agents-test", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.delete("raygent-agents-test")
    serve.shutdown()


def _sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None and data != "[DONE]":
            events.append((name, json.loads(data)))
    return events


def test_openai_sdk_talks_to_an_agent(base_url):
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="calc", messages=[{"role": "user", "content": "6*7"}])
    assert '"result": 42' in reply.choices[0].message.content, reply.model_extra
    extension = reply.model_extra["raygent"]
    assert [c["name"] for c in extension["tool_calls"]] == ["calculator"]
    assert extension["tool_calls"][0]["result"]["result"] == 42 and extension["stop_reason"] == "answer"

    text, step_events = "", []
    for chunk in client.chat.completions.create(model="calc", stream=True,
                                                messages=[{"role": "user", "content": "2**10"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if (chunk.model_extra or {}).get("raygent_event"):
            step_events.append(chunk.model_extra["raygent_event"])
    assert '"result": 1024' in text
    kinds = [e["type"] for e in step_events]
    assert "tool_call" in kinds and "tool_result" in kinds
    assert next(e for e in step_events if e["type"] == "tool_call")["tool_call"]["name"] == "calculator"


def test_agents_are_listed_with_their_tools(base_url):
    cards = httpx.get(f"{base_url}/v1/agents").json()["data"]
    calc = next(c for c in cards if c["name"] == "calc")
    assert calc["model"] == "calc-model" and [t["name"] for t in calc["tools"]] == ["calculator"]
    assert calc["description"] == "Does arithmetic with the calculator."
    models = {m["id"]: m["owned_by"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]}
    assert models["calc"] == "raygent-agent" and models["calc-model"] == "raygent"


def test_run_streams_events_then_is_kept(base_url):
    with httpx.stream("POST", f"{base_url}/v1/runs", json={"agent": "calc", "input": "12+30"},
                      headers={"Accept": "text/event-stream"}, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = _sse(response.read().decode())
    names = [name for name, _ in events]
    assert names[0] == "run" and names[-1] == "end"
    assert names.index("tool_call") < names.index("tool_result") < names.index("done")
    run_id = events[0][1]["id"]
    assert events[-1][1]["status"] == "succeeded"
    record = httpx.get(f"{base_url}/v1/runs/{run_id}").json()
    assert record["status"] == "succeeded" and record["result"]["tool_calls"][0]["result"]["result"] == 42


def test_multi_turn_session_then_delete(base_url):
    first = httpx.post(f"{base_url}/v1/runs?wait=true", json={"agent": "calc", "input": "1+1"}, timeout=30).json()
    session = first["session_id"]
    assert first["status"] == "succeeded" and session
    second = httpx.post(f"{base_url}/v1/runs?wait=true", json={"agent": "calc", "input": "2+2",
                                                                "session_id": session}, timeout=30).json()
    assert second["session_id"] == session
    view = httpx.get(f"{base_url}/v1/sessions/{session}").json()
    assert [m["content"] for m in view["messages"] if m["role"] == "user"] == ["1+1", "2+2"]
    assert view["agent"] == "calc"
    assert httpx.delete(f"{base_url}/v1/sessions/{session}").json() == {"id": session, "deleted": True}
    gone = httpx.get(f"{base_url}/v1/sessions/{session}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_not_found"


def test_cancel_a_running_run(base_url):
    started = httpx.post(f"{base_url}/v1/runs", json={"agent": "slow", "input": "3*3"}, timeout=30)
    assert started.status_code == 202
    run_id = started.json()["id"]
    cancelled = httpx.post(f"{base_url}/v1/runs/{run_id}/cancel", timeout=30).json()
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled by the caller"
    assert httpx.get(f"{base_url}/v1/runs/{run_id}").json()["status"] == "cancelled"


def test_artifacts_are_served_and_ids_cannot_escape(base_url):
    record = httpx.post(f"{base_url}/v1/runs?wait=true", json={"agent": "painter", "input": "a red kite"},
                        timeout=60).json()
    assert record["status"] == "succeeded", record
    artifact = record["result"]["artifacts"][0]
    url = artifact["metadata"]["url"]
    picture = httpx.get(f"{base_url}{url}")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ("art_0000000000000000", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "../../../etc/passwd"):
        response = httpx.get(f"{base_url}/v1/artifacts/{bad}")
        assert response.status_code == 404, bad
        assert response.json()["error"]["code"] in ("artifact_not_found", "not_found"), bad
        assert "root:" not in response.text


def test_bad_requests_get_openai_shaped_errors(base_url):
    unknown = httpx.post(f"{base_url}/v1/runs", json={"agent": "nobody", "input": "hi"})
    assert unknown.status_code == 404 and "calc" in unknown.json()["error"]["message"]
    missing = httpx.post(f"{base_url}/v1/chat/completions", json={"model": "calc"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    extra = httpx.post(f"{base_url}/v1/runs", json={"input": "hi", "surprise": 1})
    assert extra.status_code == 400 and extra.json()["error"]["param"] == "surprise"
    with_tools = httpx.post(f"{base_url}/v1/chat/completions", json={
        "model": "calc", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]})
    assert with_tools.status_code == 400 and with_tools.json()["error"]["param"] == "tools"
    assert httpx.get(f"{base_url}/v1/runs/run_0123456789abcdef").status_code == 404


def test_openapi_describes_the_bodies(base_url):
    spec = httpx.get(f"{base_url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"ChatCompletionBody", "RunRequest", "RoomRequest"} <= set(schemas)
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/ChatCompletionBody")
    assert "messages" in schemas["ChatCompletionBody"]["required"]


def test_metrics_count_requests_and_tool_calls(base_url):
    httpx.post(f"{base_url}/v1/runs?wait=true", json={"agent": "calc", "input": "5-1"}, timeout=30)
    text = httpx.get(f"{base_url}/metrics").text
    assert 'raygent_http_requests_total{method="POST",route="/v1/runs",status="200"}' in text
    assert 'raygent_agent_tool_calls_total{agent="calc",tool="calculator"}' in text
    assert "raygent_agent_run_seconds_bucket" in text


def test_metrics_of_models_and_tools_and_the_trace_of_an_api_run(base_url):
    """raygent.telemetry: the replicas' model and tool metrics reach the ingress's /metrics (summed over
    processes), and the API's run id names the run's trace, whose pool-replica span sits under the
    agent replica's model call (tests/test_telemetry.py has the rest)."""
    import time

    from raygent.telemetry import tracing
    from raygent.telemetry.trace_cli import render_tree

    record = httpx.post(f"{base_url}/v1/runs?wait=true", json={"agent": "calc", "input": "6*7"}, timeout=60).json()
    assert record["status"] == "succeeded" and record["result"]["run_id"] == record["id"], record
    wanted = ('raygent_tool_calls_total{tool="calculator"}', "raygent_tool_latency_seconds_bucket{",
              "raygent_model_tokens_generated_total{", "raygent_model_time_to_first_token_seconds_bucket{",
              "raygent_model_queue_depth{")
    deadline = time.monotonic() + 20
    while True:  # each process pushes its values about once a second
        text = httpx.get(f"{base_url}/metrics", timeout=30).text
        spans = tracing.read_trace(record["id"])
        names = {s["name"] for s in spans}
        if (all(w in text for w in wanted) and {"agent.run", "model.generate"} <= names) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(w in text for w in wanted), text
    by_id = {s["span_id"]: s for s in spans}
    generate = next(s for s in spans if s["name"] == "model.generate")
    assert by_id[generate["parent_span_id"]]["name"] in ("model.chat", "model.stream")
    assert "model.generate" in render_tree(spans)
