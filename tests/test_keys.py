"""API key stores (raygent.serve.keys) on a real SQLite file and a real redis-server, and the
`raygent keys` command line run as a subprocess against RAYGENT_HOME (and Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _redis_server import redis_server  # noqa: F401  (the session fixture)

from raygent.serve.keys import (
    KeyStore,
    RedisKeyStore,
    SQLiteKeyStore,
    default_keys_path,
    hash_key,
    open_key_store,
)

KEY = re.compile(r"^rgk_[A-Za-z0-9_-]{43}$")
KEY_ID = re.compile(r"^key_[0-9a-f]{16}$")


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """Makes store objects on one backend; two objects stand for two processes sharing the keys."""
    made: list[KeyStore] = []
    prefix = f"t-{uuid.uuid4().hex[:8]}"

    def make() -> KeyStore:
        if request.param == "sqlite":
            store: KeyStore = SQLiteKeyStore(tmp_path / "keys.sqlite")
        else:
            store = RedisKeyStore(request.getfixturevalue("redis_server"), prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, SQLiteKeyStore):
            store.db.close()


async def test_create_list_verify_revoke(make_store):
    store = make_store()
    assert not await store.has_keys()
    a = await store.create(name="ci", requests_per_minute=5, concurrent_runs=2)
    b = await store.create()
    assert KEY.match(a.key) and KEY.match(b.key) and KEY_ID.match(a.id) and a.id != b.id
    assert await store.has_keys()

    listed = await store.list()
    assert [(i.id, i.name, i.requests_per_minute, i.concurrent_runs) for i in listed] == [
        (a.id, "ci", 5, 2), (b.id, None, None, None)]
    assert a.key not in json.dumps([i.model_dump() for i in listed])  # never the secret

    info = await store.verify(a.key)
    assert info is not None and (info.id, info.requests_per_minute, info.concurrent_runs) == (a.id, 5, 2)
    assert await store.verify(a.key[:-1] + ("A" if a.key[-1] != "A" else "B")) is None
    assert await store.verify("rgk_" + "x" * 43) is None and await store.verify("") is None

    assert await store.revoke(a.id) is True
    assert await store.verify(a.key) is None
    assert (await store.verify(b.key)).id == b.id
    assert [i.id for i in await store.list()] == [b.id]
    everything = await store.list(include_revoked=True)
    assert [(i.id, i.revoked_at is not None) for i in everything] == [(a.id, True), (b.id, False)]
    assert await store.revoke(a.id) is True  # idempotent: the id is known
    assert await store.revoke("key_0123456789abcdef") is False
    assert await store.revoke("not-a-key-id") is False

    assert await store.revoke(b.id) and not await store.has_keys()
    await store.close()


async def test_limits_must_be_positive(make_store):
    store = make_store()
    for bad in ({"requests_per_minute": 0}, {"concurrent_runs": -1}, {"concurrent_runs": True}):
        with pytest.raises(ValueError):
            await store.create(**bad)
    assert not await store.has_keys()
    await store.close()


async def test_a_second_store_sees_new_and_revoked_keys_at_once(make_store):
    """No cache: another process's store (another object, its own connection) agrees immediately."""
    writer, reader = make_store(), make_store()
    assert not await reader.has_keys()
    created = await writer.create(name="late")
    assert (await reader.verify(created.key)).id == created.id and await reader.has_keys()
    assert await writer.revoke(created.id)
    assert await reader.verify(created.key) is None and not await reader.has_keys()
    await writer.close()
    await reader.close()


async def test_a_pickled_store_opens_the_same_keys(make_store):
    store = make_store()
    created = await store.create(name="ray")
    copy = pickle.loads(pickle.dumps(store))
    assert type(copy) is type(store) and copy is not store
    assert (await copy.verify(created.key)).id == created.id
    await copy.close()
    await store.close()


async def test_sqlite_keeps_only_the_hash(tmp_path):
    path = tmp_path / "keys.sqlite"
    store = SQLiteKeyStore(path)
    created = await store.create(name="secret-holder")
    await store.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
    assert len(rows) == 1 and hash_key(created.key) in rows[0]
    assert not any(created.key in str(v) or created.key[4:] in str(v) for v in rows[0])
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.sqlite"))
    assert created.key[4:].encode() not in raw  # nowhere in the file or its WAL


