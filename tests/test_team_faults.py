"""Faults with real Ray actors: a hub killed mid-conversation restarts and replays what was not
acknowledged; a writer killed mid-story is restarted and the story completes with every page, each
message handled once; a cancelled story stops every agent and its partial book says what is missing."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

import team_models
from _redis_server import redis_server  # noqa: F401  (the session fixture)
from raygent import runtime
from raygent.actors.coordinator import AgentRole
from raygent.actors.team import Team
from raygent.apps.story.studio import StoryRequest, StoryStudio


@pytest.fixture(scope="module")
def pickled_by_value(ray_cluster):
    """Ray workers cannot import the tests folder: ship the test models by value."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(team_models)
    yield
    ray.cloudpickle.unregister_pickle_by_value(team_models)


async def wait_until(predicate, timeout_s: float = 30.0, every_s: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            if await predicate():
                return True
        except Exception:
            pass
        await asyncio.sleep(every_s)
    return False


@pytest.mark.ray
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_hub_killed_mid_conversation_restarts_and_replays(pickled_by_value, tmp_path, backend, request):
    """The hub actor dies while writers work; Ray restarts it and it reloads its log (SQLite on this
    machine, or Redis Streams, the log a hub restarted on another node would find)."""
    room = f"hubkill-{uuid.uuid4().hex[:6]}"
    if backend == "redis":
        from raygent.actors.redis_log import RedisStreamsLog

        log = RedisStreamsLog(request.getfixturevalue("redis_server"), shard=room)
    else:
        log = str(tmp_path / "hub.sqlite")
    team = Team(room=room, remote=True, log=log, timeout_s=90)
    await team.add(AgentRole(name="writer", llm=team_models.StoryRulesModel(page_delay_s=0.6), replicas=2,
                             max_steps=1))
    tasks = {f"Write page {i} of 6. What happens: part {i}": i for i in range(1, 7)}
    pending = asyncio.ensure_future(team.fan_out([("writer", t) for t in tasks]))
    await asyncio.sleep(0.8)  # the first pages are being written
    pid_before = await team.hub.stats()
    runtime.kill(team.hub, no_restart=False)  # the hub's process dies; Ray starts it again
    turns = await asyncio.wait_for(pending, 90)
    assert sorted(t.text for t in turns) == sorted(f"Page {i}: part {i}." for i in range(1, 7))
    stats = await team.hub.stats()
    assert stats["redelivered"] >= 1 or stats["log"]["appended"] > pid_before["log"]["appended"]
    assert await wait_until(lambda: _settled(team))
    members = (await team.stats())["members"]["writer"]
    assert sum(m["handled"] for m in members) == 6  # each page written once, despite the replay
    await team.close()


async def _settled(team: Team) -> bool:
    log = (await team.hub.stats())["log"]
    return log["unacked"] == 0


@pytest.mark.ray
async def test_writer_killed_mid_story_story_completes_each_message_once(pickled_by_value, tmp_path):
    llm = team_models.StoryRulesModel(delay_s=0.05, page_delay_s=1.5)
    studio = StoryStudio(llm=llm, writers=2, remote=True, log=str(tmp_path / "story-hub.sqlite"), timeout_s=120)
    killed: list[str] = []

    async def kill_a_busy_writer():
        while studio.team is None or "writer" not in studio.team.members:
            await asyncio.sleep(0.05)
        writer = studio.team.members["writer"][0]

        async def busy():
            return (await writer.stats()).in_flight > 0
        assert await wait_until(busy, 60, 0.02)
        runtime.kill(writer, no_restart=False)
        killed.append("writer#0")

    killer = asyncio.ensure_future(kill_a_busy_writer())
    result = await studio.make(StoryRequest(topic="sharing berries", pages=4), tmp_path / "book")
    await killer
    assert killed == ["writer#0"]
    book = result.book
    assert [p.text for p in book.pages] == [f"Page {i}: step {i} of sharing berries." for i in range(1, 5)]
    assert book.complete and not book.problems, book.missing
    manifest = json.loads(result.bound.manifest.read_text())
    assert [p["text"] for p in manifest["pages"]] == [p.text for p in book.pages]
    # each message handled once: the log holds each envelope once and every one was acknowledged
    log = studio.last_hub_stats["log"]
    assert log["unacked"] == 0 and log["appended"] == log["acked"]
    assert studio.last_hub_stats["duplicates"] == 0


async def test_cancelled_story_stops_every_agent_and_the_book_says_what_is_missing(tmp_path):
    llm = team_models.StoryRulesModel(delay_s=0.05, page_delay_s=30)
    studio = StoryStudio(llm=llm, writers=2, log=":memory:", timeout_s=120)
    result = await asyncio.wait_for(
        studio.make(StoryRequest(topic="a stormy night", pages=3), tmp_path / "book", cancel_after_s=1.5), 60)
    book = result.book
    assert book.cancelled and "cancelled after 2 s" in (book.cancel_reason or "")
    assert all(p.text is None for p in book.pages)
    assert [m for m in book.missing if "text" in m] == [f"page {i}: text" for i in (1, 2, 3)]
    html = result.bound.html.read_text()
    assert "cancelled" in html.lower() and "page 1: text" in html
    manifest = json.loads(result.bound.manifest.read_text())
    assert manifest["cancelled"] is True and "page 2: text" in manifest["missing"]
    members = studio.last_member_stats
    assert all(not s["running"] and s["in_flight"] == 0 for ss in members.values() for s in ss)
