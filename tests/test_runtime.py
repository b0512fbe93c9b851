"""Placement: the same components in-process and as Ray actors, behind the same interface."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import ray

from raygent import Agent, ray_env, runtime
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.schema import Message
from raygent.toolhub.builtin import default_tools
from raygent.toolhub.registry import ToolRegistry

pytestmark = pytest.mark.ray


def _call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


SCRIPT = [_call("address_parse", address="浙江杭州市江干区九堡镇三村村一区"),
          _call("calculator", expression="330104 % 1000"), "浙江省杭州市江干区; 104"]


async def test_same_run_gives_same_tool_calls_in_process_and_as_actors(ray_cluster):
    local = await Agent(llm=ScriptedChatModel(SCRIPT), tools=default_tools()).run("go")
    llm = runtime.deploy(ScriptedChatModel, SCRIPT, remote=True)
    tools = runtime.deploy(ToolRegistry, default_tools(), remote=True)
    assert runtime.is_remote(llm) and runtime.is_remote(tools)
    remote = await Agent(llm=llm, tools=tools).run("go")
    assert [c.model_dump() for c in remote.tool_calls] == [c.model_dump() for c in local.tool_calls]
    assert remote.answer == local.answer and remote.steps == local.steps == 3
    # the actor really holds the state: it recorded the requests
    assert len(await llm.get_requests()) == 3
    runtime.kill(llm)
    runtime.kill(tools)


async def test_streaming_method_through_an_actor(ray_cluster):
    llm = runtime.deploy(ScriptedChatModel, ["streamed answer"], remote=True)
    deltas = [d async for d in llm.stream([Message.user("hi")])]
    assert deltas[0].text == "streamed answer" and deltas[-1].finish_reason == "stop"
    runtime.kill(llm)


def test_embedded_ray_starts_with_the_lean_settings_and_serves_fast_path(ray_cluster):
    # the test session's Ray was started by runtime.init: Ray's own processes and the actors
    # inherit the lean settings (Ray's metrics off, slower GCS health checks, Serve's control
    # loop at 0.25 s), measured to halve Ray's background CPU on 2 cores, and Serve's gRPC handles;
    # the replica-only settings (same-loop router) stay out of plain Ray workers
    watched = {**ray_env.LEAN, **ray_env.SERVE_FAST_PATH}

    @ray.remote(num_cpus=0)
    def settings_seen_by_a_worker() -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in [*watched, *ray_env.REPLICA_FAST_PATH]}

    seen = ray.get(settings_seen_by_a_worker.remote())
    assert seen == {**watched, **{name: None for name in ray_env.REPLICA_FAST_PATH}}
    assert {name: os.environ.get(name) for name in watched} == watched  # the driver has them too


def test_raygent_deployments_carry_the_replica_fast_path():
    from raygent.serve.app import ServeConfig, build_app
    from tests._serve_apps import scripted_agents_config

    app = build_app(ServeConfig(**scripted_agents_config("sqlite:///unused.sqlite")))
    ingress = app._bound_deployment
    models, agents = ingress.init_args[0], ingress.init_args[1]
    deployments = [ingress, *(a._bound_deployment for a in [*models.values(), *agents.values()])]
    assert len(deployments) == 1 + 3 + 3  # the ingress, three pools, three agents
    for deployment in deployments:
        options = deployment.ray_actor_options
        assert options["runtime_env"]["env_vars"] == ray_env.REPLICA_FAST_PATH, deployment.name
    merged = ray_env.replica_actor_options({"num_cpus": 1, "runtime_env": {
        "pip": ["x"], "env_vars": {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1", "MINE": "2"}}})
    assert merged["runtime_env"] == {"pip": ["x"], "env_vars": {
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1", "MINE": "2"}}


def test_the_haproxy_ingress_cannot_be_chosen_after_ray_started(ray_cluster):
    # what a user sees who asks for it in a process whose Ray is already up with the proxy
    with pytest.raises(ray_env.IngressUnavailableError, match="before Ray starts"):
        runtime.init(ingress="haproxy")
    with pytest.raises(ValueError, match="unknown ingress 'nginx'"):
        ray_env.local_ray_env(ingress="nginx")


async def test_named_actor_is_reused(ray_cluster):
    a = runtime.deploy(ToolRegistry, default_tools(), remote=True, name="test-tools-shared")
    b = runtime.deploy(ToolRegistry, [], remote=True, name="test-tools-shared")
    assert len(await b.list_specs()) == 3  # b found a's actor instead of creating an empty one
    runtime.kill(a)


async def test_in_process_placement_returns_the_component():
    reg = runtime.deploy(ToolRegistry, default_tools(), remote=False)
    assert isinstance(reg, ToolRegistry) and not runtime.is_remote(reg)


async def test_dead_llm_actor_gives_a_clear_error_event(ray_cluster):
    llm = runtime.deploy(ScriptedChatModel, ["never"], remote=True, max_restarts=0)
    runtime.kill(llm)
    events = [e async for e in Agent(llm=llm).stream("hello")]
    assert events[0].type == "error" and "ActorDiedError" in events[0].text
    assert events[-1].result.stop_reason == "error"


async def test_dead_tool_actor_ends_the_run_with_a_clear_error(ray_cluster):
    tools = runtime.deploy(ToolRegistry, default_tools(), remote=True, max_restarts=0)
    agent = Agent(llm=ScriptedChatModel(["unused"]), tools=tools)
    runtime.kill(tools)
    result = await agent.run("1+1")
    assert result.stop_reason == "error" and result.error.startswith("agent setup failed: ActorDiedError")


async def test_tool_hub_dying_mid_run_becomes_error_results():
    class FlakyHub(ToolRegistry):
        async def call_many(self, calls):
            raise ConnectionError("hub actor died")

    llm = ScriptedChatModel([_call("calculator", expression="1+1"), "could not compute"])
    result = await Agent(llm=llm, tools=FlakyHub(default_tools())).run("1+1")
    assert result.tool_calls[0].error == "tool hub unavailable: ConnectionError: hub actor died"
    assert result.answer == "could not compute"


async def test_unknown_method_on_proxy_is_a_clear_attribute_error(ray_cluster):
    tools = runtime.deploy(ToolRegistry, [], remote=True)
    with pytest.raises(AttributeError, match="remote component has no public method 'fly'"):
        tools.fly
    runtime.kill(tools)


@pytest.mark.model
async def test_embedded_model_run_makes_the_same_calls_in_process_and_as_actors(ray_cluster, embedded_llm):
    """The same tool calls (names and arguments, hence the same results) and the same facts in the
    answer. Not the same wording: the shared in-process model reads the prompt on top of a cached
    prefix, the fresh actor reads it whole, and llama.cpp's logits differ in the last bits between
    the two, enough to change greedy free text (docs/architecture.md, "What is deterministic")."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    task = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"
    local = await Agent(llm=embedded_llm, tools=default_tools()).run(task)
    llm = runtime.deploy(LlamaCppChatModel, remote=True, runtime_env={"env_vars": {"OMP_NUM_THREADS": "2"}})
    tools = runtime.deploy(ToolRegistry, default_tools(), remote=True)
    remote = await Agent(llm=llm, tools=tools).run(task)
    assert [c.model_dump() for c in remote.tool_calls] == [c.model_dump() for c in local.tool_calls]
    call = remote.tool_calls[0]
    assert call.name == "address_parse" and call.error is None
    assert {"province": "浙江省", "city": "杭州市", "district": "江干区"}.items() <= call.result.items()
    for result in (local, remote):  # the answer reports the tool's values, however it words them
        assert result.stop_reason == "answer"
        assert all(fact in result.answer for fact in ("浙江", "杭州", "江干")), result.answer
    runtime.kill(llm)
    runtime.kill(tools)


