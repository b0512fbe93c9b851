"""What only RedisMemoryStore does (the shared behaviour is in test_memory_store.py): replicas on
several nodes appending to one session, a store re-created from its pickle on another node, agents
continuing each other's sessions, retried appends applied once, and clear errors. A real redis-server."""

from __future__ import annotations

import asyncio
import logging
import pickle
import random
import sys
import uuid

import pytest
from _local_servers import free_port
from _redis_server import RedisServer, redis_server  # noqa: F401  (the session fixture)

from raygent.actors.agent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.memory import RedisMemoryStore, SQLiteMemoryStore, open_memory_store
from raygent.schema import Message
from raygent.toolhub.base import tool


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def test_two_stores_appending_to_one_session_get_gapless_numbers(redis_server, prefix):
    """Two store objects (two connections, as two processes or nodes) append batches of 1-4
    messages at once: every message gets its own number, 0..N-1, and each batch is contiguous."""
    stores = [RedisMemoryStore(redis_server, prefix=prefix) for _ in range(2)]
    rng = random.Random(7)
    batches = [[Message.user(f"w{w}-b{b}-m{m}") for m in range(rng.randint(1, 4))] for w in range(2) for b in range(60)]

    async def writer(w: int) -> list[tuple[list[int], list[Message]]]:
        mine = batches[w * 60:(w + 1) * 60]
        seqs = await asyncio.gather(*(stores[w].append_many("shared", batch) for batch in mine))
        return list(zip(seqs, mine))

    done = [pair for pairs in await asyncio.gather(writer(0), writer(1)) for pair in pairs]
    total = sum(len(b) for b in batches)
    recs = await stores[0].records("shared")
    assert [r.seq for r in recs] == list(range(total))
    for seqs, batch in done:
        assert seqs == list(range(seqs[0], seqs[0] + len(batch)))  # a batch is never interleaved
        assert [recs[s].message for s in seqs] == batch
    assert (await stores[1].get_session("shared")).message_count == total
    for s in stores:
        await s.close()


async def test_a_store_recreated_from_its_pickle_sees_everything(redis_server, prefix):
    store = RedisMemoryStore(f"{redis_server}", prefix=prefix)
    await store.create_session("ann", {"user": "ann", "tags": ["a"]})
    await store.append_many("ann", [Message.user("hello"), Message.assistant("hi ann")])
    await store.append("bob", Message.user("hey"))
    blob = pickle.dumps(store)
    assert b"Redis(" not in blob and len(blob) < 300  # configuration only, no connection
    await store.close()

    moved = pickle.loads(blob)  # as an actor restarted on another node
    assert (moved.url, moved.prefix) == (redis_server, prefix)
    assert [m.content for m in await moved.load("ann")] == ["hello", "hi ann"]
    ann = await moved.get_session("ann")
    assert ann.metadata == {"user": "ann", "tags": ["a"]} and ann.message_count == 2
    assert [s.id for s in await moved.list_sessions()] == ["bob", "ann"]
    assert await moved.append("ann", Message.user("again")) == 2  # numbering goes on
    assert [s.id for s in await moved.list_sessions(limit=1)] == ["ann"]
    await moved.close()


async def test_delete_removes_every_key_and_prefixes_are_separate(redis_server, prefix):
    import redis.asyncio as aioredis

    store, other = RedisMemoryStore(redis_server, prefix=prefix), RedisMemoryStore(redis_server, prefix=prefix + "x")
    await store.create_session("gone", {"k": 1})
    await store.append_many("gone", [Message.user("a"), Message.user("b")])
    await other.append("gone", Message.user("elsewhere"))
    raw = aioredis.Redis.from_url(redis_server, decode_responses=True)
    keys = {k async for k in raw.scan_iter(match=f"{{{prefix}}}:*")}
    assert {f"{{{prefix}}}:session:gone", f"{{{prefix}}}:messages:gone", f"{{{prefix}}}:recent"} <= keys
    assert await store.delete_session("gone") is True
    left = {k async for k in raw.scan_iter(match=f"{{{prefix}}}:*")}
    assert not [k for k in left if not k.startswith(f"{{{prefix}}}:op:")]  # only append tokens, which expire
    assert left and all([0 < await raw.ttl(k) <= 60 for k in left])
    assert await store.list_sessions() == [] and await store.load("gone") == []
    assert [m.content for m in await other.load("gone")] == ["elsewhere"]
    await raw.aclose()
    await store.close()
    await other.close()


async def test_a_retried_append_is_applied_once(redis_server, prefix):
    """redis-py resends a command whose connection dropped; the server may have run it already.
    The append's token makes the resend return the first call's numbers and store nothing."""
    store = RedisMemoryStore(redis_server, prefix=prefix)
    await store.append("s", Message.user("before"))
    bodies = [Message.user(t).model_dump_json(exclude_defaults=True) for t in ("one", "two")]
    assert await store._append("s", bodies, "tok-1") == 1
    assert await store._append("s", bodies, "tok-1") == 1  # the resend
    assert await store._append("s", bodies[:1], "tok-2") == 3
    assert [m.content for m in await store.load("s")] == ["before", "one", "two", "one"]
    assert (await store.get_session("s")).message_count == 4
    await store.close()


@tool
def stock(item: str) -> dict:
    """Look an item up in the stock list."""
    return {"item": item, "count": len(item)}


def call(name: str, **args) -> str:
    import json

    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


