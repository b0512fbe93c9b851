"""The MemoryStore behaviour every backend must have, on SQLiteMemoryStore (a file) and
RedisMemoryStore (a real redis-server): sessions, ordered atomic appends, isolation under concurrent
writers, persistence across store objects and processes; plus SQLite's own (WAL, locks, the actor).
Redis-only behaviour is in test_memory_redis.py."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import pickle
import sqlite3
import uuid
from collections.abc import Callable

import pytest
from _redis_server import redis_server  # noqa: F401  (the session fixture)

from raygent.memory import MemoryStore, RedisMemoryStore, SQLiteMemoryStore, check_session_id, deploy_store
from raygent.schema import Artifact, Message, ToolCall


def _msg(session: str, writer: int, i: int) -> Message:
    return Message.user(f"{session}|{writer}|{i}")


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Callable[[], MemoryStore]:
    """A factory of store objects on one backing store: each call is a new object (a restarted
    process); it pickles, so spawned processes make their own from it."""
    if request.param == "sqlite":
        path = tmp_path / "m.sqlite"
        return _Factory(SQLiteMemoryStore, str(path))
    return _Factory(RedisMemoryStore, request.getfixturevalue("redis_server"), prefix=f"t-{uuid.uuid4().hex[:8]}")


class _Factory:
    def __init__(self, cls: type, *args, **kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs

    def __call__(self) -> MemoryStore:
        return self.cls(*self.args, **self.kwargs)


async def test_sessions_create_list_get_delete(make_store):
    store = make_store()
    a = await store.create_session("alpha", {"user": "ann"})
    assert a.id == "alpha" and a.message_count == 0 and a.metadata == {"user": "ann"}
    with pytest.raises(ValueError, match="already exists"):
        await store.create_session("alpha")
    assert (await store.create_session("alpha", exist_ok=True)).metadata == {"user": "ann"}
    generated = await store.create_session()
    assert generated.id.startswith("s-")
    await store.append("beta", Message.user("hi"))  # append creates the session
    listed = await store.list_sessions()
    assert {s.id for s in listed} == {"alpha", "beta", generated.id}
    assert listed[0].id == "beta" and listed[0].message_count == 1  # most recently written first
    assert await store.delete_session("beta") is True
    assert await store.delete_session("beta") is False
    assert await store.get_session("beta") is None and await store.load("beta") == []
    for bad in ("", "../etc", "a b", "x" * 200, "-lead"):
        with pytest.raises(ValueError, match="invalid session id"):
            check_session_id(bad)
        with pytest.raises(ValueError, match="invalid session id"):
            await store.append(bad, Message.user("x"))
    await store.close()


async def test_messages_round_trip_in_order(make_store):
    store = make_store()
    call = ToolCall(name="calculator", arguments={"expression": "2+2"})
    msgs = [Message.system("be brief"), Message.user("2+2? 中文"), Message.assistant(tool_calls=[call]),
            Message(role="tool", content='{"result": 4}', tool_call_id=call.id, name="calculator",
                    artifacts=[Artifact(kind="image", uri="file:///tmp/x.png", mime_type="image/png")],
                    metadata={"k": [1, 2]}),
            Message.assistant("4")]
    assert await store.append_many("s1", msgs[:3]) == [0, 1, 2]
    assert await store.append("s1", msgs[3]) == 3
    assert await store.append("s1", msgs[4]) == 4
    await store.close()
    reopened = make_store()  # a new object (as after a restart) sees every committed row
    assert await reopened.load("s1") == msgs
    recs = await reopened.records("s1", after=2)
    assert [r.seq for r in recs] == [3, 4] and recs[0].message.artifacts[0].uri == "file:///tmp/x.png"
    assert (await reopened.get_message("s1", 2)).message.tool_calls[0].id == call.id
    assert await reopened.get_message("s1", 99) is None
    assert [r.seq for r in await reopened.records("s1", after=0, limit=2)] == [1, 2]
    assert await reopened.records("s1", after=4) == [] and await reopened.records("s1", limit=0) == []
    assert await reopened.records("nobody") == [] and await reopened.get_message("nobody", 0) is None
    with pytest.raises(ValueError, match="at least one message"):
        await reopened.append_many("s1", [])
    with pytest.raises(TypeError, match="use append for one"):
        await reopened.append_many("s1", Message.user("x"))
    info = await reopened.get_session("s1")
    assert info.message_count == 5 and info.created_at <= recs[0].created_at <= info.updated_at
    await reopened.close()


async def test_sqlite_file_is_wal_with_one_row_per_message(tmp_path):
    path = tmp_path / "m.sqlite"
    store = SQLiteMemoryStore(path)
    await store.append_many("s1", [Message.user("a"), Message.assistant("b")])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 2  # one row per message
    conn.close()
    await store.close()


async def test_concurrent_sessions_never_see_each_others_messages(make_store):
    """40 sessions written at once by 4 store objects (4 connections) on one store."""
    stores = [make_store() for _ in range(4)]
    n_sessions, n_msgs = 40, 25

    async def writer(k: int) -> None:
        sid = f"sess-{k}"
        store = stores[k % len(stores)]
        for i in range(n_msgs):
            if i % 5 == 4:
                await store.append_many(sid, [_msg(sid, 0, i), _msg(sid, 0, i + 0.5)])
            else:
                await store.append(sid, _msg(sid, 0, i))
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(k) for k in range(n_sessions)))
    for k in range(n_sessions):
        sid = f"sess-{k}"
        recs = await stores[0].records(sid)
        assert [r.seq for r in recs] == list(range(len(recs)))  # gapless, ordered
        assert all(r.message.content.startswith(f"{sid}|") for r in recs)  # nothing from other sessions
        expected = []
        for i in range(n_msgs):
            expected.append(f"{sid}|0|{i}")
            if i % 5 == 4:
                expected.append(f"{sid}|0|{i + 0.5}")
        assert [r.message.content for r in recs] == expected
    for s in stores:
        await s.close()


def _process_writer(factory: bytes, writer: int, n: int) -> None:
    store = pickle.loads(factory)()

    async def go() -> None:
        for i in range(n):
            await store.append("shared", _msg("shared", writer, i))
            await store.append(f"own-{writer}", _msg(f"own-{writer}", writer, i))
        await store.close()

    asyncio.run(go())


async def test_writers_in_separate_processes_share_one_session_without_loss(make_store):
    n_proc, n = 4, 60
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(pickle.dumps(make_store), w, n)) for w in range(n_proc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = make_store()
    shared = await store.records("shared")
    assert [r.seq for r in shared] == list(range(n_proc * n))  # every append got its own number
    for w in range(n_proc):
        mine = [r.message.content for r in shared if r.message.content.split("|")[1] == str(w)]
        assert mine == [f"shared|{w}|{i}" for i in range(n)]  # each writer's order preserved
        assert [m.content for m in await store.load(f"own-{w}")] == [f"own-{w}|{w}|{i}" for i in range(n)]
    await store.close()


@pytest.mark.ray
def test_stores_opening_one_new_file_together_all_open(tmp_path):
    """Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at once
    instead of waiting (CI: four stores opening one new file together); every store must open.
    Before the fix, 14 of 300 such trials failed here."""
    import threading

    from raygent.memory._sqlite import SQLiteDB
    from raygent.memory.sqlite_store import SCHEMA

    errors: list[str] = []
    for trial in range(100):
        dbs = [SQLiteDB(tmp_path / f"m{trial}.sqlite", schema=SCHEMA) for _ in range(6)]

        def open_and_read(db: SQLiteDB) -> None:
            try:
                db.call_sync(lambda conn: conn.execute("SELECT count(*) FROM sessions").fetchone())
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_and_read, args=(db,)) for db in dbs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for db in dbs:
            db.close()
    assert errors == []


async def test_one_store_keeps_call_order_while_another_writer_holds_the_lock(tmp_path):
    """A call that meets another process's write lock moves to the worker thread; calls made after
    it queue behind it instead of overtaking it once the lock is free (seen in CI: l16 before l9)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "m.sqlite"
    store = SQLiteMemoryStore(path)
    await store.append("s", Message.user("warm"))  # opens the connection: later calls may go inline
    # hold the worker thread busy so that the moved call stays queued while we act
    store.db._executor = ThreadPoolExecutor(max_workers=1)
    gate = threading.Event()
    store.db._executor.submit(gate.wait)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock
    first = asyncio.ensure_future(store.append("s", Message.user("first")))
    await asyncio.sleep(0.05)  # `first` met the busy lock and is queued for the worker thread
    other.execute("COMMIT")
    other.close()
    second = asyncio.ensure_future(store.append("s", Message.user("second")))  # lock free: must queue
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, second)
    assert [m.content for m in await store.load("s")] == ["warm", "first", "second"]
    await store.close()


