"""The served agent API with API keys, as an operator and two users meet it: keys made with
`raygent keys create` while the server runs, owner scoping of sessions, runs and artifacts,
per-key limits (429 with Retry-After), the body limit (413), the A2A endpoint behind a key (the
a2a-sdk's own client), and a multi-agent room (the storybook team) streamed over SSE.

Everything is real but the models: Serve, the agent deployments, the built-in tools, the SQLite
state and key store, HTTP on 127.0.0.1. The models are rule-based (each answers from its tool's
result; the story model plans and writes pages by rule)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from _local_servers import free_port
from _serve_apps import scripted_agents_config

pytestmark = pytest.mark.ray

BODY_LIMIT = 64 * 1024


def _keys_cli(state: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raygent.cli", "keys", *args, "--state", state],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(ray_cluster, tmp_path_factory):
    """The agent API on a fresh port with its own state; no key exists yet."""
    from ray import cloudpickle, serve

    import team_models
    from raygent.llm_pool.pool import model_app
    from raygent.serve.app import ServeConfig, agent_app
    from raygent.serve.ingress import RaygentIngress

    cloudpickle.register_pickle_by_value(team_models)  # the story model travels to its replica by value
    home = tmp_path_factory.mktemp("secure")
    state = f"sqlite://{home / 'memory.sqlite'}"
    base = scripted_agents_config(state, slow_delay_s=4.0,
                                  security={"requests_per_minute": 1000, "concurrent_runs": 4,
                                            "cors_origins": ["https://app.example"]},
                                  max_body_bytes=BODY_LIMIT)
    # the deployment below is the rule-based story model; the config names it for the ingress
    base["models"]["story-model"] = {"model": {"type": "scripted"}, "pool": {"num_cpus": 0}}
    config = ServeConfig(**base)
    models = {name: model_app(name, {**entry.model, "name": name}, pool=entry.pool)
              for name, entry in config.models.items() if name != "story-model"}
    models["story-model"] = model_app("story-model", team_models.StoryRulesModel, pool={"num_cpus": 0})
    agents = {name: agent_app(name, entry, models[entry.model], entry.model, state)
              for name, entry in config.agents.items()}
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(RaygentIngress.bind(models, agents, config.model_dump(mode="json")), name="raygent-secure-test",
              route_prefix="/")
    yield {"url": f"http://127.0.0.1:{port}", "state": state, "home": home}
    serve.delete("raygent-secure-test")
    serve.shutdown()


@pytest.fixture(scope="module")
def keys(server):
    """Two users' keys, made with the CLI while the server runs (from then on keys are required),
    and a third with its own limits of 3 requests per minute and 1 concurrent run."""
    before = httpx.post(f"{server['url']}/v1/chat/completions",
                        json={"model": "calc", "messages": [{"role": "user", "content": "1+1"}]}, timeout=60)
    assert before.status_code == 200, before.text  # no key exists yet: a loopback server is open
    made = {}
    for name, extra in (("alice", []), ("bob", []), ("tight", ["--rpm", "3", "--concurrent", "1"])):
        out = _keys_cli(server["state"], "create", "--name", name, "--json", *extra)
        assert out.returncode == 0, out.stderr
        made[name] = json.loads(out.stdout)["key"]
    listing = _keys_cli(server["state"], "list", "--json")
    assert sorted(k["name"] for k in json.loads(listing.stdout)) == ["alice", "bob", "tight"]
    return made


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def test_without_a_key_every_route_is_401_but_health_and_cards(server, keys):
    url = server["url"]
    for method, path, body in (("POST", "/v1/chat/completions", {"model": "calc", "messages": [
            {"role": "user", "content": "6*7"}]}), ("GET", "/v1/models", None), ("GET", "/v1/agents", None),
            ("POST", "/v1/runs", {"agent": "calc", "input": "6*7"}), ("GET", "/v1/runs/run_0123456789abcdef", None),
            ("GET", "/v1/sessions/s-1", None), ("GET", "/v1/artifacts/art_0123456789abcdef", None),
            ("GET", "/metrics", None), ("POST", "/v1/rooms", {"topic": "a fox"}),
            ("POST", "/a2a/calc/", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}})):
        for headers in ({}, _auth("rk-not-a-key-at-all"), {"Authorization": f"Basic {keys['alice']}"}):
            response = httpx.request(method, url + path, json=body, headers=headers, timeout=30)
            error = _error(response, 401, "invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer", (path, headers)
            assert "raygent keys create" in error["message"] or "Incorrect API key" in error["message"]
    assert httpx.get(f"{url}/healthz").json()["agents"] == ["calc", "painter", "slow"]
    card = httpx.get(f"{url}/a2a/calc/.well-known/agent-card.json")
    assert card.status_code == 200 and card.json()["name"] == "calc"


def test_sessions_runs_and_artifacts_belong_to_the_key_that_made_them(server, keys):
    url = server["url"]
    alice, bob = _auth(keys["alice"]), _auth(keys["bob"])
    turn = {"model": "calc", "session_id": "shared-name", "messages": [{"role": "user", "content": "6*7"}]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=turn, headers=alice, timeout=60)
    assert reply.status_code == 200 and '"result": 42' in reply.json()["choices"][0]["message"]["content"]

    # bob neither sees alice's session nor can he write into it: the same id is hers
    _error(httpx.get(f"{url}/v1/sessions/shared-name", headers=bob), 404, "session_not_found")
    _error(httpx.delete(f"{url}/v1/sessions/shared-name", headers=bob), 404, "session_not_found")
    _error(httpx.post(f"{url}/v1/chat/completions", json=turn, headers=bob, timeout=60), 404, "session_not_found")
    history = httpx.get(f"{url}/v1/sessions/shared-name", headers=alice).json()
    assert [m["role"] for m in history["messages"]][:1] == ["user"] and history["agent"] == "calc"
    assert sum(m["role"] == "user" for m in history["messages"]) == 1  # bob's attempt left nothing

    run = httpx.post(f"{url}/v1/runs?wait=true", json={"agent": "painter", "input": "a red square"},
                     headers=alice, timeout=60).json()
    assert run["status"] == "succeeded", run
    [artifact] = run["result"]["artifacts"]
    art_url = artifact["metadata"]["url"]
    _error(httpx.get(f"{url}/v1/runs/{run['id']}", headers=bob), 404, "run_not_found")
    _error(httpx.post(f"{url}/v1/runs/{run['id']}/cancel", headers=bob), 404, "run_not_found")
    _error(httpx.get(url + art_url, headers=bob), 404, "artifact_not_found")
    mine = httpx.get(url + art_url, headers=alice)
    assert mine.status_code == 200 and mine.headers["content-type"] == "image/png"
    assert mine.content.startswith(b"\x89PNG")
    assert httpx.get(f"{url}/v1/runs/{run['id']}", headers=alice).json()["id"] == run["id"]



def test_per_key_request_rate_is_429_with_retry_after(server, keys):
    tight = _auth(keys["tight"])
    statuses = [httpx.get(f"{server['url']}/v1/agents", headers=tight).status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429, statuses
    refused = httpx.get(f"{server['url']}/v1/agents", headers=tight)
    _error(refused, 429, "rate_limit_exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    # the other users are not slowed by it
    assert httpx.get(f"{server['url']}/v1/agents", headers=_auth(keys["bob"])).status_code == 200


async def test_concurrent_runs_beyond_the_keys_limit_are_429_and_nothing_is_lost(server, keys):
    """`concurrent_runs: 4` for alice: a fifth run while four slow ones are going is refused at once;
    the four finish, and afterwards a new run is accepted."""
    url, alice = server["url"], _auth(keys["alice"])
    async with httpx.AsyncClient(base_url=url, headers=alice, timeout=60) as http:
        started = [await http.post("/v1/runs", json={"agent": "slow", "input": f"{i}*3"}) for i in range(4)]
        assert [r.status_code for r in started] == [202] * 4, [r.text for r in started]
        refused = await http.post("/v1/runs", json={"agent": "slow", "input": "5*3"})
        _error(refused, 429, "concurrent_runs_exceeded")
        assert int(refused.headers["retry-after"]) >= 1
        records = []
        for r in started:
            for _ in range(120):
                record = (await http.get(f"/v1/runs/{r.json()['id']}")).json()
                if record["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.25)
            records.append(record)
        assert [r["status"] for r in records] == ["succeeded"] * 4, records
        assert [r["result"]["tool_calls"][0]["result"]["result"] for r in records] == [0, 3, 6, 9]
        again = await http.post("/v1/runs?wait=true", json={"agent": "calc", "input": "5*3"})
        assert again.status_code == 200 and again.json()["status"] == "succeeded"


def test_oversized_bodies_are_413_before_the_agent_runs(server, keys):
    big = {"model": "calc", "messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 10)}]}
    response = httpx.post(f"{server['url']}/v1/chat/completions", json=big, headers=_auth(keys["bob"]))
    error = _error(response, 413, "request_too_large")
    assert str(BODY_LIMIT) in error["message"]


def test_cors_allows_only_the_listed_origin(server, keys):
    url = server["url"]
    ok = httpx.options(f"{url}/v1/agents", headers={"Origin": "https://app.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(f"{url}/v1/agents", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers


async def test_a2a_sdk_client_reaches_the_served_agent_with_a_key(server, keys):
    from a2a.client import ClientConfig, create_client
    from a2a.helpers import get_artifact_text
    from a2a.types import a2a_pb2 as a2a

    async def ask(key: str) -> list:
        async with httpx.AsyncClient(headers=_auth(key), timeout=60) as http:
            client = await create_client(f"{server['url']}/a2a/calc/", ClientConfig(streaming=False,
                                                                                    httpx_client=http))
            message = a2a.Message(role=a2a.Role.ROLE_USER, message_id="m-1", parts=[a2a.Part(text="6*7")])
            return [r async for r in client.send_message(a2a.SendMessageRequest(message=message))]

    [response] = await ask(keys["bob"])
    task = response.task
    assert task.status.state == a2a.TaskState.TASK_STATE_COMPLETED
    assert '"result": 42' in get_artifact_text(task.artifacts[0])
    with pytest.raises(Exception, match="401"):
        await ask("rk-wrong")


def test_a_story_room_streams_its_team_then_serves_the_book(server, keys):
    url, bob = server["url"], _auth(keys["bob"])
    events = []
    with httpx.stream("POST", f"{url}/v1/rooms", json={"topic": "a snowy day", "pages": 2, "model": "story-model"},
                      headers=bob, timeout=300) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    names = [n for n, _ in events]
    assert names[0] == "room" and names[-1] == "done", names
    progress = " ".join(e["text"] for n, e in events if n == "progress")
    for role in ("planner", "writer", "illustrator", "narrator", "binder"):
        assert role in progress, (role, progress[:2000])
    done = events[-1][1]
    # what went wrong where a page lacks its audio or picture (espeak-ng failed once under load):
    # the team's own words about it, not only the list of missing parts
    trouble = [e["text"] for n, e in events if n == "progress" and any(
        w in e["text"].lower() for w in ("narrat", "audio", "error", "fail", "missing"))]
    assert done["missing"] == [], (done, trouble)
    files = {f["name"]: f for f in done["files"]}
    assert {"book.html", "manifest.json"} <= set(files), sorted(files)
    manifest = httpx.get(url + files["manifest.json"]["url"], headers=bob).json()
    assert [p["text"] for p in manifest["pages"]] == ["Page 1: step 1 of a snowy day.",
                                                      "Page 2: step 2 of a snowy day."]
    book = httpx.get(url + files["book.html"]["url"], headers=bob)
    assert book.status_code == 200 and book.headers["content-type"].startswith("text/html")
    assert "Page 2: step 2 of a snowy day." in book.text
    _error(httpx.get(url + files["book.html"]["url"], headers=_auth(keys["alice"])), 404, "artifact_not_found")
    unknown = httpx.post(f"{url}/v1/rooms", json={"topic": "x", "model": "nope"}, headers=bob)
    _error(unknown, 404, "model_not_found")