async def test_agent_replicas_continue_one_session(redis_server, prefix):
    """Two Agent objects with their own store objects (replicas on two nodes) take turns in one
    session: each sees everything the other stored."""
    store = RedisMemoryStore(redis_server, prefix=prefix)
    llm_a = ScriptedChatModel([call("stock", item="pears"), "There are 5 pears.", "Still 5 pears."])
    replica_a = Agent(llm=llm_a, tools=[stock], memory=store, session_id="shop-9")
    assert (await replica_a.run("How many pears?")).answer == "There are 5 pears."

    llm_b = ScriptedChatModel(["You asked about pears."])
    store_b = pickle.loads(pickle.dumps(store))
    replica_b = Agent(llm=llm_b, tools=[stock], memory=store_b, session_id="shop-9")
    assert (await replica_b.run("What did I ask?")).answer == "You asked about pears."
    seen_b = [m.content for m in llm_b.requests[0]["messages"][1:]]
    assert seen_b[0] == "How many pears?" and seen_b[-2] == "There are 5 pears." and seen_b[-1] == "What did I ask?"

    assert (await replica_a.run("And now?")).answer == "Still 5 pears."  # A catches up with B's turn
    seen_a = [m.content for m in llm_a.requests[-1]["messages"][1:]]
    assert seen_a[-3:] == ["What did I ask?", "You asked about pears.", "And now?"]
    stored = await store_b.load("shop-9")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant", "user", "assistant", "user",
                                        "assistant"]
    assert stored[2].tool_call_id == stored[1].tool_calls[0].id
    await store.close()
    await store_b.close()


def test_one_store_object_serves_successive_event_loops(redis_server, prefix):
    """A redis.asyncio client belongs to one loop; `Agent.run_sync` runs each turn in a new one
    (asyncio.run), so the store makes a client per loop, closed when that loop shuts down."""
    store = RedisMemoryStore(redis_server, prefix=prefix)
    agent = Agent(llm=ScriptedChatModel(["first answer", "second answer"]), memory=store, session_id="sync")
    assert agent.run_sync("first?").answer == "first answer"
    assert agent.run_sync("second?").answer == "second answer"
    assert [m.content for m in asyncio.run(store.load("sync"))] == ["first?", "first answer", "second?",
                                                                    "second answer"]
    asyncio.run(store.close())


async def test_unreachable_url_is_a_clear_error():
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    store = RedisMemoryStore(url, connect_timeout=2)
    with pytest.raises(ConnectionError) as info:
        await store.append("s", Message.user("lost?"))
    message = str(info.value)
    assert url.replace("secret", "***") in message and "secret" not in message
    assert "apt-get install redis-server" in message and "RedisMemoryStore(url=" in message
    assert "secret" not in repr(store)
    with pytest.raises(ConnectionError, match="no Redis server answers"):
        await store.list_sessions()
    await store.close()


def test_missing_client_library_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'raygent\[redis\]'"):
        RedisMemoryStore("redis://127.0.0.1:1/0")


async def test_a_server_that_persists_nothing_is_warned_about(caplog):
    with RedisServer(persist=False) as server:
        store = RedisMemoryStore(server.url)
        with caplog.at_level(logging.WARNING, logger="raygent.memory.redis_store"):
            await store.append("s", Message.user("x"))
            await store.append("s", Message.user("y"))
        warnings = [r.getMessage() for r in caplog.records if "appendonly" in r.getMessage()]
        assert len(warnings) == 1 and server.url in warnings[0]
        await store.close()


def test_open_memory_store_picks_the_backend_from_the_url(redis_server, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYGENT_MEMORY_DB", str(tmp_path / "default.sqlite"))
    default = open_memory_store(None)
    assert isinstance(default, SQLiteMemoryStore) and default.path == str(tmp_path / "default.sqlite")
    by_url = open_memory_store(f"sqlite://{tmp_path}/m.sqlite")
    assert isinstance(by_url, SQLiteMemoryStore) and by_url.path == str(tmp_path / "m.sqlite")
    assert open_memory_store(tmp_path / "p.sqlite").path == str(tmp_path / "p.sqlite")
    on_redis = open_memory_store(redis_server, prefix="p")
    assert isinstance(on_redis, RedisMemoryStore) and (on_redis.url, on_redis.prefix) == (redis_server, "p")
    with pytest.raises(ValueError, match="unsupported memory store URL"):
        open_memory_store("postgres://db/x")


async def test_store_as_ray_actor(ray_cluster, redis_server, prefix):
    """Sent to Ray actors by pickling (or built there from init_kwargs), stores in several actors
    and this process share sessions."""
    from raygent import runtime

    local = RedisMemoryStore(redis_server, prefix=prefix)
    actors = [runtime.deploy(local, remote=True),
              runtime.deploy(RedisMemoryStore, remote=True, init_kwargs={"url": redis_server, "prefix": prefix})]
    try:
        await asyncio.gather(*(actors[i % 2].append("remote", Message.user(f"m{i}")) for i in range(20)),
                             *(local.append("remote", Message.user(f"l{i}")) for i in range(10)))
        recs = await actors[1].records("remote")
        assert [r.seq for r in recs] == list(range(30))
        assert sorted(r.message.content for r in recs) == sorted([f"m{i}" for i in range(20)] +
                                                                 [f"l{i}" for i in range(10)])
        assert (await actors[0].get_session("remote")).message_count == 30
    finally:
        for a in actors:
            runtime.kill(a)
        await local.close()