async def test_redis_keeps_only_the_hash(redis_server):
    import redis.asyncio as aioredis

    prefix = f"t-{uuid.uuid4().hex[:8]}"
    store = RedisKeyStore(redis_server, prefix=prefix)
    created = await store.create(name="secret-holder")
    client = aioredis.from_url(redis_server, decode_responses=True)
    names = [k async for k in client.scan_iter(f"{prefix}:*")]
    dump = []
    for name in names:
        kind = await client.type(name)
        value = {"hash": client.hgetall, "set": client.smembers, "string": client.get}[kind]
        dump.append(f"{name} {await value(name)}")
    text = "\n".join(dump)
    assert len(names) == 3 and hash_key(created.key) in text and created.id in text
    assert created.key[4:] not in text
    await client.aclose()
    await store.close()


def test_open_key_store_picks_the_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path / "home"))
    default = open_key_store(None)
    assert isinstance(default, SQLiteKeyStore) and Path(default.path) == tmp_path / "home" / "keys.sqlite"
    assert default_keys_path() == tmp_path / "home" / "keys.sqlite"
    beside = open_key_store(f"sqlite://{tmp_path}/state/memory.sqlite")
    assert isinstance(beside, SQLiteKeyStore) and Path(beside.path) == tmp_path / "state" / "keys.sqlite"
    remote = open_key_store("redis://127.0.0.1:6390/2")
    assert isinstance(remote, RedisKeyStore) and remote.url == "redis://127.0.0.1:6390/2"
    with pytest.raises(ValueError, match="redis://"):
        open_key_store("postgres://db/keys")


def _keys(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAYGENT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "raygent.cli", "keys", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_create_list_revoke(tmp_path):
    made = _keys("create", "--name", "ci", "--rpm", "30", "--concurrent", "2", "--json", home=tmp_path)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert sorted(created) == ["id", "key"] and KEY.match(created["key"]) and KEY_ID.match(created["id"])

    human = _keys("create", "--name", "laptop", home=tmp_path)
    assert human.returncode == 0, human.stderr
    assert "shown only this once" in human.stdout
    second_key = human.stdout.strip().splitlines()[-1]
    assert KEY.match(second_key)

    listed = _keys("list", home=tmp_path)
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(created["id"]) and " ci " in lines[0] and "rpm 30" in lines[0]
    assert "laptop" in lines[1] and "rpm default" in lines[1]
    assert created["key"] not in listed.stdout and second_key not in listed.stdout

    unknown = _keys("revoke", "key_0123456789abcdef", home=tmp_path)
    assert unknown.returncode == 1 and "no API key with id 'key_0123456789abcdef'" in unknown.stderr

    revoked = _keys("revoke", created["id"], home=tmp_path)
    assert revoked.returncode == 0 and created["id"] in revoked.stdout
    infos = json.loads(_keys("list", "--json", home=tmp_path).stdout)
    assert [(i["name"], i["requests_per_minute"], i["revoked_at"]) for i in infos] == [("laptop", None, None)]

    async def check() -> None:  # what a running server reads
        store = SQLiteKeyStore(tmp_path / "keys.sqlite")
        assert await store.verify(created["key"]) is None
        assert (await store.verify(second_key)).name == "laptop"
        await store.close()

    asyncio.run(check())


def test_cli_rejects_a_bad_limit(tmp_path):
    bad = _keys("create", "--rpm", "0", home=tmp_path)
    assert bad.returncode == 2 and "positive integer" in bad.stderr
    assert not (tmp_path / "keys.sqlite").exists()


def test_cli_on_redis(tmp_path, redis_server):
    made = _keys("create", "--name", "cluster", "--json", "--state", redis_server, home=tmp_path)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    store = RedisKeyStore(redis_server)

    async def verify() -> str | None:
        info = await store.verify(created["key"])
        await store.close()
        return info and info.name

    assert asyncio.run(verify()) == "cluster"
    assert not (tmp_path / "keys.sqlite").exists()  # nothing went to the SQLite default
    assert _keys("revoke", created["id"], "--state", redis_server, home=tmp_path).returncode == 0
    assert asyncio.run(verify()) is None
