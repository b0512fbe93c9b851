"""The MessageLog behaviour every hub backend must have, on SQLiteLog (a file) and RedisStreamsLog
(a real redis-server), plus what only the Redis log does: taking over a dead hub's pending entries."""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from _redis_server import redis_server  # noqa: F401  (the session fixture)

from raygent.actors.log import MessageLog, SQLiteLog
from raygent.actors.redis_log import GROUP, RedisStreamsLog
from raygent.schema import Artifact, Envelope, Message, ToolCall

REPO = Path(__file__).resolve().parents[1]


def env(sender: str, recipient: str, text: str, **fields) -> Envelope:
    return Envelope(sender=sender, recipient=recipient, content=Message.user(text), **fields)


@pytest.fixture(params=["sqlite", "redis"])
def make_log(request, tmp_path):
    """A factory of log objects on one store: each call is a new object (a restarted hub)."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"

        def make(consumer: str | None = None) -> MessageLog:
            return SQLiteLog(path)
    else:
        url = request.getfixturevalue("redis_server")
        shard = f"t-{uuid.uuid4().hex[:8]}"

        def make(consumer: str | None = None) -> MessageLog:
            return RedisStreamsLog(url, shard=shard, consumer=consumer)
    return make


@pytest.fixture
async def open_log(make_log):
    """open_log(consumer=None) -> an opened log; every one still open is closed after the test."""
    opened: list[MessageLog] = []

    async def factory(consumer: str | None = None) -> MessageLog:
        log = make_log(consumer)
        await log.open()
        opened.append(log)
        return log

    yield factory
    for log in opened:
        await log.close()


async def test_append_dedupes_per_recipient(open_log):
    log = await open_log()
    a, b = env("u", "bob", "one"), env("u", "bob", "two")
    assert isinstance(log, MessageLog)
    assert await log.append([("bob", a), ("bob", b), ("carol", a)]) == [True, True, True]
    assert await log.append([("bob", a)]) == [False]
    c = env("u", "bob", "three")
    assert await log.append([("bob", c), ("bob", c), ("dave", c)]) == [True, False, True]
    assert await log.append([]) == []
    assert await log.counts() == {"appended": 5, "acked": 0, "unacked": 5}


async def test_ack_counts_and_ignores_unknown_ids(open_log):
    log = await open_log()
    envs = [env("u", "bob", f"m{i}") for i in range(4)]
    await log.append([("bob", e) for e in envs] + [("carol", envs[0])])
    assert await log.ack("bob", [envs[0].id, envs[1].id, "no-such-id"]) == 2
    assert await log.ack("bob", [envs[0].id]) == 0  # already acked
    assert await log.ack("nobody", [envs[2].id]) == 0  # unknown recipient
    assert await log.ack("bob", []) == 0
    assert await log.counts() == {"appended": 5, "acked": 2, "unacked": 3}
    assert await log.append([("bob", envs[0])]) == [False]  # acked ids stay deduped
    assert await log.unacked() == [("bob", envs[2]), ("bob", envs[3]), ("carol", envs[0])]


async def test_unacked_keeps_append_order(open_log):
    log = await open_log()
    pairs = [(f"r{i % 3}", env("u", f"r{i % 3}", f"m{i}")) for i in range(12)]
    await log.append(pairs[:5])
    await log.append(pairs[5:])
    await log.ack("r1", [pairs[1][1].id, pairs[7][1].id])
    expected = [p for i, p in enumerate(pairs) if i not in (1, 7)]
    assert await log.unacked() == expected
    assert await log.unacked() == expected  # reading does not consume


async def test_restart_returns_exactly_the_unacked(open_log):
    first = await open_log("hub-a")
    rich = Envelope(sender="planner", recipient="writer", room="story-7", reply_to="planner", correlation_id="c1",
                    attempt=2, headers={"k": [1, 2.5, None], "unicode": "ünïcode 字"},
                    content=Message.assistant("calling", tool_calls=[ToolCall(name="draw", arguments={"x": 1})]),
                    artifacts=[Artifact(kind="image", uri="file:///tmp/a.png", size_bytes=12, metadata={"w": 3})])
    pairs = [("writer", rich)] + [(f"r{i % 2}", env("u", f"r{i % 2}", f"m{i}")) for i in range(6)]
    await first.append(pairs)
    await first.ack("r0", [pairs[1][1].id])
    await first.close()  # the hub goes away without acking the rest

    second = await open_log("hub-b")
    recovered = await second.unacked()
    assert recovered == [p for i, p in enumerate(pairs) if i != 1]
    assert recovered[0][1].model_dump() == rich.model_dump()
    assert await second.append([pairs[2]]) == [False]
    assert await second.ack("r1", [pairs[2][1].id, pairs[4][1].id]) == 2
    assert await second.ack("writer", [rich.id]) == 1
    assert await second.counts() == {"appended": 7, "acked": 4, "unacked": 3}
    await second.close()

    third = await open_log("hub-c")
    assert await third.unacked() == [pairs[3], pairs[5], pairs[6]]
    assert await third.ack("r0", [pairs[3][1].id, pairs[5][1].id]) == 2
    assert await third.ack("r1", [pairs[6][1].id]) == 1
    assert await third.unacked() == []
    assert await third.counts() == {"appended": 7, "acked": 7, "unacked": 0}


async def test_subscriptions_keep_order_and_persist(open_log):
    log = await open_log()
    for topic, recipient in [("news", "a"), ("news", "b"), ("art", "c"), ("news", "a"), ("news", "c")]:
        await log.subscribe(topic, recipient)
    assert await log.subscriptions() == {"news": ["a", "b", "c"], "art": ["c"]}
    await log.unsubscribe("news", "b")
    await log.unsubscribe("news", "nobody")
    await log.subscribe("news", "b")  # back at the end
    await log.close()
    again = await open_log("other")
    assert await again.subscriptions() == {"news": ["a", "c", "b"], "art": ["c"]}
    await again.unsubscribe("art", "c")
    assert await again.subscriptions() == {"news": ["a", "c", "b"]}


async def test_cancelled_rooms_persist(open_log):
    log = await open_log()
    assert await log.cancelled_rooms() == {}
    await log.cancel_room("r1", "user stop")
    await log.cancel_room("r2", "budget")
    await log.cancel_room("r1", "user stop again")
    await log.close()
    again = await open_log("other")
    assert await again.cancelled_rooms() == {"r1": "user stop again", "r2": "budget"}


async def test_concurrent_appends_store_each_once(open_log):
    log = await open_log()
    tasks, per_task = 50, 20
    sent = {k: [env(f"s{k}", f"r{k % 5}", f"{k}-{i}") for i in range(per_task)] for k in range(tasks)}

    async def sender(k: int) -> list[bool]:
        flags = []
        for i, e in enumerate(sent[k]):
            flags += await log.append([(e.recipient, e)])
            if i % 7 == 0:
                await asyncio.sleep(0)
        flags += await log.append([(e.recipient, e) for e in sent[k][:5]])  # a retry: all duplicates
        return flags

    results = await asyncio.gather(*(sender(k) for k in range(tasks)))
    assert all(flags == [True] * per_task + [False] * 5 for flags in results)
    assert await log.counts() == {"appended": tasks * per_task, "acked": 0, "unacked": tasks * per_task}
    recovered = await log.unacked()
    assert len(recovered) == tasks * per_task
    assert len({(r, e.id) for r, e in recovered}) == tasks * per_task
    for k in range(tasks):  # each sender's envelopes in the order it sent them
        assert [e for r, e in recovered if e.sender == f"s{k}"] == sent[k]
        assert all(r == f"r{k % 5}" for r, e in recovered if e.sender == f"s{k}")


async def test_large_batch_round_trips(open_log):
    log = await open_log("big-1")
    pairs = [(f"r{i % 3}", env("u", f"r{i % 3}", f"m{i} " + "x" * 200)) for i in range(2000)]
    assert await log.append(pairs) == [True] * 2000
    assert await log.append(pairs) == [False] * 2000
    await log.close()
    again = await open_log("big-2")
    assert await again.unacked() == pairs
    acked = 0
    for r in ("r0", "r1", "r2"):
        acked += await again.ack(r, [e.id for rr, e in pairs if rr == r])
    assert acked == 2000
    assert await again.unacked() == []
    assert await again.counts() == {"appended": 2000, "acked": 2000, "unacked": 0}


async def test_log_pickles_by_configuration(open_log):
    log = await open_log()
    await log.append([("bob", env("u", "bob", "hi"))])
    copy = pickle.loads(pickle.dumps(log))
    assert repr(copy) == repr(log)
    await copy.open()
    try:
        assert await copy.counts() == {"appended": 1, "acked": 0, "unacked": 1}
    finally:
        await copy.close()


# -- Redis only ----------------------------------------------------------------------------------

_DYING_HUB = """
import asyncio, os, sys
from raygent.actors.redis_log import RedisStreamsLog
from raygent.schema import Envelope, Message

