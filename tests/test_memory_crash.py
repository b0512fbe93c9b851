"""Crash resume: the coordinator (an Agent actor) dies in the middle of a multi-turn session; a new
one with the same session id continues with the complete history, nothing written is lost."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from raygent import runtime
from raygent.actors.agent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.memory import SQLiteMemoryStore
from raygent.memory.session import INTERRUPTED
from raygent.toolhub.base import tool

pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def _ship_this_module(ray_cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the tools below run inside actors
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@tool
def stock(item: str) -> dict:
    """How many of an item are in stock."""
    return {"item": item, "count": len(item) + 1}


@tool
async def write_report(marker: str) -> str:
    """Write the stock report (slow)."""
    Path(marker).write_text(str(os.getpid()))  # tells the test the call is under way
    await asyncio.sleep(120)
    return "report written"


@tool
def restart_service(name: str) -> str:
    """Restart a service (kills the process running it: this is the crash)."""
    os._exit(17)


def call(tool_name: str, **args) -> str:
    return f'<tool_call>\n{json.dumps({"name": tool_name, "arguments": args})}\n</tool_call>'


def _roles(messages) -> list[str]:
    return [m.role for m in messages]


async def test_coordinator_killed_mid_turn_resumes_with_complete_history(tmp_path):
    """ray.kill of the coordinator while a tool call is in flight; store as its own actor."""
    store = runtime.deploy(SQLiteMemoryStore, remote=True, init_kwargs={"path": str(tmp_path / "m.sqlite")})
    marker = tmp_path / "report.started"
    llm = runtime.deploy(ScriptedChatModel, [call("stock", item="apples"), "7 apples.",
                                             call("stock", item="pears"), "6 pears.",
                                             call("write_report", marker=str(marker))], remote=True)
    coordinator = runtime.deploy(Agent, remote=True, max_restarts=0, init_kwargs=dict(
        llm=llm, tools=[stock, write_report], memory=store, session_id="shop-42"))
    assert (await coordinator.run("How many apples?")).answer == "7 apples."
    assert (await coordinator.run("And pears?")).answer == "6 pears."
    in_flight = asyncio.ensure_future(coordinator.run("Write the report."))
    for _ in range(300):
        if marker.exists():
            break
        await asyncio.sleep(0.05)
    assert marker.exists(), "the report tool never started"
    before = await store.load("shop-42")
    runtime.kill(coordinator)  # the coordinator dies with a tool call in flight
    with pytest.raises(Exception) as died:
        await in_flight
    assert "Actor" in type(died.value).__name__ or "died" in str(died.value).lower()

    after = await store.load("shop-42")
    assert after == before  # nothing written before the kill was lost
    assert _roles(after) == ["user", "assistant", "tool", "assistant"] * 2 + ["user", "assistant"]
    assert after[-2].content == "Write the report." and after[-1].tool_calls[0].name == "write_report"

    llm2 = runtime.deploy(ScriptedChatModel, ["The report was interrupted; stock: 7 apples, 6 pears."], remote=True)
    successor = runtime.deploy(Agent, remote=True, max_restarts=0, init_kwargs=dict(
        llm=llm2, tools=[stock, write_report], memory=store, session_id="shop-42"))
    result = await successor.run("Where were we?")
    assert result.answer.startswith("The report was interrupted")
    seen = (await llm2.get_requests())[0]["messages"]
    assert [m.content for m in seen[1:11]] == [m.content for m in after]  # the complete history, in order
    assert seen[11].role == "tool" and seen[11].content == INTERRUPTED  # the open call was closed
    assert seen[11].tool_call_id == after[-1].tool_calls[0].id and seen[12].content == "Where were we?"
    assert len(await store.load("shop-42")) == 13  # + interrupted result, user, answer
    for a in (store, llm, llm2, successor):
        runtime.kill(a)


async def test_coordinator_process_exits_mid_turn_and_its_restart_continues(tmp_path):
    """os._exit inside the coordinator's process; Ray restarts the actor (same session id) and the
    restarted coordinator continues from the SQLite file."""
    path = tmp_path / "m.sqlite"
    llm = runtime.deploy(ScriptedChatModel, [call("stock", item="kiwis"), "6 kiwis.",
                                             call("restart_service", name="db"),
                                             "The restart crashed; you had 6 kiwis."], remote=True)
    coordinator = runtime.deploy(Agent, remote=True, max_restarts=1, init_kwargs=dict(
        llm=llm, tools=[stock, restart_service], memory=str(path), session_id="ops-7"))
    pid = await coordinator.actor_handle.ping.remote()
    assert await coordinator.get_session_id() == "ops-7"
    assert (await coordinator.run("Kiwis?")).answer == "6 kiwis."
    with pytest.raises(Exception):
        await coordinator.run("Restart the db.")  # the process exits inside the tool call
    store = SQLiteMemoryStore(path)
    stored = await store.load("ops-7")
    assert _roles(stored) == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    deadline = time.time() + 60
    while True:  # Ray restarts the actor in a new process
        try:
            new_pid = await coordinator.actor_handle.ping.remote()
            break
        except Exception:
            if time.time() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert new_pid != pid
    result = await coordinator.run("What happened?")
    assert result.answer == "The restart crashed; you had 6 kiwis."
    seen = (await llm.get_requests())[-1]["messages"]
    assert [m.content for m in seen[1:7]] == [m.content for m in stored]
    assert seen[7].content == INTERRUPTED and seen[8].content == "What happened?"
    assert len(await store.load("ops-7")) == 9
    await store.close()
    for a in (llm, coordinator):
        runtime.kill(a)
