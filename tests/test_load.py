"""Load on the agent API (the short version of benchmarks/load.py): concurrent sessions on a
rule-based model against the same runs in-process, requests beyond capacity refused at once with
429/503 and Retry-After (none lost, none left hanging), and a soak of runs in a row that must not
grow any actor's memory, file descriptors or sockets beyond a bound.

Also the regression tests of what the load found: an agent deployment with every replica busy
queued runs without bound (now `max_queued_requests`, and 503 with Retry-After beyond it, where
Serve's BackPressureError used to be a 500), and an agent run whose model pool refused its first
call answered 200 with a failed run (now 429 with Retry-After, as a model request gets)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import load  # noqa: E402

SESSIONS = 100
SOAK_RUNS = 300


# -- in-process: the agent replica's side of a refusal ---------------------------------------------------------
class _RefusingModel:
    """Refuses (PoolBusyError) calls `refuse_from`..`refuse_until`; the others call the calculator, then answer."""

    model_name = "refusing"

    def __init__(self, refuse_from: int, refuse_until: int = 10**9):
        from raygent.llm_pool.scripted import ToolThenAnswerModel

        self.inner = ToolThenAnswerModel("calculator", "expression")
        self.refuse_from, self.refuse_until = refuse_from, refuse_until
        self.calls = 0

    async def get_model_name(self) -> str:
        return self.model_name

    async def chat(self, messages, tools=None, params=None):
        from raygent.llm_pool.pool import PoolBusyError

        self.calls += 1
        if self.refuse_from <= self.calls <= self.refuse_until:
            raise PoolBusyError("model pool 'refusing' is full")
        return await self.inner.chat(messages, tools, params)

    async def stream(self, messages, tools=None, params=None):
        from raygent.schema import Delta

        c = await self.chat(messages, tools, params)
        yield Delta(text=c.text, tool_calls=c.tool_calls, finish_reason=c.finish_reason, usage=c.usage)


def _server(model) -> object:
    from raygent.serve.agent_server import AgentServer

    return AgentServer("calc", {"tools": ["calculator"], "memory": False}, model, "refusing")


async def test_a_run_refused_by_the_pool_at_its_first_call_raises_the_refusal():
    from raygent.llm_pool.pool import PoolBusyError
    from raygent.serve.models import RunRequest

    server = _server(_RefusingModel(refuse_from=1))
    with pytest.raises(PoolBusyError):
        await server.run(RunRequest(input="6*7"))
    with pytest.raises(PoolBusyError):
        async for _ in server.stream(RunRequest(input="6*7")):
            pass


async def test_an_admitted_run_waits_out_a_refusal_then_finishes(monkeypatch):
    """After its first model call was answered the run is admitted: a later refusal is retried with
    backoff (the pool frees up) and the run finishes; past the patience it fails (a failed run)."""
    from raygent.serve import agent_server
    from raygent.serve.models import RunRequest

    model = _RefusingModel(refuse_from=2, refuse_until=3)  # calls 2 and 3 refused, then answered
    result = await _server(model).run(RunRequest(input="6*7"))
    assert result.stop_reason == "answer" and '"result": 42' in result.answer, result
    assert model.calls == 4

    monkeypatch.setattr(agent_server._RefusalProbe, "PATIENCE_S", 0.2)
    result = await _server(_RefusingModel(refuse_from=2)).run(RunRequest(input="6*7"))
    assert result.stop_reason == "error" and "PoolBusyError" in result.error
    assert [c.name for c in result.tool_calls] == ["calculator"]


async def test_a_finished_run_leaves_the_ingress_memory_soon(tmp_path, monkeypatch):
    """Regression (the soak: the ingress grew 126 MiB in 10,000 runs): a finished run stayed in the
    ingress's memory for 300 s, events and all. Now for FINISHED_RUN_GRACE_S; the record stays readable
    from the run store."""
    from raygent.llm_pool.scripted import ToolThenAnswerModel
    from raygent.serve import ingress as module
    from raygent.serve.agent_server import AgentServer
    from raygent.serve.models import RunRecord, RunRequest

    assert module.FINISHED_RUN_GRACE_S <= 10
    state = f"sqlite://{tmp_path / 'memory.sqlite'}"
    config = load.scripted_config(state, memory=False)
    agent = AgentServer(load.AGENT, config["agents"][load.AGENT], ToolThenAnswerModel("calculator", "expression"),
                        load.MODEL, state)
    user_class = module.RaygentIngress.func_or_class.__mro__[1]  # the class under Serve's ASGI wrapper
    assert user_class.__name__ == "RaygentIngress" and "start_run" in vars(user_class)
    # (Serve may hold the class's functions with globals of their own: patch the ones _execute reads)
    monkeypatch.setitem(user_class._execute.__globals__, "FINISHED_RUN_GRACE_S", 0.2)
    ingress = user_class.__new__(user_class)
    user_class.__init__(ingress, {load.MODEL: object()}, {load.AGENT: agent}, config)
    record = RunRecord(agent=load.AGENT)
    live = module._LiveRun(record)
    ingress.live[record.id] = live
    await ingress._execute(live, RunRequest(agent=load.AGENT, input="6*7"))
    assert record.status == "succeeded" and record.id in ingress.live
    await asyncio.sleep(0.5)
    assert ingress.live == {}
    stored = await ingress.runs.get(record.id)
    assert stored.status == "succeeded" and '"result": 42' in stored.result.answer
    await ingress.runs.close()


# -- served ------------------------------------------------------------------------------------------------------
def _tight_config(state_url: str) -> dict:
    """`calc` sized for the load; `tight` (one replica, one run at a time, one waiting) and `pooled` (its
    model pool: one call at a time, one waiting) for the refusals. Their models answer 1.5 s late."""
    config = load.scripted_config(state_url)
    slow = {"type": "scripted", "tool_then_answer": {"tool": "calculator", "argument": "expression",
                                                     "delay_s": 1.5}}
    config["models"]["slow-model"] = {"model": slow, "pool": {"num_cpus": 0, "max_ongoing_requests": 64}}
    config["models"]["tiny-pool"] = {"model": slow, "pool": {"num_cpus": 0, "max_ongoing_requests": 1,
                                                             "max_queued_requests": 1}}
    config["agents"]["tight"] = {"model": "slow-model", "tools": ["calculator"], "memory": False,
                                 "deployment": {"num_cpus": 0, "max_ongoing_requests": 1, "max_queued_requests": 1}}
    config["agents"]["pooled"] = {"model": "tiny-pool", "tools": ["calculator"], "memory": False,
                                  "deployment": {"num_cpus": 0, "max_ongoing_requests": 64}}
    return config


@pytest.fixture(scope="module")
def base_url(ray_cluster, tmp_path_factory):
    from ray import serve

    state = f"sqlite://{tmp_path_factory.mktemp('load') / 'memory.sqlite'}"
    port = load.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    load.deploy(_tight_config(state), load.SCRIPTED_APP)
    yield f"http://127.0.0.1:{port}"
    serve.delete(load.SCRIPTED_APP)
    serve.shutdown()


async def _burst(base: str, agent: str, n: int, route: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        async def one(i: int) -> httpx.Response:
            if route == "runs":
                return await client.post("/v1/runs?wait=true", json={"agent": agent, "input": f"{i}+1"})
            return await client.post("/v1/chat/completions", json={
                "model": agent, "messages": [{"role": "user", "content": f"{i}+1"}]})

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 60)


@pytest.mark.ray
@pytest.mark.parametrize("route", ["runs", "chat"])
async def test_beyond_the_agents_capacity_runs_are_503_with_retry_after(base_url, route):
    """Regression: with every replica busy, runs queued without bound (Serve's default), and Serve's
    BackPressureError was a 500. Now the one running (and the one waiting, if Serve lets it) complete, the
    others get 503 at once."""
    replies = await _burst(base_url, "tight", 6, route)
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}, [(r.status_code, r.text[:200]) for r in replies]
    assert statuses.count(503) >= 3, statuses
    for r in replies:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "AgentBusyError", r.text
        else:
            body = r.json()
            assert body.get("status", "succeeded") == "succeeded" and body.get("error") is None, body


@pytest.mark.ray
@pytest.mark.parametrize("route", ["runs", "chat"])
async def test_beyond_the_pools_capacity_agent_runs_are_429_with_retry_after(base_url, route):
    """Regression: an agent run whose model pool refused its first call answered 200 with a failed run
    ("model call failed: PoolBusyError"); now it is 429 with Retry-After, like a model request."""
    replies = await _burst(base_url, "pooled", 6, route)
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 429}, [(r.status_code, r.text[:200]) for r in replies]
    assert statuses.count(429) >= 3, statuses
    for r in replies:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "PoolBusyError", r.text
        elif route == "runs":
            assert r.json()["status"] == "succeeded", r.text
        else:
            assert r.json()["raygent"]["stop_reason"] == "answer", r.text


@pytest.mark.ray
async def test_concurrent_sessions_then_a_soak_without_growth(base_url, capsys):
    served = await load.sessions(base_url, SESSIONS, 1, timeout=60)
    local = await load.in_process(SESSIONS, 1)
    before = load.actor_snapshot()
    soaked = await load.soak(base_url, SOAK_RUNS, 4, timeout=60, progress=False)
    await asyncio.sleep(0.5)
    after = load.actor_snapshot()
    rows, broken = load.compare(before, after, rss_bound_mib=64, fd_bound=16)
    with capsys.disabled():
        print()
        print(served.line(f"served {SESSIONS} concurrent sessions"))
        print(local.line(f"in-process {SESSIONS} concurrent sessions"))
        print(soaked.line(f"soak {SOAK_RUNS} runs"))
        load.print_rows(rows)
    assert (served.completed, served.lost, served.hung) == (SESSIONS, 0, 0), served.problems
    assert (soaked.completed, soaked.lost, soaked.hung) == (SOAK_RUNS, 0, 0), soaked.problems
    assert any("raygent-ingress" in r["actor"] for r in rows) and any("agent-calc" in r["actor"] for r in rows)
    assert broken == [], broken