def _flaky_component():
    """A component for the fast-lane tests (defined locally so Ray ships it by value)."""

    class Flaky:
        async def echo(self, value):
            return value

        async def fail(self):
            raise ValueError("bad value from the component")

        async def die(self):
            import os

            os._exit(1)

        async def open_files(self):
            import os

            return len(os.listdir("/proc/self/fd"))

    return Flaky


@pytest.mark.parametrize("lane", ["socket", "compiled graph"])
async def test_fast_lane_gives_the_same_run_as_normal_actor_calls(ray_cluster, lane):
    llm = runtime.deploy(ScriptedChatModel, SCRIPT, remote=True, fast_lane=True)
    tools = runtime.deploy(ToolRegistry, default_tools(), remote=True, fast_lane=True)
    if lane == "compiled graph":  # what an actor on another node gets: no socket route
        llm._socket.disabled = tools._socket.disabled = True
    result = await Agent(llm=llm, tools=tools).run("go")
    local = await Agent(llm=ScriptedChatModel(SCRIPT), tools=default_tools()).run("go")
    assert [c.model_dump() for c in result.tool_calls] == [c.model_dump() for c in local.tool_calls]
    if lane == "socket":  # the calls really went over the Unix socket, and no graph was compiled
        assert llm._socket._lane.calls >= 2 and tools._socket._lane.calls >= 1 and llm._lane._graph is None
    else:
        assert llm._lane._graph is not None and llm._socket._lane is None
    runtime.kill(llm)
    runtime.kill(tools)


