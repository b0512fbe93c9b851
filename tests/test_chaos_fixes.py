"""Regression tests for what the chaos run (benchmarks/chaos.py, tests/test_chaos.py) found.

- A call to a named component on another node (plain Ray actor calls) that hit the actor while it
  restarted failed with Ray's ActorUnavailableError, whose message names only the actor id
  ("The actor 6c6f01… is unavailable"): the error now names the component.
- The HTTP API answered a request whose agent replica died with 500; it is a 503 (retry) now.
- The pure built-in tools (calculator, current_datetime) were not marked idempotent, so a tool hub
  killed mid-call failed the call instead of running it again on the restarted hub.
- A team's member actors had max_restarts=3 fixed: the fourth kill of a member left it dead and every
  request to it waited for the team's time-out. `Team(max_restarts=...)` sets it (-1: no limit); a
  handler member takes `replicas` and `ray_options` like an AgentRole.
- An agent actor restarted by Ray comes back without its session (its constructor made a new one):
  `Agent.use_session(id)` lets the caller continue the stored session.
- A retried session turn stored the user's message again (9 and 18 times in two 10-minute runs):
  `Agent.run(text, run_id=...)` makes the turn safe to retry: the retry goes on from the stored turn,
  or returns its stored answer when the first try had finished.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from raygent import runtime


# -- errors name the component --------------------------------------------------------------------------
class _Remote:
    def __init__(self, exc: BaseException):
        self.exc = exc

    def remote(self, *args, **kwargs):
        async def fail():
            raise self.exc
        return fail()


class _DeadHandle:
    """A stand-in for an actor handle whose actor is restarting."""

    def __init__(self, exc: BaseException):
        self.invoke_packed = _Remote(exc)
        self.invoke = _Remote(exc)


async def test_an_unavailable_actor_error_names_the_component():
    from ray.exceptions import ActorUnavailableError, RayActorError

    exc = ActorUnavailableError("The actor is temporarily unavailable: IOError: The actor is restarting.", None)
    proxy = runtime.ActorProxy(_DeadHandle(exc), {"select": "async"}, "chaos-retriever", fast_lane=False)
    with pytest.raises(RayActorError) as raised:
        await proxy.select("q", [], 2)
    assert type(raised.value) is ActorUnavailableError  # still Ray's own error, caught as before
    assert str(raised.value).startswith("chaos-retriever: The actor") and "restarting" in str(raised.value)

    unnamed = runtime.ActorProxy(_DeadHandle(ActorUnavailableError("restarting", None)), {"select": "async"}, None,
                                 fast_lane=False)
    with pytest.raises(ActorUnavailableError) as raised:
        await unnamed.select("q", [], 2)
    assert str(raised.value).startswith("The actor")


async def test_an_error_the_component_raised_is_not_renamed():
    class Boom(ValueError):
        pass

    proxy = runtime.ActorProxy(_DeadHandle(Boom("bad input")), {"select": "async"}, "chaos-retriever",
                               fast_lane=False)
    with pytest.raises(Boom, match="^bad input$"):
        await proxy.select("q", [], 2)


# -- HTTP: a dead replica is a 503 ----------------------------------------------------------------------
def test_a_dead_replica_is_answered_503_not_500():
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    from raygent.llm_pool.openai_wire import error_response

    status, body = error_response(ActorUnavailableError("The actor is restarting.", None))
    assert status == 503 and body["error"]["code"] == "component_unavailable"
    assert "retry" in body["error"]["message"]
    status, _ = error_response(ActorDiedError())
    assert status == 503
    status, _ = error_response(RuntimeError("boom"))
    assert status == 500


# -- pure tools are retried after a hub crash ---------------------------------------------------------
async def test_pure_builtin_tools_are_idempotent():
    from raygent.toolhub.builtin import CalculatorTool, CurrentDatetimeTool
    from raygent.toolhub.hub import ToolHub

    hub = ToolHub("math", [CalculatorTool(), CurrentDatetimeTool()])
    assert sorted((await hub.info()).idempotent) == ["calculator", "current_datetime"]


# -- teams: member restarts and handler replicas --------------------------------------------------------
async def _echo(env, ctx):
    return f"{ctx.coordinator.consumer}: {env.content.content}"


async def test_a_handler_member_takes_replicas_in_process():
    from raygent.actors.team import Team

    team = Team(room=f"replicas-{uuid.uuid4().hex[:6]}", log=":memory:", timeout_s=20)
    await team.add("w", _echo, replicas=2)
    assert [c.consumer for c in team.members["w"]] == ["w#0", "w#1"]
    turns = await team.fan_out([("w", f"part {i}") for i in range(4)])
    assert sorted(t.text.split(": ", 1)[1] for t in turns) == [f"part {i}" for i in range(4)]
    await team.close()


@pytest.fixture
def _ship_this_module(ray_cluster):
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the handler runs inside actors
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.ray
async def test_a_member_killed_more_than_three_times_comes_back(_ship_this_module):
    from raygent.actors.team import Team

    team = Team(room=f"restarts-{uuid.uuid4().hex[:6]}", remote=True, log=":memory:", timeout_s=60,
                max_restarts=-1)
    await team.add("echo", _echo, ray_options={"num_cpus": 0})
    [member] = team.members["echo"]
    # the old fixed max_restarts=3 left the member dead after the fourth kill; and about one restart
    # in twenty-five lost its autostart call ("the actor is restarting"), leaving a live, idle member
    for i in range(12):
        runtime.kill(member, no_restart=False)
        reply = await asyncio.wait_for(team.ask("echo", f"after kill {i + 1}"), 60)
        assert reply.content.content == f"echo#0: after kill {i + 1}"
    await team.close()
    runtime.kill(team.hub)


# -- an agent goes on with a stored session -------------------------------------------------------------
async def test_use_session_continues_a_stored_session_in_a_new_agent(tmp_path):
    from raygent.actors.agent import Agent
    from raygent.llm_pool.scripted import ScriptedChatModel

    path = tmp_path / "m.sqlite"
    first = Agent(ScriptedChatModel(["4 apples."]), memory=str(path), session_id="shop-1")
    assert (await first.run("How many apples?")).answer == "4 apples."

    llm = ScriptedChatModel(["You asked about apples."])
    restarted = Agent(llm, memory=str(path))  # as Ray rebuilds an actor: no session id
    assert await restarted.get_session_id() != "shop-1"
    assert await restarted.use_session("shop-1") == "shop-1"
    assert (await restarted.run("What did I ask?")).answer == "You asked about apples."
    seen = [m.content for m in llm.requests[0]["messages"] if m.role != "system"]
    assert seen == ["How many apples?", "4 apples.", "What did I ask?"]
    await restarted.use_session("shop-1")  # already there: nothing changes
    assert len(restarted.history) == 4
    with pytest.raises(ValueError, match="no memory"):
        await Agent(ScriptedChatModel([])).use_session("x")
    json.dumps(seen)


# -- a retried turn is stored once ------------------------------------------------------------------------
TOOL_42 = ("tool", '{"expression": "6*7", "result": 42}', False)


async def _stored(path, session_id):
    from raygent.memory.sqlite_store import SQLiteMemoryStore

    return [(r.message.role, r.message.content, bool(r.message.tool_calls))
            for r in await SQLiteMemoryStore(path).records(session_id)]


async def test_a_retried_turn_goes_on_from_what_its_first_try_stored(tmp_path):
    """The first try dies after the tool ran (its model is gone); the retry, with the same run id on a
    new agent, stores no second user message and answers from the stored tool result."""
    from raygent.actors.agent import Agent
    from raygent.llm_pool.scripted import ScriptedChatModel

    path = tmp_path / "m.sqlite"
    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
    first = Agent(ScriptedChatModel([call]), tools=_calculator(), memory=str(path), session_id="s-1")
    broken = await first.run("What is 6*7?", run_id="turn-1")
    assert broken.error and "scripted model has only 1 replies" in broken.error
    assert await _stored(path, "s-1") == [("user", "What is 6*7?", False), ("assistant", None, True),
                                          TOOL_42]

    llm = ScriptedChatModel(["It is 42."])
    retry = Agent(llm, tools=_calculator(), memory=str(path))
    await retry.use_session("s-1")
    result = await retry.run("What is 6*7?", run_id="turn-1")
    assert result.answer == "It is 42." and not result.error
    # the model saw the stored turn: the question once, the call and its result
    seen = [(m.role, m.content) for m in llm.requests[0]["messages"] if m.role != "system"]
    assert seen == [("user", "What is 6*7?"), ("assistant", None), ("tool", TOOL_42[1])]
    assert await _stored(path, "s-1") == [("user", "What is 6*7?", False), ("assistant", None, True),
                                          TOOL_42, ("assistant", "It is 42.", False)]


async def test_a_retried_turn_that_had_finished_returns_its_stored_answer(tmp_path):
    """The first try finished but its caller never heard (the actor died on the way back): the retry
    returns the stored answer without asking the model again; a new run id is a new turn."""
    from raygent.actors.agent import Agent
    from raygent.llm_pool.scripted import ScriptedChatModel

    path = tmp_path / "m.sqlite"
    first = Agent(ScriptedChatModel(["4 apples."]), memory=str(path), session_id="shop-2")
    assert (await first.run("How many apples?", run_id="turn-a")).answer == "4 apples."

    llm = ScriptedChatModel(["Still 4."])
    retry = Agent(llm, memory=str(path))
    await retry.use_session("shop-2")
    again = await retry.run("How many apples?", run_id="turn-a")
    assert again.answer == "4 apples." and again.steps == 0 and not llm.requests
    assert len(await _stored(path, "shop-2")) == 2
    assert (await retry.run("How many apples?", run_id="turn-b")).answer == "Still 4."
    assert [c for _, c, _ in await _stored(path, "shop-2")] == ["How many apples?", "4 apples.",
                                                                 "How many apples?", "Still 4."]


def _calculator():
    from raygent.toolhub.builtin import default_tools

    return [t for t in default_tools() if t.spec.name == "calculator"]


# -- an idempotent call is retried once the restarted hub answers ---------------------------------------
class _SlowRestartHub:
    """A hub actor's proxy whose first call dies with the actor, which then takes `down_s` to restart
    (calls meanwhile fail with "the actor is restarting", as Ray answers them)."""

    def __init__(self, hub, down_s: float):
        self.hub = hub
        self.down_s = down_s
        self.until: float | None = None
        self.calls = 0

    def _check(self) -> None:
        import time

        from ray.exceptions import ActorUnavailableError

        if self.until is not None and time.monotonic() < self.until:
            raise ActorUnavailableError("The actor is temporarily unavailable: IOError: The actor is restarting.",
                                        None)

    async def info(self):
        self._check()
        return await self.hub.info()

    async def list_specs(self):
        self._check()
        return await self.hub.list_specs()

    async def call_wire(self, calls, context=None):
        import time

        from ray.exceptions import ActorDiedError

        self.calls += 1
        if self.calls == 1:
            self.until = time.monotonic() + self.down_s
            raise ActorDiedError()
        self._check()
        return await self.hub.call_wire(calls, context)


async def test_an_idempotent_call_waits_for_a_slow_hub_restart_before_retrying():
    import time

    from raygent.toolhub.builtin import CalculatorTool
    from raygent.toolhub.hub import HubClient, ToolHub

    proxy = _SlowRestartHub(ToolHub("math", [CalculatorTool()]), down_s=1.5)
    client = HubClient(proxy, retries=2, retry_delay_s=0.05)
    await client._flags()  # known before the crash, as after any earlier call's crash
    t0 = time.monotonic()
    result = await client.call("calculator", {"expression": "6*7"})
    # before: both retries (after 0.05 and 0.1 s) met the restarting actor and the call failed
    assert result.error is None and result.output == {"expression": "6*7", "result": 42}, result.error
    assert time.monotonic() - t0 >= 1.4 and proxy.calls >= 2
