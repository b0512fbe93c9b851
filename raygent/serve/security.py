"""The HTTP security layer of raygent's server: API keys, per-key limits, body size and CORS.

`SecurityMiddleware` is a pure ASGI middleware (it wraps the Ray Serve FastAPI ingress, or any
Starlette app). For every HTTP request, in this order:

1. CORS (Starlette's CORSMiddleware over `cors_origins`): a preflight OPTIONS is answered here,
   without a key; every reply, errors included, carries the CORS headers a browser needs to read it.
2. Body size: a Content-Length above `max_body_bytes` is refused at once (413 `request_too_large`);
   a chunked body is counted as the app reads it and refused the moment it goes over.
3. Auth: `Authorization: Bearer <key>`, checked against the key store (one lookup per request, no
   cache, so a key created or revoked while serving counts at once) and the static `api_keys`.
   Keys are required when require_keys="always", or "auto" and any key exists or the server binds
   a non-loopback address; a missing or wrong key is 401 `invalid_api_key`. Without that
   requirement a key that is not valid (an SDK's placeholder) is ignored and the caller is
   anonymous. `/healthz` and A2A agent cards (`GET /.well-known/agent-card.json`,
   `GET /a2a/{agent}/.well-known/agent-card.json`) are open.
4. Requests per minute per caller (a token bucket: a key's own limit, else the default): 429
   `rate_limit_exceeded` with Retry-After.
5. Runs in progress per caller (`RunSlots`): a request to a run-starting route (POST
   /v1/chat/completions, /v1/runs, /v1/rooms, /a2a/...) holds a slot until its response's last
   byte, a stream included; over the limit: 429 `concurrent_runs_exceeded` with Retry-After.

The routes read, from `request.state` (the ASGI `scope["state"]`): `raygent_owner` (the key id,
`static:<8 hex of the key's hash>` for a static key, `anonymous` when no key is required), which
they use to show sessions, runs and artifacts to their owner only; `raygent_caller` (a `Caller`,
with the caller's limits); `raygent_run_slot` (the request's `RunSlot`, or None; a route whose run
outlives the response calls `slot.detach()` and releases it when the run ends) and
`raygent_run_slots` (the limiter, for slots of its own).

Limits are counted per server process: each Serve ingress replica has its own buckets and slots,
so with N replicas a caller may get up to N times the configured rates.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raygent.llm_pool.openai_wire import error_body
from raygent.serve.keys import KeyInfo, KeyStore, hash_key

if TYPE_CHECKING:
    from raygent.serve.app import ServeConfig

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
RUN_PATHS = frozenset({"/v1/chat/completions", "/v1/runs", "/v1/rooms"})
_OPEN_PATH = re.compile(r"^(?:/healthz|(?:/a2a/[^/]+)?/\.well-known/agent-card\.json)$")
_RUN_RETRY_AFTER_S = 1  # a run's end cannot be foreseen: ask to retry soon


class RunLimitExceeded(Exception):
    """Raised by `RunSlots.acquire` when the owner already has `limit` runs in progress."""

    def __init__(self, owner: str, limit: int):
        super().__init__(f"{limit} run(s) already in progress for this API key; retry when one finishes")
        self.owner = owner
        self.limit = limit


class RunSlot:
    """One run in progress. `release()` is idempotent; `detach()` keeps the slot past the response
    (the middleware then leaves it to whoever detached it). Usable as a context manager."""

    def __init__(self, slots: RunSlots, owner: str):
        self.owner = owner
        self.detached = False
        self._slots: RunSlots | None = slots

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._release(self.owner)

    def detach(self) -> RunSlot:
        self.detached = True
        return self

    @property
    def released(self) -> bool:
        return self._slots is None

    def __enter__(self) -> RunSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunSlots:
    """Counts each owner's runs in progress in this process (asyncio: no locking needed)."""

    def __init__(self, default_limit: int = 8):
        if default_limit < 1:
            raise ValueError(f"default_limit must be at least 1, got {default_limit}")
        self.default_limit = default_limit
        self._in_use: dict[str, int] = {}

    def acquire(self, owner: str, limit: int | None = None) -> RunSlot:
        """A slot for `owner` (limit: the owner's own, else the default); RunLimitExceeded if full."""
        limit = limit or self.default_limit
        if self._in_use.get(owner, 0) >= limit:
            raise RunLimitExceeded(owner, limit)
        self._in_use[owner] = self._in_use.get(owner, 0) + 1
        return RunSlot(self, owner)

    def in_use(self, owner: str) -> int:
        return self._in_use.get(owner, 0)

    def _release(self, owner: str) -> None:
        left = self._in_use.get(owner, 0) - 1
        if left > 0:
            self._in_use[owner] = left
        else:
            self._in_use.pop(owner, None)