@pytest.mark.parametrize("lane", ["socket", "compiled graph"])
async def test_fast_lane_errors_and_death(ray_cluster, lane):
    comp = runtime.deploy(_flaky_component(), remote=True, fast_lane=True, max_restarts=1)
    comp._socket.disabled = lane == "compiled graph"
    assert await comp.echo({"a": [1, 2]}) == {"a": [1, 2]}
    # a component exception arrives as on the normal path, and the lane keeps working
    with pytest.raises(ValueError, match="bad value from the component") as caught:
        await comp.fail()
    if lane == "socket":  # the actor's traceback comes along, as Ray's error would carry it
        assert "raised in the actor" in caught.value.__notes__[0] and "in fail" in caught.value.__notes__[0]
    assert await comp.echo("still here") == "still here"
    # the actor dies mid-call: a clear error, never a hang; then calls reach the restarted actor
    with pytest.raises(runtime.ComponentUnavailableError, match="unreachable during a call") as died:
        await comp.die()
    if lane == "socket":  # code written for plain actor calls catches it as Ray's own error
        assert isinstance(died.value, ray.exceptions.RayActorError)
    assert await comp.echo("after restart") == "after restart"
    if lane == "socket":  # a call during the restart takes Ray's path; a later one reconnects
        for i in range(3):
            assert await comp.echo(i) == i
        assert comp._socket._lane.connected and comp._socket._lane.calls >= 1
    runtime.kill(comp)
    # killed for good (runtime.kill returns once the actor is gone): Ray's own error, as without the lane
    with pytest.raises(ray.exceptions.RayActorError):
        await comp.echo("gone")


async def test_socket_route_waits_for_an_actor_ray_reports_as_restarting(ray_cluster):
    """Just after an actor died (the lane notices before Ray does), Ray can answer the route's
    request for the socket with ActorUnavailableError ("the actor is restarting"): CI once gave that
    to the user's next call. The route asks again until the restarted actor answers."""
    comp = runtime.deploy(_flaky_component(), remote=True, max_restarts=1)
    real, refusals = comp._socket._handle, []

    class RestartingHandle:  # Ray's handle, but the first two socket requests meet a restart
        def __getattr__(self, name):
            return getattr(real, name)

        @property
        def open_socket_lane(self):
            class Method:
                async def remote(self):
                    if len(refusals) < 2:
                        refusals.append(time.monotonic())
                        raise ray.exceptions.ActorUnavailableError("The actor is restarting.", None)
                    return await real.open_socket_lane.remote()
            return Method()

    comp._socket._handle = RestartingHandle()
    assert await comp.echo("after restart") == "after restart"
    assert len(refusals) == 2 and comp._socket._lane.calls == 1  # answered over the socket
    runtime.kill(comp)


async def test_concurrent_calls_share_the_socket_lane(ray_cluster):
    comp = runtime.deploy(_flaky_component(), remote=True, fast_lane=True)
    results = await asyncio.gather(*(comp.echo(i) for i in range(20)))
    assert results == list(range(20))
    big = os.urandom(6 << 20)  # larger than the socket buffers: framing and back-pressure
    assert await comp.echo(big) == big
    assert comp._socket._lane.calls == 21  # multiplexed on one connection, nothing took Ray's path
    runtime.kill(comp)


async def test_default_proxies_use_the_socket_lane_and_fast_lane_false_opts_out(ray_cluster):
    comp = runtime.deploy(_flaky_component(), remote=True)
    assert await comp.echo(1) == 1 and comp._socket._lane.calls == 1
    plain = runtime.deploy(_flaky_component(), remote=True, fast_lane=False)
    assert await plain.echo(2) == 2 and plain._socket is None and plain._lane is None
    runtime.kill(comp)
    runtime.kill(plain)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
