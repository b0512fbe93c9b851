"""Tool hubs: one per domain (speech, vision, nlp, code, web, ...), each owning its tools.

A `ToolHub` is a ToolRegistry (schema validation, per-tool timeouts, failures as error results)
with a domain, a concurrency limit and a per-call context. It runs in-process or as a Ray actor
(`deploy_hub`, or `runtime.deploy(ToolHub, ..., remote=True, num_gpus=...)`), so a hub whose tools
hold models gets its own process and resources. A hub actor that crashes is restarted by Ray
(`max_restarts`); `HubClient` then retries the calls that were in flight if their tool is marked
`idempotent`, and reports the others as failed, because they may have had effects.

`HubSet` merges several hubs (in-process or remote) into the one `list_specs` / `call_many`
interface the agent loop uses, routing each call to the hub that owns the tool.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from raygent.schema import ToolCall, ToolResult, ToolSpec, new_id
from raygent.toolhub.base import Tool
from raygent.toolhub.context import _CURRENT, ToolContext, as_context
from raygent.toolhub.registry import ToolRegistry, result_from_row

ContextLike = ToolContext | dict[str, Any] | str | None


class HubInfo(BaseModel):
    """What a hub is and how busy it is (for discovery, tests and dashboards)."""

    domain: str
    tools: list[str]
    idempotent: list[str]
    max_concurrency: int
    in_flight: int
    calls: int
    pid: int


def _as_tool(item: Tool | type[Tool]) -> Tool:
    if isinstance(item, Tool):
        return item
    if isinstance(item, type) and issubclass(item, Tool):
        return item()  # a class is built where the hub lives (inside the actor when remote)
    raise TypeError(f"not a tool: {item!r} (pass Tool instances, @tool functions or Tool classes)")


class ToolHub(ToolRegistry):
    """The tools of one domain behind `list_specs()`, `call()` and `call_many()`.

    At most `max_concurrency` tool calls run at once (the rest wait their turn; the wait does not
    count against a tool's timeout). Tool classes are instantiated by the hub, so with a remote hub
    their models load inside the actor.
    """

    def __init__(self, domain: str = "general", tools: Iterable[Tool | type[Tool]] = (), *,
                 max_concurrency: int = 16, default_timeout_s: float = 30.0):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.domain = domain
        self.max_concurrency = max_concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._in_flight = 0
        self._calls = 0
        super().__init__((_as_tool(t) for t in tools), default_timeout_s=default_timeout_s)

    def register(self, tool: Tool, *, replace: bool = False) -> ToolSpec:
        spec = super().register(tool, replace=replace)
        if spec.domain is None:  # a tool without a domain belongs to the hub's
            spec = spec.model_copy(update={"domain": self.domain})
            self._specs[spec.name] = spec
        return spec

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:  # created on first use: inside the loop (and the actor) that runs it
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._semaphore

    async def call(self, name: str, arguments: dict[str, Any] | None = None, context: ContextLike = None, *,
                   call_id: str | None = None) -> ToolResult:
        """Validate and run one call; every failure comes back as a ToolResult with `error` set."""
        return result_from_row(await self._run(name, arguments, as_context(context), call_id or new_id()))

    async def _run(self, name: str, arguments: Any, context: ToolContext, call_id: str) -> dict[str, Any]:
        async with self._limit():
            self._in_flight += 1
            self._calls += 1
            token = _CURRENT.set((context, call_id))
            try:
                return await self._execute(name, arguments, call_id)
            finally:
                _CURRENT.reset(token)
                self._in_flight -= 1

    async def call_many(self, calls: list[ToolCall], context: ContextLike = None) -> list[ToolResult]:
        """Run independent calls concurrently (within the hub's limit), results in call order."""
        ctx = as_context(context)
        return [result_from_row(row) for row in
                await asyncio.gather(*(self._run(c.name, c.arguments, ctx, c.id) for c in calls))]

    async def call_wire(self, calls: list[tuple[str, str, dict[str, Any]]],
                        context: dict[str, Any] | str | None = None) -> list[dict[str, Any]]:
        """`call_many` in plain data, for the actor boundary: (id, name, arguments) in, ToolResult
        rows out. Ray serializes builtins much faster than pydantic objects (about 0.15 ms less per
        direction per call on the benchmark machine), and no ToolResult is built on this side."""
        ctx = as_context(context)  # once per batch, not per call
        if len(calls) == 1:  # the common case: no gather, no extra task
            cid, name, arguments = calls[0]
            rows = [await self._run(name, arguments, ctx, cid)]
        else:
            rows = await asyncio.gather(*(self._run(name, arguments, ctx, cid) for cid, name, arguments in calls))
        for row in rows:
            if row["artifacts"]:
                row["artifacts"] = [a.model_dump() for a in row["artifacts"]]
        return list(rows)

    async def idempotent_tools(self) -> list[str]:
        return [name for name, t in self._tools.items() if getattr(t, "idempotent", False)]

    async def info(self) -> HubInfo:
        return HubInfo(domain=self.domain, tools=list(self._tools), idempotent=await self.idempotent_tools(),
                       max_concurrency=self.max_concurrency, in_flight=self._in_flight, calls=self._calls,
                       pid=os.getpid())

    async def close(self) -> None:
        """Release what the tools hold (kernels, clients): tools with an async `aclose()`."""
        for t in self._tools.values():
            closer = getattr(t, "aclose", None)
            if closer is not None:
                await closer()


def _actor_errors() -> tuple[type[BaseException], ...]:
    """What a call raises when the hub's actor died under it: Ray's error on the normal path,
    ComponentUnavailableError on the fast lane."""
    from raygent.runtime import ComponentUnavailableError

    try:
        from ray.exceptions import RayActorError
    except ImportError:  # pragma: no cover - ray is a core dependency
        return (ComponentUnavailableError,)
    return (RayActorError, ComponentUnavailableError)


WireCall = tuple[str, str, Any]  # (call id, tool name, arguments): a call as it crosses to the actor
_Waiting = tuple[WireCall, ContextLike, "asyncio.Future[ToolResult]"]


class HubClient:
    """The caller's side of a hub actor, with the retry policy for crashes.

    When the actor dies during a call (a tool segfaulted, ran out of memory, called `os._exit`),
    Ray restarts it (`max_restarts`); an idempotent tool's call is then sent again, up to
    `retries` times; any other call becomes an error result saying it may have run partly.
    """

    def __init__(self, proxy: Any, *, retries: int = 2, retry_delay_s: float = 0.2):
        self.proxy = proxy
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._idempotent: set[str] | None = None
        self._domain: str | None = None
        self._recovering = False  # set after a crash: wait for the restarted actor before sending calls
        self._pending: list[_Waiting] = []
        self._gathering: list[_Waiting] | None = None
        self._in_flight = 0
        self._wire: bool | None = None  # whether the remote side has `call_wire` (None: not known yet)
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def actor_name(self) -> str | None:
        return getattr(self.proxy, "actor_name", None)

    async def _flags(self) -> set[str]:
        if self._idempotent is None:
            info = await self.proxy.info()
            self._idempotent, self._domain = set(info.idempotent), info.domain
        return self._idempotent

    async def list_specs(self) -> list[ToolSpec]:
        return await self.proxy.list_specs()

    async def info(self) -> HubInfo:
        return await self.proxy.info()

    async def close(self) -> None:
        await self.proxy.close()

    def _crash_result(self, call: WireCall, exc: BaseException, *, retried: int, idempotent: bool,
                      started: float) -> ToolResult:
        where = f"the {self._domain!r} tool hub actor" if self._domain else "the tool hub actor"
        if idempotent:
            why = f"it crashed on each of {retried + 1} attempts (the tool is idempotent, so it was retried)"
        else:
            why = ("it crashed during the call; not retried because the tool is not marked idempotent "
                   "(it may have run partly). Ray restarts the hub for later calls if it has restarts left and "
                   "a node that can host it")
        call_id, name, arguments = call
        return ToolResult(call_id=call_id, name=name, arguments=arguments if isinstance(arguments, dict) else {},
                          error=f"tool {name!r} did not finish: {where} died ({type(exc).__name__}); {why}",
                          duration_s=time.perf_counter() - started)

    async def call(self, name: str, arguments: dict[str, Any] | None = None, context: ContextLike = None, *,
                   call_id: str | None = None) -> ToolResult:
        """One call. Calls made in the same event-loop tick (e.g. `asyncio.gather` of many `call`s)
        are coalesced into one `call_many` round trip to the actor."""
        if not isinstance(name, str):
            raise TypeError(f"tool name must be a string, got {type(name).__name__}")
        # no ToolCall is built: the hub validates the arguments against the tool's schema
        call = (call_id or new_id(), name, {} if arguments is None else arguments)
        if self._gathering is not None:  # a leader is collecting this tick's calls: join its batch
            future: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
            self._gathering.append((call, context, future))
            return await future
        if not self._in_flight:
            return await self._lead(call, context)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((call, context, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    async def _lead(self, call: WireCall, context: ContextLike) -> ToolResult:
        """An idle client's first call yields once (one loop iteration, not a timer), so that the
        calls made in the same tick (`asyncio.gather` of many `call`s) join it in one round trip."""
        batch: list[_Waiting] = []
        self._gathering = batch
        try:
            await asyncio.sleep(0)
        except BaseException:
            self._gathering = None
            if batch:  # the leader was cancelled: its followers still go
                self._pending.extend(batch)
                self._flush()
            raise
        self._gathering = None
        if batch and not (context is None and all(item[1] is None for item in batch)):
            key = _context_key(context)
            others = [item for item in batch if _context_key(item[1]) != key]
            if others:
                batch = [item for item in batch if _context_key(item[1]) == key]
                self._pending.extend(others)
                self._flush()
        if not batch:  # a lone call: no task, no future
            return (await self._call_wire_many([call], context))[0]
        # the batch goes in its own task: cancelling the leader abandons only the leader's result
        own: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        self._spawn(self._send([(call, context, own)] + batch))
        return await own

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[str, list[_Waiting]] = {}
        for item in pending:  # one batch per context: a batch runs under a single context
            groups.setdefault(_context_key(item[1]), []).append(item)
        for items in groups.values():
            self._spawn(self._send(items))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._sending.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._sending.discard)

    async def _send(self, items: list[_Waiting]) -> None:
        try:
            results = await self._call_wire_many([c for c, _, _ in items], items[0][1])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), result in zip(items, results):
            if not future.done():
                future.set_result(result)

    async def call_many(self, calls: list[ToolCall], context: ContextLike = None) -> list[ToolResult]:
        if not calls:
            return []
        return await self._call_wire_many([(c.id, c.name, c.arguments) for c in calls], context)

    async def _call_wire_many(self, calls: list[WireCall], context: ContextLike) -> list[ToolResult]:
        errors = _actor_errors()
        if self._recovering:
            await self._wait_until_back()
        started = time.perf_counter()
        self._in_flight += 1
        try:
            return await self._remote_call_many(calls, context)
        except errors as exc:  # the actor died with these calls in flight
            first_error: BaseException = exc
            self._recovering = True
        finally:
            self._in_flight -= 1
        idempotent = await self._safe_flags()
        return list(await asyncio.gather(*(self._retry_one(c, context, first_error, c[1] in idempotent, started)
                                           for c in calls)))

    async def _remote_call_many(self, calls: list[WireCall], context: ContextLike) -> list[ToolResult]:
        wire = getattr(self.proxy, "call_wire", None) if self._wire is not False else None
        if wire is None:  # a plain registry behind the proxy
            self._wire = False
            return await self.proxy.call_many(
                [ToolCall.model_construct(id=cid, name=name, arguments=args) for cid, name, args in calls], context)
        ctx = context.model_dump() if isinstance(context, ToolContext) else context
        rows = await wire(calls, ctx)
        return [result_from_row(r) for r in rows]  # rows of validated results: no second validation

    async def _wait_until_back(self, timeout_s: float = 60.0) -> None:
        """After a crash, ping the hub until its restarted actor answers (or give up quietly: the
        next call then reports what Ray says)."""
        deadline = time.monotonic() + timeout_s
        delay = self.retry_delay_s
        while time.monotonic() < deadline:
            try:
                await self.proxy.info()
                self._recovering = False
                return
            except _actor_errors():
                if _dead_for_good(self.proxy):  # no restart is coming: do not wait for one
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _safe_flags(self) -> set[str]:
        for attempt in range(self.retries + 3):
            try:
                return await self._flags()
            except _actor_errors():
                await asyncio.sleep(self.retry_delay_s * (attempt + 1))
        return set()  # the hub does not come back: nothing is retried

    async def _retry_one(self, call: WireCall, context: ContextLike, error: BaseException, idempotent: bool,
                         started: float) -> ToolResult:
        if not idempotent:
            return self._crash_result(call, error, retried=0, idempotent=False, started=started)
        for attempt in range(1, self.retries + 1):
            await asyncio.sleep(self.retry_delay_s * attempt)
            # a restart can take seconds on a busy machine: a retry sent before the restarted actor
            # answers fails at once ("the actor is restarting") and used up the retries for nothing
            await self._wait_until_back()
            try:
                return (await self._remote_call_many([call], context))[0]
            except _actor_errors() as exc:
                error = exc
        return self._crash_result(call, error, retried=self.retries, idempotent=True, started=started)


def _dead_for_good(proxy: Any) -> bool:
    """Whether Ray's actor table says the hub's actor is DEAD (no restarts left): asked only after a
    failed call, so a crashed hub that will not come back is not waited for."""
    actor_id = getattr(getattr(proxy, "actor_handle", None), "_actor_id", None)
    if actor_id is None:
        return False
    try:
        from ray._private import state

        info = state.actors(actor_id=actor_id.hex())
    except Exception:  # noqa: BLE001 - no answer from the GCS: keep waiting as before
        return False
    return bool(info) and info.get("State") == "DEAD"


def _context_key(context: ContextLike) -> str:
    if context is None or isinstance(context, str):
        return context or ""
    if isinstance(context, ToolContext):
        return context.model_dump_json()
    return json.dumps(context, sort_keys=True, default=str)


def deploy_hub(domain: str, tools: Iterable[Tool | type[Tool]], *, remote: bool = True, max_concurrency: int = 16,
               default_timeout_s: float = 30.0, name: str | None = None, max_restarts: int = 3, retries: int = 2,
               **ray_options: Any) -> ToolHub | HubClient:
    """A hub in-process (`remote=False`) or as a restartable Ray actor wrapped in a HubClient.

    `ray_options` are Ray actor options: num_cpus, num_gpus, resources, runtime_env, ...
    """
    from raygent import runtime

    init_kwargs = {"domain": domain, "tools": list(tools), "max_concurrency": max_concurrency,
                   "default_timeout_s": default_timeout_s}
    if not remote:
        return ToolHub(**init_kwargs)
    proxy = runtime.deploy(ToolHub, remote=True, init_kwargs=init_kwargs, name=name, max_restarts=max_restarts,
                           max_concurrency=max(64, max_concurrency + 8), **ray_options)
    return HubClient(proxy, retries=retries)


class HubSet:
    """Several hubs seen as one tool registry: merged specs, calls routed by tool name.

    Members may be ToolHubs, plain ToolRegistries, HubClients or actor proxies (wrapped in a
    HubClient for the crash policy). Two hubs offering the same tool name is an error.
    """

    def __init__(self, hubs: Sequence[Any] = ()):
        self.hubs: list[Any] = []
        self._routes: dict[str, Any] = {}
        for h in hubs:
            self.add(h)

    def add(self, hub: Any) -> None:
        from raygent import runtime

        if runtime.is_remote(hub):
            hub = HubClient(hub)
        if not (hasattr(hub, "list_specs") and hasattr(hub, "call_many")):
            raise TypeError(f"not a tool hub: {hub!r} (needs list_specs and call_many)")
        self.hubs.append(hub)
        self._routes = {}

    async def list_specs(self) -> list[ToolSpec]:
        per_hub = await asyncio.gather(*(h.list_specs() for h in self.hubs))
        routes: dict[str, Any] = {}
        specs: list[ToolSpec] = []
        for hub, hub_specs in zip(self.hubs, per_hub):
            for spec in hub_specs:
                if spec.name in routes:
                    raise ValueError(f"tool {spec.name!r} is offered by two hubs ({_label(routes[spec.name])} and "
                                     f"{_label(hub)}); rename one of them")
                routes[spec.name] = hub
                specs.append(spec)
        self._routes = routes
        return specs

    async def info(self) -> list[Any]:
        return list(await asyncio.gather(*(h.info() for h in self.hubs if hasattr(h, "info"))))

    async def call(self, name: str, arguments: dict[str, Any] | None = None, context: ContextLike = None, *,
                   call_id: str | None = None) -> ToolResult:
        call = ToolCall(id=call_id or new_id(), name=name, arguments=arguments or {})
        return (await self.call_many([call], context))[0]

    async def call_many(self, calls: list[ToolCall], context: ContextLike = None) -> list[ToolResult]:
        """Group the calls by hub, run the groups concurrently, return results in call order."""
        if any(c.name not in self._routes for c in calls):
            await self.list_specs()
        groups: dict[int, tuple[Any, list[ToolCall]]] = {}
        results: dict[str, ToolResult] = {}
        for c in calls:
            hub = self._routes.get(c.name)
            if hub is None:
                results[c.id] = ToolResult(call_id=c.id, name=c.name, arguments=c.arguments,
                                           error=f"unknown tool {c.name!r}; available tools: "
                                                 f"{', '.join(sorted(self._routes)) or '(none)'}")
                continue
            groups.setdefault(id(hub), (hub, []))[1].append(c)

        async def run(hub: Any, group: list[ToolCall]) -> None:
            try:
                out = (await hub.call_many(group, context) if isinstance(hub, (ToolHub, HubClient, HubSet))
                       else await hub.call_many(group))
            except Exception as exc:  # a hub that is gone fails its own calls, not the others'
                out = [ToolResult(call_id=c.id, name=c.name, arguments=c.arguments,
                                  error=f"tool hub {_label(hub)} unavailable: {type(exc).__name__}: {exc}")
                       for c in group]
            results.update({r.call_id: r for r in out})

        await asyncio.gather(*(run(hub, group) for hub, group in groups.values()))
        return [results[c.id] for c in calls]

    async def close(self) -> None:
        for h in self.hubs:
            if hasattr(h, "close"):
                await h.close()


def _label(hub: Any) -> str:
    domain = getattr(hub, "domain", None) or getattr(hub, "_domain", None)
    return repr(domain) if domain else type(hub).__name__