async def main():
    log = RedisStreamsLog(sys.argv[1], shard=sys.argv[2], consumer="hub-dead")
    await log.open()
    envs = [Envelope(id=f"e{i}", sender="u", recipient=f"r{i % 2}", content=Message.user(str(i)))
            for i in range(10)]
    assert await log.append([(e.recipient, e) for e in envs]) == [True] * 10
    assert await log.ack("r0", ["e0", "e2"]) == 2
    assert await log.ack("r1", ["e1"]) == 1
    os._exit(0)  # dies: no close, the rest stays pending on hub-dead

asyncio.run(main())
"""


async def test_redis_takes_over_a_dead_hubs_pending_entries(redis_server):  # noqa: F811
    shard = f"t-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_DYING_HUB), redis_server, shard],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    log = RedisStreamsLog(redis_server, shard=shard, consumer="hub-new")
    await log.open()
    try:
        r = log.redis
        pending = await r.xpending(log.stream_key("r0"), GROUP)
        assert pending["pending"] == 3 and pending["consumers"] == [{"name": "hub-dead", "pending": 3}]

        recovered = await log.unacked()
        assert [(rec, e.id) for rec, e in recovered] == [(f"r{i % 2}", f"e{i}") for i in range(3, 10)]
        for rec in ("r0", "r1"):
            info = await r.xpending(log.stream_key(rec), GROUP)
            assert info["consumers"] == [{"name": "hub-new", "pending": info["pending"]}]
            names = [c["name"] for c in await r.xinfo_consumers(log.stream_key(rec), GROUP)]
            assert names == ["hub-new"]  # the dead hub's consumer is forgotten

        assert await log.ack("r0", ["e4", "e6", "e8"]) == 3
        assert await log.ack("r1", ["e3", "e5", "e7", "e9"]) == 4
        for rec in ("r0", "r1"):
            assert (await r.xpending(log.stream_key(rec), GROUP))["pending"] == 0
            assert await r.xlen(log.stream_key(rec)) == 0  # acked entries leave the stream
        assert await log.counts() == {"appended": 10, "acked": 10, "unacked": 0}
    finally:
        await log.close()


async def test_redis_returns_entries_never_read_into_the_group(redis_server):  # noqa: F811
    log = RedisStreamsLog(redis_server, shard=f"t-{uuid.uuid4().hex[:8]}", consumer="hub-1")
    await log.open()
    try:
        first, late = env("u", "bob", "first"), env("u", "bob", "late")
        await log.append([("bob", first)])
        # a writer that added an entry (in the log's own format) and died before reading it
        r = log.redis
        seq = await r.hincrby(log._key("counts"), "appended", 1)
        sid = await r.xadd(log.stream_key("bob"), {"id": late.id, "seq": seq, "body": late.model_dump_json()})
        await r.hset(log.ids_key("bob"), late.id, sid)
        assert (await r.xpending(log.stream_key("bob"), GROUP))["pending"] == 1

        assert await log.unacked() == [("bob", first), ("bob", late)]
        assert (await r.xpending(log.stream_key("bob"), GROUP))["pending"] == 2  # read now
        assert await log.ack("bob", [first.id, late.id]) == 2
        assert await log.unacked() == []
    finally:
        await log.close()


async def test_redis_reloads_scripts_the_server_lost(redis_server):  # noqa: F811
    log = RedisStreamsLog(redis_server, shard=f"t-{uuid.uuid4().hex[:8]}")
    await log.open()
    try:
        await log.redis.script_flush()
        e = env("u", "bob", "hi")
        assert await log.append([("bob", e)]) == [True]
        await log.redis.script_flush()
        assert await log.ack("bob", [e.id]) == 1
    finally:
        await log.close()


async def test_redis_pickled_log_is_a_new_consumer(redis_server):  # noqa: F811
    named = RedisStreamsLog(redis_server, shard="s", consumer="hub-x")
    anonymous = RedisStreamsLog(redis_server, prefix="p", shard="s")
    assert pickle.loads(pickle.dumps(named)).consumer == "hub-x"
    copy = pickle.loads(pickle.dumps(anonymous))
    assert (copy.url, copy.prefix, copy.shard) == (redis_server, "p", "s")
    assert copy.consumer != anonymous.consumer


async def test_redis_unreachable_url_is_a_clear_error():
    from _local_servers import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    log = RedisStreamsLog(url, connect_timeout=2)
    with pytest.raises(ConnectionError) as info:
        await log.open()
    message = str(info.value)
    assert url.replace("secret", "***") in message and "secret" not in message
    assert "apt-get install redis-server" in message and "redis-server --port" in message


async def test_redis_missing_client_library_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'redis>=5'"):
        await RedisStreamsLog("redis://127.0.0.1:1/0").open()


async def test_sqlite_log_checkpoints_the_wal_off_the_commit_path(tmp_path):
    """The log's commits no longer run SQLite's automatic checkpoint (it cost a quarter of the log's
    time); a thread of its own copies the WAL back, so the WAL stays small while messages flow and
    the database file holds them without the WAL."""
    path = tmp_path / "hub.db"
    log = SQLiteLog(path)
    await log.open()
    envs = [env("u", "bob", f"message {i} " + "x" * 200) for i in range(3000)]
    for i in range(0, len(envs), 300):
        await log.append([("bob", e) for e in envs[i:i + 300]])
        await log.ack("bob", [e.id for e in envs[i:i + 300]])
    autocheckpoint = await log.db.call(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert autocheckpoint >= 10_000  # a backstop only
    for _ in range(100):  # the checkpointer runs every 50 ms
        busy, wal_pages, copied = await log.db.call(
            lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        if wal_pages == copied:
            break
        await asyncio.sleep(0.05)
    assert (await log.counts()) == {"appended": 3000, "acked": 3000, "unacked": 0}
    await log.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM hub_envelopes").fetchone()[0] == 3000
    conn.close()


def test_envelopes_pickle_compactly_and_exactly():
    """Envelopes, messages, tool calls and artifacts pickle as their fields (no validation on the way
    back, half pydantic's generic cost) and come back equal, with the same set fields."""
    import copy

    from ray import cloudpickle

    message = Message(role="assistant", content="x", tool_calls=[ToolCall(name="t", arguments={"a": [1, 2]})],
                      artifacts=[Artifact(kind="image", uri="file:///p.png", metadata={"w": 1})])
    original = Envelope(sender="a", recipient="b", content=message, headers={"h": 1}, reply_to="a@r")
    for back in (pickle.loads(pickle.dumps(original, protocol=5)), cloudpickle.loads(cloudpickle.dumps(original)),
                 copy.deepcopy(original)):
        assert back == original
        assert back.model_fields_set == original.model_fields_set
        assert back.content.model_dump(exclude_unset=True) == original.content.model_dump(exclude_unset=True)
        assert back.model_copy(update={"sender": "z"}).sender == "z" and back.sender == "a"
