"""The LLM pool on Ray Serve: PooledLLM behaves like a local model; replicas, back-pressure, a killed
replica, and the OpenAI-compatible HTTP ingress driven by the official openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import httpx
import pytest
import ray

from raygent import Agent
from raygent.llm_pool.pool import PoolBusyError, PooledLLM, PoolReplicaDiedError, delete_model, serve_model
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.schema import Message
from raygent.toolhub.builtin import default_tools

pytestmark = pytest.mark.ray


def _call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_port(ray_cluster):
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()


def test_replicas_upgrade_handles_made_by_a_driver_to_grpc(serve_port):
    # a handle made where Serve was imported without the fast path (a driver) carries actor calls;
    # a Ray process that has it (a replica, here a task) upgrades the handle to gRPC
    from ray.serve.handle import DeploymentHandle

    from raygent.ray_env import with_process_transport

    # as a driver makes it that imported Serve before raygent's init (actor calls)
    made_by_driver = DeploymentHandle("some-deployment", "some-app").options(_by_reference=True)

    @ray.remote(num_cpus=0)
    def in_a_ray_process(handle: DeploymentHandle) -> bool:
        return with_process_transport(handle).handle_options._by_reference

    assert ray.get(in_a_ray_process.remote(made_by_driver)) is False
    assert with_process_transport("not a handle") == "not a handle"


async def test_pooled_model_runs_an_agent_like_a_local_model(serve_port):
    script = [_call("calculator", expression="17*23"), "17*23 = 391"]
    pool = serve_model("t-agent", ScriptedChatModel, script, pool={"num_cpus": 0})
    local = await Agent(llm=ScriptedChatModel(script), tools=default_tools()).run("what is 17*23?")
    pooled = await Agent(llm=pool, tools=default_tools()).run("what is 17*23?")
    assert [c.model_dump() for c in pooled.tool_calls] == [c.model_dump() for c in local.tool_calls]
    assert pooled.tool_calls[0].result["result"] == 391 and pooled.answer == "17*23 = 391"
    delete_model("t-agent")


async def test_stream_through_the_handle(serve_port):
    pool = serve_model("t-stream", ScriptedChatModel, ["streamed answer"], pool={"num_cpus": 0})
    deltas = [d async for d in pool.stream([Message.user("hi")])]
    assert deltas[0].text == "streamed answer" and deltas[-1].finish_reason == "stop"
    delete_model("t-stream")


async def test_requests_spread_over_replicas(serve_port):
    pool = serve_model("t-replicas", ScriptedChatModel, ["x"] * 100,
                       pool={"num_replicas": 2, "num_cpus": 0, "max_ongoing_requests": 1})
    infos = await asyncio.gather(*(pool.replica_info() for _ in range(16)))
    assert len({i["pid"] for i in infos}) == 2
    delete_model("t-replicas")


async def test_back_pressure_refuses_at_once_and_loses_nothing(serve_port):
    pool = serve_model("t-busy", ScriptedChatModel, ["ok"] * 20, delay_s=1.0,
                       pool={"num_cpus": 0, "max_ongoing_requests": 1, "max_queued_requests": 1})
    outcomes = await asyncio.gather(*(pool.chat([Message.user(str(i))]) for i in range(6)), return_exceptions=True)
    served = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, PoolBusyError)]
    # what fits (one running, what the queue holds) is served; the rest get a clear refusal; nothing vanishes
    assert len(served) >= 1 and len(refused) >= 3 and len(served) + len(refused) == 6, outcomes
    assert all(o.text == "ok" for o in served)
    assert "is full" in str(refused[0]) and refused[0].status == 429
    delete_model("t-busy")


async def test_killed_replica_mid_request_is_retried_never_hangs(serve_port):
    pool = serve_model("t-kill", ScriptedChatModel, ["survived"] * 50, delay_s=1.5,
                       pool={"num_replicas": 2, "num_cpus": 0, "max_ongoing_requests": 4, "retries": 3})
    pids = {i["pid"] for i in await asyncio.gather(*(pool.replica_info() for _ in range(12)))}
    assert len(pids) == 2
    requests = [asyncio.ensure_future(pool.chat([Message.user(str(i))])) for i in range(4)]
    await asyncio.sleep(0.5)  # both replicas are now inside their 1.5 s reply
    os.kill(sorted(pids)[0], signal.SIGKILL)
    outcomes = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), timeout=60)
    for o in outcomes:  # every request is answered (retried on the survivor) or fails clearly
        assert not isinstance(o, Exception) or isinstance(o, PoolReplicaDiedError), o
    assert sum(1 for o in outcomes if not isinstance(o, Exception) and o.text == "survived") >= 2
    delete_model("t-kill")


async def test_pooled_llm_is_picklable_for_agents_on_actors(serve_port):
    import pickle

    pool = serve_model("t-pickle", ScriptedChatModel, ["a"], pool={"num_cpus": 0})
    clone = pickle.loads(pickle.dumps(pool))
    assert isinstance(clone, PooledLLM) and (await clone.chat([Message.user("x")])).text == "a"
    delete_model("t-pickle")


# -- the OpenAI-compatible ingress ----------------------------------------------------------------
@pytest.fixture(scope="module")
def openai_url(serve_port):
    from ray import serve

    from raygent.serve.app import ModelEntry, ServeConfig, build_app

    script = [_call("calculator", expression="2+3"), "The answer is 5."] * 20
    config = ServeConfig(models={
        "tiny": ModelEntry(model={"type": "scripted", "replies": script}, pool={"num_cpus": 0}),
        "slow": ModelEntry(model={"type": "scripted", "replies": ["late"] * 5}, pool={"num_cpus": 0}),
    }, api_keys=["sk-test"], max_body_bytes=20_000)
    serve.run(build_app(config), name="raygent-openai-test", route_prefix="/")
    yield f"http://127.0.0.1:{serve_port}/v1"
    serve.delete("raygent-openai-test")


CALC_TOOL = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate arithmetic",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


def test_openai_sdk_sync_tool_call_then_answer(openai_url):
    import openai

    client = openai.OpenAI(base_url=openai_url, api_key="sk-test", max_retries=0)
    first = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "2+3?"}],
                                           tools=[CALC_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "calculator" and json.loads(call.function.arguments) == {"expression": "2+3"}
    second = client.chat.completions.create(model="tiny", tools=[CALC_TOOL], messages=[
        {"role": "user", "content": "2+3?"}, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "5"}])
    assert second.choices[0].message.content == "The answer is 5." and second.usage.total_tokens > 0
    assert [m.id for m in client.models.list().data] == ["slow", "tiny"]


async def test_openai_sdk_async_streaming_with_tool_call_deltas(openai_url):
    import openai

    client = openai.AsyncOpenAI(base_url=openai_url, api_key="sk-test", max_retries=0)
    stream = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "2+3?"}],
                                                  tools=[CALC_TOOL], stream=True,
                                                  stream_options={"include_usage": True})
    name, args, finish, usage = "", "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "calculator" and json.loads(args) == {"expression": "2+3"} and finish == "tool_calls"
    assert usage is not None and usage.completion_tokens > 0
    await client.close()


def test_openai_errors_have_openai_shape(openai_url):
    import openai

    client = openai.OpenAI(base_url=openai_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError, match="API key"):
        openai.OpenAI(base_url=openai_url, api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny", messages=[])
    base = openai_url.rsplit("/v1", 1)[0]
    r = httpx.post(f"{openai_url}/chat/completions", content=b"{not json", headers={"Authorization": "Bearer sk-test"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{openai_url}/chat/completions", headers={"Authorization": "Bearer sk-test"},
                   json={"model": "tiny", "messages": [{"role": "user", "content": "x" * 30_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "models": ["slow", "tiny"], "agents": []}


def test_pool_config_maps_onto_serve_options():
    from raygent.llm_pool.pool import PoolConfig

    tp = PoolConfig(num_gpus=1, accelerator_type="H100", placement_group_bundles=[{"GPU": 1, "CPU": 1}] * 4,
                    placement_group_strategy="STRICT_PACK", max_ongoing_requests=32,
                    autoscaling={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 8})
    opts = tp.deployment_options("big")
    from raygent.ray_env import REPLICA_FAST_PATH

    assert opts["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0, "accelerator_type": "H100",
                                         "runtime_env": {"env_vars": REPLICA_FAST_PATH}}
    assert len(opts["placement_group_bundles"]) == 4 and opts["placement_group_strategy"] == "STRICT_PACK"
    assert opts["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in opts
    assert PoolConfig(num_replicas=3).deployment_options("x")["num_replicas"] == 3
    router = opts["request_router_config"]  # conversation routing by default; Serve's own on request
    assert router.request_router_class == "raygent.llm_pool.routing.ConversationRouter"
    assert router.request_router_kwargs == {"imbalance_threshold": 2}
    assert "request_router_config" not in PoolConfig(routing="serve").deployment_options("x")
    # Serve itself accepts the options (validation happens when the deployment is declared)
    from ray import serve

    from raygent.llm_pool.pool import ModelServer

    serve.deployment(ModelServer).options(**opts)


async def test_unhealthy_replica_is_replaced(serve_port):
    """A model whose health check fails gets its replica replaced by Serve; requests keep working."""
    pool = serve_model("t-health", _sick_model_class(), pool={"num_cpus": 0, "health_check_period_s": 0.5,
                                                              "health_check_timeout_s": 5})
    first = (await pool.replica_info())["pid"]
    await pool.chat([Message.user("make me sick")])
    for _ in range(60):
        await asyncio.sleep(0.5)
        try:
            if (await pool.replica_info())["pid"] != first:
                break
        except Exception:
            continue
    assert (await pool.replica_info())["pid"] != first
    assert (await pool.chat([Message.user("hi")])).text == "fine"
    delete_model("t-health")


def _sick_model_class():
    from raygent.llm_pool.base import ChatModel
    from raygent.schema import Completion

    class SickAfterFirstRequest(ChatModel):
        """Healthy until its first request, then its health check fails."""

        def __init__(self):
            self.requests = 0

        async def chat(self, messages, tools=None, params=None):
            self.requests += 1
            return Completion(text="fine")

        async def check_health(self):
            if self.requests:
                raise RuntimeError("model state corrupted")

    return SickAfterFirstRequest


async def test_pooled_llm_counts_tokens_for_memory_budgets(serve_port):
    pool = serve_model("t-count", ScriptedChatModel, ["a"], pool={"num_cpus": 0})
    # the scripted model has no tokenizer: the replica answers with the fallback estimate
    n = await pool.count_tokens([Message.user("hello there, how are you today?")])
    assert 3 <= n <= 30
    delete_model("t-count")


def _pid_model_class():
    from raygent.llm_pool.base import ChatModel
    from raygent.schema import Completion

    class WhichProcess(ChatModel):
        """Answers with the pid of the replica that served the request."""

        async def chat(self, messages, tools=None, params=None):
            await asyncio.sleep(0.05)
            return Completion(text=str(os.getpid()))

    return WhichProcess


async def test_conversations_spread_evenly_and_stick_to_their_replica(serve_port):
    """The pool's ConversationRouter: a burst of new conversations is split evenly over the
    replicas (Serve's default router was measured putting 6 of 8 on one), and every later step of a
    conversation goes where its first step went (its KV cache), with no wait for announcements."""
    from collections import Counter

    from raygent.llm_pool.pool import conversation_key

    # this model serves requests concurrently, so in-flight counts swing with the steps' timing; a
    # high imbalance_threshold keeps the test about affinity (moves are covered in test_pool_routing)
    pool = serve_model("t-affinity", _pid_model_class(),
                       pool={"num_replicas": 2, "num_cpus": 0, "max_ongoing_requests": 32, "imbalance_threshold": 8})
    openings = [[Message.system("be brief"), Message.user(f"conversation {i}")] for i in range(8)]
    first = await asyncio.gather(*(pool.chat(m) for m in openings))
    assert sorted(Counter(f.text for f in first).values()) == [4, 4]

    async def later_steps(messages, first_pid: str) -> set[str]:
        pids = set()
        for step in range(3):  # each step repeats the opening and adds to it, as an agent run does
            messages = messages + [Message.assistant(f"step {step}"), Message.user(f"more {step}")]
            pids.add((await pool.chat(messages)).text)
        return pids | {first_pid}

    per_conversation = await asyncio.gather(*(later_steps(m, f.text) for m, f in zip(openings, first)))
    assert all(len(p) == 1 for p in per_conversation), per_conversation  # each stayed on its replica
    assert conversation_key([Message.user("a")]) != conversation_key([Message.user("b")])
    assert conversation_key([Message.assistant("no user yet")]) is None
    delete_model("t-affinity")


@pytest.mark.model
async def test_replica_decodes_concurrent_agents_together(serve_port):
    """A llama.cpp replica with parallel=2 (continuous batching) serves two agents at once through
    the pool: both get their calls and answers, and the replica's usage shows the shared prefix reused."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    pool = serve_model("t-batched", LlamaCppChatModel, parallel=2, n_ctx=2048, n_threads=1,
                       pool={"num_cpus": 0, "max_ongoing_requests": 4})
    questions = {"What is 17*23?": 391, "What is 2**10?": 1024}
    results = await asyncio.gather(*(Agent(llm=pool, tools=default_tools()).run(q) for q in questions))
    for value, result in zip(questions.values(), results):
        assert result.tool_calls[0].name == "calculator" and result.tool_calls[0].result["result"] == value
        assert str(value) in result.answer.replace(",", "")
    assert max(r.usage.cached_prompt_tokens for r in results) > 700
    # and the two runs really shared decode steps on the replica (a one-at-a-time replica with
    # prefix reuse gives the same answers and cache shares, and no decode call with two sequences)
    per_decode = (await pool.replica_info())["batching"]["generating_per_decode"]
    assert per_decode.get(2, 0) >= 5, per_decode
    delete_model("t-batched")