async def test_proxies_of_one_actor_share_a_connection_and_dropped_ones_close_it(ray_cluster):
    """Proxies unpickled per request (e.g. passed to a Serve replica with every call) reuse the
    connection of a live proxy of the same actor; once none is left, the last one dropped closes
    it (before, 100 proxies unpickled and dropped leaked 100 descriptors on each side)."""
    import gc
    import pickle

    comp = runtime.deploy(_flaky_component(), remote=True)
    here, there = len(os.listdir("/proc/self/fd")), await comp.open_files()
    for i in range(20):
        copy = pickle.loads(pickle.dumps(comp))
        assert await copy.echo(i) == i and copy._socket is comp._socket
    assert comp._socket._lane.calls == 21  # one connection carried every call
    blob, keep_alive = pickle.dumps(comp), comp.actor_handle  # a Ray handle keeps the actor, not the route
    del comp, copy
    for i in range(100):  # no proxy of the actor alive in between: each opens a connection
        copy = pickle.loads(blob)
        assert await copy.echo(i) == i and copy._socket._lane.calls == 1
        del copy
    gc.collect()
    comp = pickle.loads(blob)
    await asyncio.sleep(0.2)  # the actor notices the closed connections
    assert await comp.open_files() - there < 5
    assert len(os.listdir("/proc/self/fd")) - here < 5
    runtime.kill(comp)
    del keep_alive


def test_a_proxy_used_by_successive_event_loops_reconnects_its_lane(ray_cluster):
    """A sync program calling asyncio.run() twice: each loop gets its own connection."""
    comp = runtime.deploy(_flaky_component(), remote=True)
    assert asyncio.run(comp.echo("first loop")) == "first loop"
    first = comp._socket._lane
    assert asyncio.run(comp.echo("second loop")) == "second loop"
    assert comp._socket._lane is not first and comp._socket._lane.calls == 1  # over the socket again
    runtime.kill(comp)


async def test_max_task_retries_resends_a_call_whose_actor_died_on_the_lane(ray_cluster, tmp_path):
    class DiesOnce:
        async def work(self, marker: str) -> str:
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return "done on the restarted actor"

    comp = runtime.deploy(DiesOnce, remote=True, max_restarts=1, max_task_retries=1)
    assert await comp.work(str(tmp_path / "m")) == "done on the restarted actor"  # as Ray's retry would
    runtime.kill(comp)


async def test_concurrent_calls_do_not_queue_behind_the_compiled_lane(ray_cluster):
    comp = runtime.deploy(_flaky_component(), remote=True, fast_lane=True)
    comp._socket.disabled = True
    results = await asyncio.gather(*(comp.echo(i) for i in range(20)))
    assert results == list(range(20))
    runtime.kill(comp)


def test_script_using_the_fast_lane_exits_without_shutdown(tmp_path):
    """A user script that never calls runtime.shutdown() must still exit (the compiled graph's
    reader thread would otherwise block interpreter exit)."""
    import subprocess
    import sys

    script = tmp_path / "lane_script.py"
    script.write_text(
        "import asyncio\n"
        "from raygent import ray_env, runtime\n"
        "from raygent.llm_pool.scripted import ScriptedChatModel\n"
        "from raygent.schema import Message\n"
        "async def main():\n"
        "    runtime.init(num_cpus=1, log_to_driver=False)\n"
        "    llm = runtime.deploy(ScriptedChatModel, ['a'], remote=True, fast_lane=True)\n"
        "    print((await llm.chat([Message.user('x')])).text, flush=True)\n"
        "asyncio.run(main())\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "a", done.stderr[-2000:]


async def test_fast_lane_wait_ends_when_the_graph_dies_without_answering(monkeypatch):
    """Under load Ray's graph monitor can tear a graph down (the actor died) and never resolve the
    pending result; the lane's watchdog must turn that into an error instead of waiting forever."""
    monkeypatch.setattr(runtime, "_WATCH_S", 0.05)

    class TornDownGraph:
        is_teardown = False

    lane = runtime._FastLane(handle=None, name="stuck")
    lane._graph = TornDownGraph()
    never = asyncio.get_running_loop().create_future()  # Ray's result that never comes
    asyncio.get_running_loop().call_later(0.2, setattr, lane._graph, "is_teardown", True)
    with pytest.raises(runtime._LaneBroken, match="torn down"):
        await asyncio.wait_for(lane._result(never), 5)
    # a result that does arrive is returned untouched, and an outside cancel stays a cancel
    done = asyncio.get_running_loop().create_future()
    done.set_result(b"ok")
    lane._graph = TornDownGraph()
    assert await lane._result(done) == b"ok"
    waiter = asyncio.ensure_future(lane._result(asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
