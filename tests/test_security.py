"""SecurityMiddleware over real HTTP: a small FastAPI app wrapped by it, served by uvicorn on
127.0.0.1, keys in a real SQLite file (and a real redis-server), clients speaking plain httpx."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from _local_servers import serve_asgi
from _redis_server import redis_server  # noqa: F401  (the session fixture)
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from raygent.serve.keys import RedisKeyStore, SQLiteKeyStore, hash_key
from raygent.serve.security import (
    RateLimiter,
    RunLimitExceeded,
    RunSlots,
    SecurityMiddleware,
    SecuritySettings,
    is_loopback,
)


class Probe:
    """The app under the middleware; the test opens and closes its runs through threading events
    (the server runs in its own thread and event loop)."""

    def __init__(self) -> None:
        self.finish = threading.Event()
        self.background_done = threading.Event()
        self.bodies_read = 0

    async def wait(self, event: threading.Event) -> None:
        while not event.is_set():
            await asyncio.sleep(0.005)

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.get("/healthz")
        async def healthz() -> dict[str, bool]:
            return {"ok": True}

        @api.get("/a2a/{agent}/.well-known/agent-card.json")
        async def card(agent: str) -> dict[str, str]:
            return {"name": agent}

        @api.get("/v1/whoami")
        async def whoami(request: Request) -> dict[str, str]:
            return {"owner": request.state.raygent_owner}

        @api.post("/v1/echo")
        async def echo(request: Request) -> dict[str, int]:
            body = await request.body()
            self.bodies_read += 1
            return {"bytes": len(body)}

        @api.post("/v1/chat/completions")
        async def chat(request: Request) -> StreamingResponse:
            async def events() -> AsyncIterator[bytes]:
                yield b"data: first\n\n"
                await self.wait(self.finish)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        @api.post("/v1/runs", status_code=202)
        async def start_run(request: Request) -> dict[str, str]:
            slot = request.state.raygent_run_slot.detach()  # the run outlives this response

            async def run() -> None:
                try:
                    await self.wait(self.background_done)
                finally:
                    slot.release()

            request.app.state.tasks = getattr(request.app.state, "tasks", set()) | {asyncio.create_task(run())}
            return {"owner": request.state.raygent_owner}

        return api


@contextmanager
def serving(settings: SecuritySettings | Any, probe: Probe | None = None) -> Iterator[tuple[str, Probe]]:
    probe = probe or Probe()
    with serve_asgi(SecurityMiddleware(probe.app(), settings)) as url:
        try:
            yield url, probe
        finally:
            probe.finish.set()
            probe.background_done.set()


@pytest.fixture
def store(tmp_path):
    return SQLiteKeyStore(tmp_path / "keys.sqlite")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
    return error


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_keys_count_from_the_moment_they_exist(backend, tmp_path, request):
    """No key: anonymous. A key made while serving: asked for at once (401 without it), and the
    caller becomes its owner. Revoked: 401 at the next request. A wrong key: 401."""
    if backend == "sqlite":
        keys: Any = SQLiteKeyStore(tmp_path / "keys.sqlite")
    else:
        keys = RedisKeyStore(request.getfixturevalue("redis_server"), prefix=f"t-{uuid.uuid4().hex[:8]}")
    admin = type(keys).__new__(type(keys))  # `raygent keys` in another process: its own store object
    admin.__setstate__(keys.__getstate__())
    with serving(SecuritySettings(key_store=keys)) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            open_door = await client.get("/v1/whoami", headers=bearer("sk-placeholder-the-sdk-needs"))
            assert open_door.status_code == 200 and open_door.json() == {"owner": "anonymous"}

            created = await admin.create(name="alice")
            missing = await client.get("/v1/whoami")
            error = assert_error(missing, 401, "invalid_api_key")
            assert error["type"] == "authentication_error" and "Authorization: Bearer" in error["message"]
            assert missing.headers["www-authenticate"] == "Bearer"
            assert_error(await client.get("/v1/whoami", headers=bearer("sk-placeholder-the-sdk-needs")), 401,
                         "invalid_api_key")
            me = await client.get("/v1/whoami", headers=bearer(created.key))
            assert me.status_code == 200 and me.json() == {"owner": created.id}

            other = await admin.create(name="bob")
            assert await admin.revoke(created.id)
            assert_error(await client.get("/v1/whoami", headers=bearer(created.key)), 401, "invalid_api_key")
            assert (await client.get("/v1/whoami", headers=bearer(other.key))).json() == {"owner": other.id}

            assert await admin.revoke(other.id)  # no active key left: "auto" opens the door again
            assert (await client.get("/v1/whoami", headers=bearer(created.key))).json() == {"owner": "anonymous"}
    await admin.close()


async def test_health_and_agent_cards_stay_open(store):
    await store.create()
    with serving(SecuritySettings(key_store=store)) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).json() == {"ok": True}
            card = await client.get("/a2a/assistant/.well-known/agent-card.json")
            assert card.status_code == 200 and card.json() == {"name": "assistant"}
            assert_error(await client.get("/v1/whoami"), 401, "invalid_api_key")
            # only the card itself: a run through A2A needs a key
            assert_error(await client.post("/a2a/assistant/", json={}), 401, "invalid_api_key")
            assert_error(await client.post("/a2a/assistant/.well-known/agent-card.json"), 401, "invalid_api_key")


async def test_static_keys_identify_by_hash_prefix():
    settings = SecuritySettings(api_keys=["team-secret"])
    with serving(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            me = await client.get("/v1/whoami", headers=bearer("team-secret"))
            assert me.json() == {"owner": f"static:{hash_key('team-secret')[:8]}"}
            assert_error(await client.get("/v1/whoami", headers=bearer("team-secre")), 401, "invalid_api_key")


async def test_rate_limit_per_key(store):
    slow = await store.create(requests_per_minute=2)
    other = await store.create()
    with serving(SecuritySettings(key_store=store, requests_per_minute=100)) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(2):
                assert (await client.get("/v1/whoami", headers=bearer(slow.key))).status_code == 200
            limited = await client.get("/v1/whoami", headers=bearer(slow.key))
            error = assert_error(limited, 429, "rate_limit_exceeded")
            assert error["type"] == "rate_limit_error"
            retry = int(limited.headers["retry-after"])  # whole seconds: one request back at 2/min
            assert 1 <= retry <= 30
            assert (await client.get("/v1/whoami", headers=bearer(other.key))).status_code == 200
            assert (await client.get("/healthz")).status_code == 200  # probes are not counted


async def test_a_stream_holds_its_run_slot_until_its_last_byte(store):
    key = await store.create(concurrent_runs=1)
    with serving(SecuritySettings(key_store=store)) as (url, probe):
        async with httpx.AsyncClient(base_url=url, headers=bearer(key.key)) as client:
            async with client.stream("POST", "/v1/chat/completions", json={}) as first:
                assert first.status_code == 200
                chunks = first.aiter_raw()
                assert await anext(chunks) == b"data: first\n\n"
                busy = await client.post("/v1/chat/completions", json={})
                assert_error(busy, 429, "concurrent_runs_exceeded")
                assert busy.headers["retry-after"] == "1"
                assert (await client.get("/v1/whoami")).status_code == 200  # other routes are not runs
                probe.finish.set()
                rest = b"".join([c async for c in chunks])
            assert rest == b"data: [DONE]\n\n"
            again = await client.post("/v1/chat/completions", json={})
            assert again.status_code == 200 and again.text.endswith("[DONE]\n\n")


async def test_a_route_can_keep_its_slot_for_a_background_run(store):
    key = await store.create(concurrent_runs=1)
    with serving(SecuritySettings(key_store=store)) as (url, probe):
        async with httpx.AsyncClient(base_url=url, headers=bearer(key.key)) as client:
            started = await client.post("/v1/runs", json={})
            assert started.status_code == 202 and started.json() == {"owner": key.id}
            assert_error(await client.post("/v1/runs", json={}), 429, "concurrent_runs_exceeded")
            probe.background_done.set()
            for _ in range(200):  # the run's task ends on the server's loop
                response = await client.post("/v1/runs", json={})
                if response.status_code == 202:
                    break
                await asyncio.sleep(0.01)
            assert response.status_code == 202


async def test_body_limit_by_content_length_and_while_chunked():
    with serving(SecuritySettings(require_keys="never", max_body_bytes=1000)) as (url, probe):
        async with httpx.AsyncClient(base_url=url) as client:
            fits = await client.post("/v1/echo", content=b"x" * 1000)
            assert fits.json() == {"bytes": 1000}

            declared = await client.post("/v1/echo", content=b"x" * 5000)
            error = assert_error(declared, 413, "request_too_large")
            assert "5000 bytes" in error["message"]
            assert probe.bodies_read == 1  # refused before the route ran

            async def chunks(n: int) -> AsyncIterator[bytes]:
                for _ in range(n):
                    yield b"y" * 400

            small = await client.post("/v1/echo", content=chunks(2))
            assert small.request.headers["transfer-encoding"] == "chunked" and small.json() == {"bytes": 800}
            big = await client.post("/v1/echo", content=chunks(8))
            assert_error(big, 413, "request_too_large")
            assert probe.bodies_read == 2
            assert (await client.get("/healthz")).status_code == 200  # the server is fine afterwards


async def test_cors_preflight_for_allowed_and_refused_origins(store):
    await store.create()
    settings = SecuritySettings(key_store=store, cors_origins=["https://app.example"])
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    with serving(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            allowed = await client.options("/v1/chat/completions",
                                           headers={"Origin": "https://app.example", **preflight})
            assert allowed.status_code == 200  # answered without a key
            assert allowed.headers["access-control-allow-origin"] == "https://app.example"
            assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

            refused = await client.options("/v1/chat/completions", headers={"Origin": "https://evil.example",
                                                                            **preflight})
            assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

            # a browser can read the error of an allowed origin (and its Retry-After, when there is one)
            denied = await client.get("/v1/whoami", headers={"Origin": "https://app.example"})
            assert_error(denied, 401, "invalid_api_key")
            assert denied.headers["access-control-allow-origin"] == "https://app.example"
            other = await client.get("/v1/whoami", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(("require", "host", "status"), [
    ("auto", "0.0.0.0", 401), ("auto", "::", 401), ("auto", "10.1.2.3", 401), ("auto", "localhost", 200),
    ("always", "127.0.0.1", 401), ("never", "0.0.0.0", 200)])
async def test_when_keys_are_required_without_any_key(require, host, status, store):
    """No key exists anywhere: "auto" still asks for one when the server binds beyond loopback."""
    with serving(SecuritySettings(key_store=store, require_keys=require, host=host)) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/v1/whoami")
            assert response.status_code == status
            if status == 401:
                assert_error(response, 401, "invalid_api_key")
                assert (await client.get("/healthz")).status_code == 200


async def test_never_still_names_a_caller_with_a_valid_key(store):
    created = await store.create()
    with serving(SecuritySettings(key_store=store, require_keys="never")) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/v1/whoami")).json() == {"owner": "anonymous"}
            assert (await client.get("/v1/whoami", headers=bearer(created.key))).json() == {"owner": created.id}


async def test_settings_from_a_callable_are_read_once_at_the_first_request(store):
    calls = []

    def settings() -> SecuritySettings:
        calls.append(1)
        return SecuritySettings(key_store=store, require_keys="always", api_keys=["k"])

    with serving(settings) as (url, _):
        assert calls == []  # a Serve replica knows its settings only once it runs
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/v1/whoami")).status_code == 401
            assert (await client.get("/v1/whoami", headers=bearer("k"))).status_code == 200
    assert calls == [1]


async def test_a_broken_key_store_fails_closed(tmp_path):
    folder = tmp_path / "file-not-folder"
    folder.write_text("")
    settings = SecuritySettings(key_store=SQLiteKeyStore(folder / "keys.sqlite"))
    with serving(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/v1/whoami", headers=bearer("rgk_" + "a" * 43))
            assert_error(response, 503, "key_store_unavailable")


def test_settings_from_a_serve_config(tmp_path, monkeypatch):
    from raygent.serve.app import SecurityConfig, ServeConfig, StateConfig

    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path))
    monkeypatch.setenv("RAYGENT_API_KEYS", "env-key, cfg-key")
    config = ServeConfig(models={"m": {}}, api_keys=["cfg-key"], max_body_bytes=123, host="0.0.0.0",
                         security=SecurityConfig(require_keys="always", requests_per_minute=7, concurrent_runs=3,
                                                 cors_origins=["https://a.example"]),
                         state=StateConfig(url="redis://127.0.0.1:1/0"))
    settings = SecuritySettings.from_config(config, host="127.0.0.1")
    assert (settings.require_keys, settings.requests_per_minute, settings.concurrent_runs, settings.max_body_bytes,
            settings.host, settings.cors_origins) == ("always", 7, 3, 123, "127.0.0.1", ["https://a.example"])
    assert settings.api_keys == ["cfg-key", "env-key"]
    assert isinstance(settings.key_store, RedisKeyStore) and settings.run_slots.default_limit == 3


def test_run_slots_and_rate_limiter_units():
    slots = RunSlots(default_limit=2)
    a, b = slots.acquire("k"), slots.acquire("k")
    with pytest.raises(RunLimitExceeded):
        slots.acquire("k")
    assert slots.acquire("k", limit=3).owner == "k" and slots.in_use("k") == 3
    a.release()
    a.release()  # idempotent
    assert slots.in_use("k") == 2
    with b:
        pass
    assert slots.in_use("k") == 1 and b.released

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", 60) for _ in range(60)] == [0.0] * 60
    assert limiter.take("k", 60) == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.take("k", 60) == 0.0 and limiter.take("other", 1) == 0.0
    assert limiter.take("other", 1) == pytest.approx(60.0)

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.com")