async def test_store_as_ray_actor_has_the_same_interface(ray_cluster, tmp_path):
    from raygent import runtime

    path = str(tmp_path / "m.sqlite")
    actors = [runtime.deploy(SQLiteMemoryStore, remote=True, init_kwargs={"path": path}) for _ in range(2)]
    local = SQLiteMemoryStore(path)
    try:
        await actors[0].create_session("remote", {"via": "actor"})
        await asyncio.gather(*(actors[i % 2].append("remote", Message.user(f"m{i}")) for i in range(20)),
                             *(local.append("local", Message.user(f"l{i}")) for i in range(20)))
        assert sorted(m.content for m in await actors[1].load("remote")) == sorted(f"m{i}" for i in range(20))
        recs = await actors[0].records("remote")
        assert [r.seq for r in recs] == list(range(20)) and recs[0].session_id == "remote"
        assert [m.content for m in await actors[1].load("local")] == [f"l{i}" for i in range(20)]
        info = await actors[1].get_session("remote")
        assert info.metadata == {"via": "actor"} and info.message_count == 20
        assert {s.id for s in await actors[0].list_sessions()} == {"remote", "local"}
        # an in-process store object shipped to an actor by pickling reopens its file there
        shipped = runtime.deploy(SQLiteMemoryStore(path), remote=True)
        assert len(await shipped.load("remote")) == 20
        runtime.kill(shipped)
        # the named MemoryStore actor is found again by name
        named = deploy_store(path, name="test-memory-store")
        assert deploy_store(path, name="test-memory-store").actor_handle == named.actor_handle
        assert await named.get_path() == path and len(await named.load("local")) == 20
        runtime.kill(named)
    finally:
        for a in actors:
            runtime.kill(a)
        await local.close()
