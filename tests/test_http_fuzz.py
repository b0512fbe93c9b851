"""HTTP fuzzing of the served API (the short version of benchmarks/http_fuzz.py): Schemathesis
generates requests from the published OpenAPI spec for every operation, sent with a valid key
(no 5xx, every reply as the spec says), with no key / an unknown key / a malformed key / another
scheme (401 everywhere but the open routes, A2A included), and with key B against key A's
session, run and artifact (404, nothing of A's in any reply, A's items unchanged).

Real HTTP on 127.0.0.1 through Ray Serve's proxy, the ingress and the agent and pool replicas, on
rule-based models (so a run costs milliseconds). Also regression tests for what the fuzzing found."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import http_fuzz  # noqa: E402

EXAMPLES = 3  # per operation and generation mode; the benchmark runs many more


# -- the spec, in-process --------------------------------------------------------------------------------------
def test_the_published_spec_declares_what_the_server_answers():
    """Regression: the spec listed FastAPI's 422 (never sent: raygent answers 400), no 401/404/413/429/503,
    no error body, no Retry-After, no bearer scheme, and only JSON where routes stream SSE or send text."""
    from raygent.serve.ingress import api

    spec = api.openapi()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearerAuth"][
            "description"]}
    assert spec["security"] == [{"bearerAuth": []}]
    paths = spec["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    for path, item in paths.items():
        for method, op in item.items():
            replies = op["responses"]
            assert "422" not in replies, (method, path)
            if path == "/healthz":
                continue
            for status in ("401", "429", "503"):
                assert replies[status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
            assert replies["401"]["headers"]["WWW-Authenticate"]["required"] is True
            assert replies["429"]["headers"]["Retry-After"]["required"] is True
    runs = paths["/v1/runs"]["post"]["responses"]
    assert {"200", "202", "400", "404", "413"} <= set(runs)
    assert set(runs["200"]["content"]) == {"application/json", "text/event-stream"}
    assert runs["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/RunRecord")
    assert "text/event-stream" in paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(paths["/v1/rooms"]["post"]["responses"]["200"]["content"]) == {"text/event-stream"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "404" in paths["/v1/sessions/{session_id}"]["delete"]["responses"]


# -- the fuzzing, against the served app ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_server(ray_cluster, tmp_path_factory):
    from ray import serve

    home = tmp_path_factory.mktemp("fuzz")
    state = f"sqlite://{home / 'memory.sqlite'}"
    keys = http_fuzz.make_keys(state)
    base = http_fuzz.deploy(state, http_fuzz.free_port())
    yield {"url": base, "keys": keys}
    serve.delete(http_fuzz.APP_NAME)
    serve.shutdown()


@pytest.mark.ray
def test_fuzz_every_route_with_and_without_keys(fuzz_server, capsys):
    report, intact = http_fuzz.run_fuzz(fuzz_server["url"], fuzz_server["keys"], EXAMPLES, log=lambda _: None)
    with capsys.disabled():
        print()
        report.print()
    totals = report.totals()
    assert totals["requests"] >= 100, totals
    assert totals == {**totals, "server_errors": 0, "violations": 0, "unauthorised": 0, "leaks": 0}, \
        "\n".join(report.failures[:20])
    assert intact == []


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.ray
def test_a_run_in_another_keys_session_is_refused_at_once(fuzz_server):
    """Regression: `POST /v1/runs` with another key's session_id answered 202 (and 200 with ?wait=true and a
    failed record); the session is now checked first: 404 `session_not_found`, as for every other route."""
    url, keys = fuzz_server["url"], fuzz_server["keys"]
    made = httpx.post(f"{url}/v1/runs?wait=true", json={"agent": "calc", "input": "2+2", "session_id": "only-a"},
                      headers=_auth(keys["a"]), timeout=60)
    assert made.status_code == 200 and made.json()["status"] == "succeeded", made.text
    for query in ("", "?wait=true"):
        refused = httpx.post(f"{url}/v1/runs{query}", json={"agent": "calc", "input": "3+3", "session_id": "only-a"},
                             headers=_auth(keys["b"]), timeout=60)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "session_not_found"
        assert refused.json()["error"]["param"] == "session_id"
    sse = httpx.post(f"{url}/v1/runs", json={"agent": "calc", "input": "3+3", "session_id": "only-a", "stream": True},
                     headers=_auth(keys["b"]), timeout=60)
    assert sse.status_code == 404 and sse.json()["error"]["code"] == "session_not_found"
    view = httpx.get(f"{url}/v1/sessions/only-a", headers=_auth(keys["a"])).json()
    assert [m["content"] for m in view["messages"] if m["role"] == "user"] == ["2+2"]
    # A continues its own session as before; a malformed session id is a 400 before any run starts
    again = httpx.post(f"{url}/v1/runs?wait=true", json={"agent": "calc", "input": "4+4", "session_id": "only-a"},
                       headers=_auth(keys["a"]), timeout=60)
    assert again.status_code == 200 and again.json()["session_id"] == "only-a"
    bad = httpx.post(f"{url}/v1/runs", json={"agent": "calc", "input": "1", "session_id": "../etc"},
                     headers=_auth(keys["a"]), timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "session_id", bad.text