class RateLimiter:
    """A token bucket per owner: `rpm` requests at once, refilled at rpm/60 a second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # owner -> (tokens, when)

    def take(self, owner: str, rpm: int) -> float:
        """Spend one request; 0.0 if allowed, else the seconds until one would be."""
        now = self._clock()
        tokens, then = self._buckets.get(owner, (float(rpm), now))
        tokens = min(float(rpm), tokens + (now - then) * rpm / 60.0)
        if tokens >= 1.0:
            self._buckets[owner] = (tokens - 1.0, now)
            return 0.0
        self._buckets[owner] = (tokens, now)
        return (1.0 - tokens) * 60.0 / rpm


class Caller(BaseModel):
    """Who made a request, and the limits that apply to them."""

    model_config = ConfigDict(frozen=True)

    owner: str
    key: KeyInfo | None = None
    requests_per_minute: int
    concurrent_runs: int


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (0.0.0.0 and :: do not)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


class SecuritySettings(BaseModel):
    """What the middleware enforces; `from_config` builds it from a serve config."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    require_keys: Literal["auto", "always", "never"] = "auto"
    requests_per_minute: int = Field(default=600, ge=1)
    concurrent_runs: int = Field(default=8, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    #: static keys (config `api_keys`, RAYGENT_API_KEYS), valid besides the key store's
    api_keys: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    #: the address the server binds: "auto" requires keys unless it is a loopback address
    host: str = "127.0.0.1"
    key_store: KeyStore | None = None
    #: the per-owner run limiter (made from concurrent_runs unless given)
    run_slots: RunSlots | None = None
    _static: dict[str, str] = PrivateAttr(default_factory=dict)  # hash -> owner

    @model_validator(mode="after")
    def _derive(self) -> SecuritySettings:
        if self.run_slots is None:
            self.run_slots = RunSlots(self.concurrent_runs)
        self._static = {hash_key(k): f"static:{hash_key(k)[:8]}" for k in self.api_keys if k}
        return self

    @classmethod
    def from_config(cls, config: ServeConfig, *, host: str | None = None,
                    key_store: KeyStore | None = None) -> SecuritySettings:
        """Settings of a serve config: its security section, static keys (plus RAYGENT_API_KEYS), body
        limit, bind host (`host` when the command line overrides it), and the key store of `state.url`."""
        from raygent.serve.keys import open_key_store

        env_keys = [k.strip() for k in os.environ.get("RAYGENT_API_KEYS", "").split(",") if k.strip()]
        sec = config.security
        return cls(require_keys=sec.require_keys, requests_per_minute=sec.requests_per_minute,
                   concurrent_runs=sec.concurrent_runs, cors_origins=list(sec.cors_origins),
                   api_keys=list(dict.fromkeys([*config.api_keys, *env_keys])), max_body_bytes=config.max_body_bytes,
                   host=host or config.host,
                   key_store=key_store if key_store is not None else open_key_store(config.state.url))

    def static_owner(self, key: str) -> str | None:
        """The owner of a static key, compared by hash in constant time."""
        digest = hash_key(key)
        for known, owner in self._static.items():
            if hmac.compare_digest(known, digest):
                return owner
        return None

    async def keys_required(self) -> bool:
        if self.require_keys != "auto":
            return self.require_keys == "always"
        if self._static or not is_loopback(self.host):
            return True
        return self.key_store is not None and await self.key_store.has_keys()

    async def authenticate(self, key: str | None) -> Caller | None:
        """The caller presenting `key` (None: no key sent); None when a key is required and this is not one."""
        if key:
            owner = self.static_owner(key)
            if owner is not None:
                return self.caller(owner)
            if self.key_store is not None:
                info = await self.key_store.verify(key)
                if info is not None:
                    return self.caller(info.id, info)
        return None if await self.keys_required() else self.caller(ANONYMOUS)

    def caller(self, owner: str, key: KeyInfo | None = None) -> Caller:
        """A Caller with the key's own limits, else these settings' defaults."""
        return Caller(owner=owner, key=key,
                      requests_per_minute=(key and key.requests_per_minute) or self.requests_per_minute,
                      concurrent_runs=(key and key.concurrent_runs) or self.concurrent_runs)


def route_path(scope: Scope) -> str:
    """The request path below the app's root_path."""
    path: str = scope.get("path", "/")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def is_open(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and _OPEN_PATH.match(path) is not None


def starts_run(method: str, path: str) -> bool:
    if method != "POST":
        return False
    path = path.rstrip("/") or "/"
    return path in RUN_PATHS or path == "/a2a" or path.startswith("/a2a/")


def bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class _Reply(Exception):
    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        self.status, self.message, self.code, self.headers = status, message, code, headers


class _Exchange:
    """One request's receive/send: counts the body against the limit and ends the run slot at the last byte."""

    def __init__(self, receive: Receive, send: Send, max_body: int, slot: RunSlot | None):
        self._receive, self._send, self._max_body, self.slot = receive, send, max_body, slot
        self.received = 0
        self.started = False
        self.refused = False  # we answered 413 mid-body: the app's own reply is dropped

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self._max_body:
                self.refused = True
                if not self.started:
                    self.started = True
                    await _send_error(self._send, 413, f"request body is larger than {self._max_body} bytes",
                                      "request_too_large")
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.release()  # the run is over: free its slot before its last byte goes out
        await self._send(message)

    def release(self) -> None:
        if self.slot is not None and not self.slot.detached:
            self.slot.release()


async def _send_error(send: Send, status: int, message: str, code: str,
                      headers: dict[str, str] | None = None) -> None:
    response = JSONResponse(error_body(message, code=code, status=status), status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class SecurityMiddleware:
    """Keys, limits, body size and CORS in front of an ASGI app (see the module docstring).

    `settings` may be a callable: it is called once, at the first request, for servers whose
    settings are only known when they start (a Serve replica's)."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings | Callable[[], SecuritySettings]):
        self.app = app
        self._source = settings
        self._settings: SecuritySettings | None = settings if isinstance(settings, SecuritySettings) else None
        self._cors: ASGIApp | None = None
        self.rate_limiter = RateLimiter()

    @property
    def settings(self) -> SecuritySettings:
        if self._settings is None:
            assert callable(self._source)
            settings = self._source()
            if not isinstance(settings, SecuritySettings):
                raise TypeError(f"the security settings callable returned {type(settings).__name__}, "
                                f"not SecuritySettings")
            self._settings = settings
        return self._settings

    @property
    def run_slots(self) -> RunSlots:
        slots = self.settings.run_slots
        assert slots is not None
        return slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._cors is None:
            self._cors = CORSMiddleware(self._guard, allow_origins=self.settings.cors_origins, allow_methods=["*"],
                                        allow_headers=["*"], expose_headers=["Retry-After"])
        await self._cors(scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        state = scope.setdefault("state", {})
        method = scope.get("method", "GET")
        path = route_path(scope)
        headers = Headers(scope=scope)
        try:
            if scope["type"] == "http":
                self._check_length(headers, settings.max_body_bytes)
            open_route = is_open(method, path)
            caller = settings.caller(ANONYMOUS) if open_route else await self._authenticate(settings, headers)
            state["raygent_owner"] = caller.owner
            state["raygent_caller"] = caller
            state["raygent_run_slots"] = settings.run_slots
            slot = None
            if not open_route:
                wait = self.rate_limiter.take(caller.owner, caller.requests_per_minute)
                if wait > 0:
                    raise _Reply(429, f"rate limit of {caller.requests_per_minute} requests per minute reached",
                                 "rate_limit_exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
                if scope["type"] == "http" and starts_run(method, path):
                    slot = self._acquire(caller)
            state["raygent_run_slot"] = slot
        except _Reply as reply:
            await self._refuse(scope, send, reply)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(receive, send, settings.max_body_bytes, slot)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.refused:
                raise
            log.debug("app failed after its oversized body was refused", exc_info=True)
        finally:
            exchange.release()

    @staticmethod
    def _check_length(headers: Headers, limit: int) -> None:
        length = headers.get("content-length")
        if length is None:
            return
        try:
            size = int(length)
        except ValueError:
            raise _Reply(400, f"invalid Content-Length {length!r}", "invalid_request") from None
        if size > limit:
            raise _Reply(413, f"request body of {size} bytes is larger than the limit of {limit} bytes",
                         "request_too_large")

    @staticmethod
    async def _authenticate(settings: SecuritySettings, headers: Headers) -> Caller:
        key = bearer(headers)
        try:
            caller = await settings.authenticate(key)
        except Exception as exc:  # fail closed: no key store, no access
            log.warning("API key check failed: %s", exc)
            raise _Reply(503, "the API key store is unavailable; try again shortly", "key_store_unavailable",
                         {"Retry-After": "1"}) from exc
        if caller is None:
            message = ("Incorrect API key provided." if key else
                       "Missing API key: send it as `Authorization: Bearer <key>` (make one with `raygent keys "
                       "create`).")
            raise _Reply(401, message, "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        return caller

    def _acquire(self, caller: Caller) -> RunSlot:
        try:
            return self.run_slots.acquire(caller.owner, caller.concurrent_runs)
        except RunLimitExceeded as exc:
            raise _Reply(429, str(exc), "concurrent_runs_exceeded",
                         {"Retry-After": str(_RUN_RETRY_AFTER_S)}) from None

    @staticmethod
    async def _refuse(scope: Scope, send: Send, reply: _Reply) -> None:
        if scope["type"] == "websocket":  # before accept: close with "policy violation"
            await send({"type": "websocket.close", "code": 1008, "reason": reply.message[:120]})
            return
        await _send_error(send, reply.status, reply.message, reply.code, reply.headers)


__all__ = ["ANONYMOUS", "Caller", "RateLimiter", "RunLimitExceeded", "RunSlot", "RunSlots", "SecurityMiddleware",
           "SecuritySettings", "bearer", "is_loopback", "is_open", "route_path", "starts_run"]
