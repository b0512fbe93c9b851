"""Where components live: in this process, or as Ray actors behind the same awaitable methods.

`deploy(component, remote=True)` wraps any raygent component (an instance, or a class plus its
constructor arguments) in a Ray actor and returns an `ActorProxy` whose methods are awaited
exactly like the component's own; async-generator methods (e.g. `stream`) come back as async
iterators through Ray's streaming generators. The agent code is identical for both placements.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from raygent import ray_env
from raygent.telemetry.tracing import carrier as _trace_carrier
from raygent.telemetry.tracing import remote_span as _remote_span

#: the keyword argument that carries the caller's span (W3C traceparent + run id) to the actor
TRACE_KWARG = "__raygent_trace__"

T = TypeVar("T")

log = logging.getLogger(__name__)

_DEFAULT_NAMESPACE = "raygent"
_RESTART_WAIT_S = 60.0  # how long a proxy waits for a restarting actor before giving Ray's error


class RayUnavailableError(RuntimeError):
    """Ray is missing or cannot be reached."""


class ComponentUnavailableError(RuntimeError):
    """The actor behind a proxy died (or its channel broke) during a call."""


_died_error: type[ComponentUnavailableError] | None = None


def _component_died(message: str) -> ComponentUnavailableError:
    """The error for a call whose actor died under the socket lane: a ComponentUnavailableError
    that is also Ray's RayActorError, so code written for plain actor calls catches it as before."""
    global _died_error
    if _died_error is None:
        from ray.exceptions import RayActorError

        class ComponentDiedError(ComponentUnavailableError, RayActorError):
            def __init__(self, message: str):
                RayActorError.__init__(self, error_msg=message)
                self.args = (message,)

        _died_error = ComponentDiedError
    return _died_error(message)


def _name_actor_error(exc: BaseException, name: str) -> None:
    """Say which component a Ray actor error is about: Ray's own message (a call to an actor on
    another node, or one made while the actor restarts) names only the actor id. Errors the
    component raised itself (RayTaskError) are left alone: they say what failed inside it."""
    ray = _ray()
    if isinstance(exc, ray.exceptions.RayActorError) and not isinstance(exc, ray.exceptions.RayTaskError):
        message = getattr(exc, "error_msg", None)
        if isinstance(message, str) and name not in message:
            exc.error_msg = f"{name}: {message}"


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a core dependency
        raise RayUnavailableError("Ray is not installed: pip install 'ray[serve]'") from exc
    return ray


#: Kept for callers of the old name: the lean settings now live in `raygent.ray_env.LEAN`.
LEAN_LOCAL_RAY_ENV: dict[str, str] = ray_env.LEAN


def init(address: str | None = None, *, num_cpus: int | None = None, namespace: str = _DEFAULT_NAMESPACE,
         lean: bool = True, serve_fast_path: bool = True, ingress: str | None = None,
         **kwargs: Any) -> dict[str, Any]:
    """Connect to Ray once: RAY_ADDRESS / `address` ("auto" or ray://...) or an embedded local Ray.

    An embedded Ray starts with the environment of `raygent.ray_env.local_ray_env` (lean settings,
    Serve's gRPC handles; `ingress="haproxy"` for Serve's HAProxy ingress,
    default $RAYGENT_SERVE_INGRESS or "proxy"). Safe to call repeatedly; returns the cluster resources.
    Asking for the HAProxy ingress when Ray is already up without it raises: Ray's processes read it
    only at start.
    """
    global _started_ingress
    ray = _ray()
    ingress = ingress or os.environ.get("RAYGENT_SERVE_INGRESS") or "proxy"
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        options: dict[str, Any] = {"namespace": namespace, "ignore_reinit_error": True,
                                   "log_to_driver": kwargs.pop("log_to_driver", True)}
        env: dict[str, str] = {}
        if address is None:
            options["num_cpus"] = num_cpus or max(2, os.cpu_count() or 2)
            options["include_dashboard"] = kwargs.pop("include_dashboard", False)
            env = ray_env.local_ray_env(lean=lean, serve_fast_path=serve_fast_path, ingress=ingress)
        options.update(kwargs)
        with ray_env.started_with(env):
            ray.init(address=address, **options)
        _started_ingress = ingress if address is None else "cluster"
    elif ingress == "haproxy" and _started_ingress == "proxy":
        raise ray_env.IngressUnavailableError(
            "this process's Ray started with Serve's HTTP proxy ingress; the HAProxy ingress has to be chosen "
            "before Ray starts (RAYGENT_SERVE_INGRESS=haproxy, or serve on a fresh process)")
    return dict(ray.cluster_resources())


_started_ingress: str | None = None  # how this process's Ray was started (for a late ingress choice)


def shutdown() -> None:
    ray = _ray()
    _close_all_lanes()
    if ray.is_initialized():
        ray.shutdown()


def _call_autostart(method: str, attempts: int = 50) -> None:
    """Call the component's autostart method on its own actor, and see it answered.

    The call goes through the actor's own handle, from a thread (the constructor must return
    first). A call made while Ray still marks the actor as restarting can fail with an actor error
    although this life is up ("The actor is restarting"; measured: about one restart in twenty-five
    when kills come less than a second apart); it is retried (the method must be idempotent), else
    the component would sit idle in a live actor."""
    ray = _ray()
    handle = ray.get_runtime_context().current_actor
    for attempt in range(attempts):
        try:
            ray.get(handle.invoke.remote(method, (), {}))
            return
        except ray.exceptions.RayActorError as exc:
            log.debug("autostart %r, attempt %d: %s", method, attempt + 1, exc)
            time.sleep(min(1.0, 0.05 * (attempt + 1)))
        except Exception:
            log.exception("autostart %r failed", method)
            return
    log.error("autostart %r: the actor could not be reached in %d attempts", method, attempts)


class _ComponentHost:
    """The actor body: owns one component and forwards method calls to it."""

    _loop: asyncio.AbstractEventLoop | None = None
    _lane_server: Any = None

    def __init__(self, factory: Any, args: tuple, kwargs: dict):
        self.component = factory(*args, **kwargs) if callable(factory) and inspect.isclass(factory) else factory
        # a component naming an `__autostart__` method gets it called once the actor is up, on
        # every start: after a crash Ray restarts the actor and nobody else would call it
        autostart = getattr(self.component, "__autostart__", None)
        if autostart:
            threading.Thread(target=_call_autostart, args=(autostart,), name="raygent-autostart", daemon=True).start()

    async def invoke(self, method: str, args: tuple, kwargs: dict) -> Any:
        fn = getattr(self.component, method)
        trace = kwargs.pop(TRACE_KWARG, None) if kwargs else None
        if trace is not None:  # a call made inside a traced run: a child span of the caller's, here
            with _remote_span(trace, f"{type(self.component).__name__}.{method}"):
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def invoke_packed(self, blob: bytes) -> bytes:
        """`invoke` with the call and its result packed as one pickle each way.

        Ray (de)serialises every argument separately through its object-ref-aware serialiser;
        one opaque bytes argument skips that work (0.4-0.6 ms of a ~1.5 ms call, measured).
        """
        method, args, kwargs = pickle.loads(blob)
        return _pack(await self.invoke(method, args, kwargs))

    async def invoke_stream(self, method: str, args: tuple, kwargs: dict) -> Any:
        trace = kwargs.pop(TRACE_KWARG, None) if kwargs else None
        with _remote_span(trace, f"{type(self.component).__name__}.{method}"):
            async for item in getattr(self.component, method)(*args, **kwargs):
                yield item

    def invoke_lane(self, blob: bytes) -> bytes:
        """The fast lane's entry (a Ray compiled graph runs it on a background thread): the call
        runs on the actor's event loop, like every other call, so components see one loop."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            raise RuntimeError("invoke_lane is only for the compiled fast lane")
        method, args, kwargs = pickle.loads(blob)
        return _pack(asyncio.run_coroutine_threadsafe(self.invoke(method, args, kwargs), loop).result())

    async def describe(self) -> dict[str, str]:
        """Method name -> 'async' | 'stream' | 'sync', so the proxy knows how to call each."""
        self._loop = asyncio.get_running_loop()
        out: dict[str, str] = {}
        for name in dir(type(self.component)):
            if name.startswith("_"):
                continue
            attr = getattr(type(self.component), name, None)
            if inspect.isasyncgenfunction(attr):
                out[name] = "stream"
            elif inspect.iscoroutinefunction(attr):
                out[name] = "async"
            elif callable(attr) and not isinstance(attr, type):
                out[name] = "sync"
        return out

    def ping(self) -> int:
        return os.getpid()

    async def open_socket_lane(self) -> dict[str, Any] | None:
        """Serve calls over a Unix socket on this actor's event loop (see raygent.socket_lane);
        the path, and the node, so that only a caller on the same node connects."""
        if not hasattr(socket, "AF_UNIX"):
            return None  # e.g. Windows
        if self._lane_server is None:
            self._lane_server = socket_lane_mod().LaneServer(self.invoke, _pack)
        path = await self._lane_server.start()
        return {"path": path, "node_id": _ray().get_runtime_context().get_node_id(), "pid": os.getpid()}


class ActorProxy:
    """The component's interface, backed by a Ray actor. Every method is awaitable (or an async
    iterator for async-generator methods), whatever the component's own method was."""

    def __init__(self, handle: Any, methods: dict[str, str], name: str | None = None,
                 fast_lane: bool | None = None, resend_on_death: bool = False):
        self._handle = handle
        self._methods = methods
        self._name = name
        self._fast_lane = fast_lane
        self._resend = resend_on_death
        # a Unix socket when the actor is on this node (unless fast_lane=False); for an actor on
        # another node, a compiled graph with fast_lane=True, plain actor calls otherwise
        self._socket = _socket_route(handle, name, resend_on_death) if fast_lane is not False else None
        self._lane = _FastLane(handle, name) if fast_lane else None

    @property
    def actor_handle(self) -> Any:
        return self._handle

    @property
    def actor_name(self) -> str | None:
        return self._name

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        kind = self._methods.get(method)
        if kind is None:
            raise AttributeError(f"remote component has no public method {method!r}")
        handle = self._handle
        if kind == "stream":
            def stream_call(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                trace = _trace_carrier()
                if trace is not None:
                    kwargs[TRACE_KWARG] = trace
                return _stream(handle, method, args, kwargs)
            return stream_call

        route, lane = self._socket, self._lane

        async def call(*args: Any, **kwargs: Any) -> Any:
            trace = _trace_carrier()
            if trace is not None:  # the actor runs the call under the caller's span
                kwargs[TRACE_KWARG] = trace
            try:
                blob = _pack((method, args, kwargs))
            except Exception:  # e.g. ObjectRefs in the arguments: Ray's own serialiser handles them
                return await handle.invoke.remote(method, args, kwargs)
            if route is not None and not route.disabled:
                if route.available():
                    return pickle.loads(await route.call(blob))
            elif lane is not None and lane.available():
                return pickle.loads(await lane.call(blob))
            return pickle.loads(await handle.invoke_packed.remote(blob))
        if not self._name:
            return call
        name = self._name

        async def named_call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await call(*args, **kwargs)
            except Exception as exc:
                _name_actor_error(exc, name)
                raise
        return named_call

    def __repr__(self) -> str:
        return f"ActorProxy(name={self._name!r}, methods={sorted(self._methods)})"

    def __reduce__(self) -> Any:
        return (ActorProxy, (self._handle, self._methods, self._name, self._fast_lane, self._resend))

    def close_lane(self) -> None:
        if self._socket is not None:
            self._socket.close()
        if self._lane is not None:
            self._lane.close()


# strong references: a lane whose proxy was dropped still owns a live compiled graph to tear down
_open_lanes: set[_FastLane] = set()
# weak ones for socket routes: a dropped proxy closes its connection (see _SocketRoute._open)
_routes_by_actor: weakref.WeakValueDictionary[tuple[Any, bool], _SocketRoute] = weakref.WeakValueDictionary()
_exit_hook_installed = False


def _socket_route(handle: Any, name: str | None, resend_on_death: bool) -> _SocketRoute:
    """The route to this actor shared by every proxy of it in this process (several `deploy(...,
    get_if_exists=True)` calls, proxies unpickled per request): one connection per actor, and a
    new proxy's first call skips the Ray call that opens a lane."""
    key = (handle, resend_on_death)  # an actor handle hashes and compares by actor id
    route = _routes_by_actor.get(key)
    if route is None or route.closed:
        route = _routes_by_actor[key] = _SocketRoute(handle, name, resend_on_death)
    return route


def _close_all_lanes() -> None:
    for lane in [*_open_lanes, *_routes_by_actor.values()]:
        lane.close()


def _install_exit_hook() -> None:
    """Tear lanes down before interpreter exit joins threads: a compiled graph's reader thread
    would otherwise keep a script that forgot `runtime.shutdown()` from exiting. Threading's own
    exit hooks run before `atexit`, and in reverse order, so register there (after the executors')."""
    global _exit_hook_installed
    if not _exit_hook_installed:
        import threading

        register = getattr(threading, "_register_atexit", None)
        (register or __import__("atexit").register)(_close_all_lanes)
        _exit_hook_installed = True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def socket_lane_mod() -> Any:
    from raygent import socket_lane

    return socket_lane


class _SocketRoute:
    """Every proxy's first choice: calls over a Unix socket to an actor on this node (about
    0.1 ms instead of 1.2-1.6 ms; see raygent.socket_lane). Found on the first call; an actor on
    another node, or a platform without Unix sockets, disables it for good (Ray calls, or the
    compiled graph with `fast_lane=True`, then take over). When the actor dies with calls in flight they fail with
    ComponentUnavailableError at once; the next call reconnects to the restarted actor (Ray's
    call for the socket path waits for the restart) or, if it is gone, gets Ray's own error."""

    def __init__(self, handle: Any, name: str | None, resend_on_death: bool = False):
        self._handle = handle
        self._name = name
        self._resend = resend_on_death
        self._lane: Any = None
        self._connecting: asyncio.Future[Any] | None = None
        self._pid = os.getpid()  # a forked child uses normal calls
        self._closer: weakref.finalize | None = None
        self._closed = False
        self.disabled = False

    def available(self) -> bool:
        if self._lane is not None:
            return self._lane.usable_here()
        return _running_loop() is not None and os.getpid() == self._pid

    async def call(self, blob: bytes) -> bytes:
        lane = self._lane
        if lane is None or not lane.connected:
            lane = await self._connect()
            if lane is None:  # not here after all, or the actor is gone: the normal path says why
                return await self._handle.invoke_packed.remote(blob)
        try:
            return await lane.call(blob)
        except socket_lane_mod().LaneClosedError as exc:
            if self._resend:  # max_task_retries: Ray's path runs it again on the restarted actor
                return await self._handle.invoke_packed.remote(blob)
            raise _component_died(
                f"{self._name or 'the actor'} died or became unreachable during a call ({exc}); the "
                f"next call reconnects once Ray has restarted it") from exc

    async def _connect(self) -> Any:
        if self._connecting is not None:  # another call is connecting: share its result
            return await asyncio.shield(self._connecting)
        waiting = self._connecting = asyncio.get_running_loop().create_future()
        lane = None
        try:
            lane = await self._open()
        finally:
            self._connecting = None
            waiting.set_result(lane)
        return lane

    async def _open(self) -> Any:
        ray = _ray()
        try:
            info = await self._ask_for_socket(ray)
        except ray.exceptions.RayActorError:
            return None  # dead for good: the normal call raises Ray's error
        except Exception as exc:  # noqa: BLE001 - e.g. an actor from an older raygent
            return self._disable(f"the actor cannot open one ({type(exc).__name__}: {exc})")
        if info is None:
            return self._disable("no Unix sockets on this platform")
        if info["node_id"] != ray.get_runtime_context().get_node_id():
            return self._disable("the actor runs on another node")
        lane = socket_lane_mod().SocketLane(info["path"])
        try:
            await lane.connect()
        except OSError as exc:
            return self._disable(f"cannot connect to {info['path']} ({exc})")
        old, self._lane = self._lane, lane
        if old is not None:
            old.close()
        # the connection lives as long as this route: its reader task keeps the SocketLane alive,
        # so without this a dropped proxy (e.g. one unpickled per request) would leak a socket on
        # both ends
        if self._closer is not None:
            self._closer.detach()
        self._closer = weakref.finalize(self, lane.close)
        return lane

    async def _ask_for_socket(self, ray: Any) -> Any:
        """The actor's socket address. A call made just after the actor died (the lane notices
        before Ray does) can reach the dead instance and fail as temporarily unavailable; asking is
        harmless, so ask again until the restarted actor answers (CI once failed a user's next
        call there instead of waiting for the restart)."""
        deadline, pause = time.monotonic() + _RESTART_WAIT_S, 0.05
        while True:
            try:
                return await self._handle.open_socket_lane.remote()
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() + pause > deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _disable(self, why: str) -> None:
        log.info("socket lane to %s unavailable, using other calls: %s", self._name or "actor", why)
        self.disabled = True
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self.disabled = self._closed = True
        if self._closer is not None:
            self._closer.detach()
            self._closer = None
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.close()


class _FastLane:
    """A Ray compiled graph from this process to the actor: about half the latency of an actor
    call (shared-memory channels instead of a task submission per call).

    Compiled graphs are a beta Ray API with hard limits, so the lane is strictly an optimisation:
    one graph per actor (another process's proxy just uses normal calls), only the compiling
    process may use it, one call in flight (concurrent calls take the normal path rather than
    queue behind a slow one), and any failure to compile falls back to normal calls for good.
    A component exception comes back exactly as on the normal path; a broken channel (the actor
    died) closes the lane and raises ComponentUnavailableError.
    """

    def __init__(self, handle: Any, name: str | None):
        self._handle = handle
        self._name = name
        self._pid = os.getpid()
        self._graph: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = False
        self._disabled = False
        self._actor_pid: int | None = None  # learnt when the graph is compiled; a change means a restart

    def available(self) -> bool:
        if self._disabled or self._busy or os.getpid() != self._pid:
            return False
        loop = _running_loop()
        return loop is not None and (self._loop is None or self._loop is loop)

    def _compile(self) -> bool:
        from ray.dag import InputNode

        try:
            with InputNode() as request:
                dag = self._handle.invoke_lane.bind(request)
            self._graph = dag.experimental_compile(enable_asyncio=True)
        except Exception as exc:  # e.g. the actor already serves another process's graph
            log.info("fast lane to %s unavailable, using normal actor calls: %s", self._name or "actor", exc)
            self._disabled = True
            return False
        self._loop = asyncio.get_running_loop()
        _open_lanes.add(self)
        _install_exit_hook()
        return True

    async def call(self, blob: bytes) -> bytes:
        import ray

        self._busy = True
        try:
            if self._graph is None:
                self._actor_pid = await self._handle.ping.remote()
                if not self._compile():
                    return await self._handle.invoke_packed.remote(blob)
            try:
                return await self._result(await self._graph.execute_async(blob))
            except ray.exceptions.RayTaskError:
                raise  # the component raised: same exception as on the normal path
            except Exception as exc:
                self.close()
                raise ComponentUnavailableError(
                    f"{self._name or 'actor'} became unreachable during a call ({type(exc).__name__}: {exc}); "
                    f"later calls use normal actor calls") from exc
        finally:
            self._busy = False

    async def _result(self, future: Any) -> bytes:
        """Await a lane result, watching the graph while it is pending.

        When the actor dies, Ray's graph monitor may tear the graph down without ever resolving
        the pending result (seen under load: the caller waited forever). So a call still pending
        after `_WATCH_S` is checked every `_WATCH_S`: a torn-down graph, a finished monitor thread
        or a restarted actor (its pid changed) ends the wait with a channel error.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        state: dict[str, Any] = {"broken": None, "ping": None}

        def check() -> None:
            why = self._broken(state)
            if why is not None and task is not None:
                state["broken"] = why
                task.cancel()
            else:
                state["timer"] = loop.call_later(_WATCH_S, check)

        state["timer"] = loop.call_later(_WATCH_S, check)
        try:
            return await future
        except asyncio.CancelledError:
            if state["broken"] is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: undo our own cancel request
            if uncancel is not None:
                uncancel()
            raise _LaneBroken(state["broken"]) from None
        finally:
            state["timer"].cancel()
            if state["ping"] is not None:
                state["ping"].cancel()

    def _broken(self, state: dict[str, Any]) -> str | None:
        graph = self._graph
        if graph is None or getattr(graph, "is_teardown", False):
            return "the compiled graph was torn down"
        monitor = getattr(graph, "_monitor", None)
        if monitor is not None and not monitor.is_alive():
            return "the compiled graph's worker task ended (the actor died)"
        ping = state["ping"]
        if ping is not None and ping.done():  # the previous check's ping answered
            state["ping"] = None
            try:
                if ping.result() != self._actor_pid:
                    return "the actor was restarted"
            except Exception as exc:  # noqa: BLE001 - the actor is gone
                return f"the actor is unreachable ({type(exc).__name__})"
        if state["ping"] is None and self._actor_pid is not None:
            state["ping"] = asyncio.ensure_future(_await_ref(self._handle.ping.remote()))
        return None

    def close(self) -> None:
        self._disabled = True
        _open_lanes.discard(self)
        graph, self._graph = self._graph, None
        if graph is not None:
            try:
                graph.teardown()
            except Exception as exc:  # a dead actor's graph may fail to tear down cleanly
                log.debug("fast lane teardown: %s", exc)


_WATCH_S = 0.5  # how often a pending fast-lane call checks that its actor is still the same


class _LaneBroken(Exception):
    """The lane's graph or actor went away while a call was pending (see `_FastLane._result`)."""


async def _await_ref(ref: Any) -> Any:
    return await ref


def _pack(value: Any) -> bytes:
    """Plain pickle (fast, C) for importable types; cloudpickle for the rest (lambdas, local classes).
    ObjectRefs are refused so that they keep Ray's reference counting."""
    if _contains_object_ref(value):
        raise TypeError("ObjectRefs travel through Ray's serialiser")
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        from ray import cloudpickle

        return cloudpickle.dumps(value, protocol=5)


def _contains_object_ref(value: Any, depth: int = 0) -> bool:
    import ray

    if isinstance(value, ray.ObjectRef):
        return True
    if depth < 2 and isinstance(value, (list, tuple)):
        return any(_contains_object_ref(v, depth + 1) for v in value)
    if depth < 2 and isinstance(value, dict):
        return any(_contains_object_ref(v, depth + 1) for v in value.values())
    return False


async def _stream(handle: Any, method: str, args: tuple, kwargs: dict) -> AsyncIterator[Any]:
    gen = handle.invoke_stream.options(num_returns="streaming").remote(method, args, kwargs)
    async for ref in gen:
        yield await ref


def deploy(component: T | type[T], *args: Any, remote: bool = True, name: str | None = None,
           get_if_exists: bool = True, max_restarts: int = 3, max_task_retries: int = 0,
           max_concurrency: int = 64, init_kwargs: dict[str, Any] | None = None, fast_lane: bool | None = None,
           **ray_options: Any) -> T:
    """Place a component. `remote=False` returns it unchanged (constructing it if a class).

    `remote=True` starts (or, with `name` and `get_if_exists`, finds) a Ray actor hosting it and
    returns an ActorProxy with the same awaitable methods. Pass a class plus `*args` /
    `init_kwargs` for components that must be built inside the actor (e.g. models that hold native
    memory); an instance is shipped by pickling. Other keyword arguments are Ray actor options
    (num_cpus, num_gpus, resources, scheduling_strategy, runtime_env, ...).

    Calls from a process on the actor's node travel over the socket lane (a Unix socket to the
    actor's event loop: ~0.1 ms instead of ~1.3 ms per call; see raygent.socket_lane); from other
    nodes, and with `fast_lane=False`, as Ray actor calls. `fast_lane=True` additionally uses a
    Ray compiled graph for an actor on another node (about half an actor call's latency; see
    _FastLane for its limits). An actor that dies with calls in flight fails them with an error
    that is both ComponentUnavailableError and Ray's RayActorError; with `max_task_retries`, they
    are sent again through Ray instead, as Ray would.
    """
    init_kwargs = dict(init_kwargs or {})
    if not remote:
        return component(*args, **init_kwargs) if inspect.isclass(component) else component  # type: ignore[return-value]
    ray = _ray()
    init()
    options: dict[str, Any] = {"max_restarts": max_restarts, "max_task_retries": max_task_retries,
                               "max_concurrency": max_concurrency, "num_cpus": ray_options.pop("num_cpus", 0)}
    if name:
        options.update(name=name, get_if_exists=get_if_exists, namespace=ray_options.pop("namespace", None) or
                       _DEFAULT_NAMESPACE)
    options.update(ray_options)
    actor_cls = ray.remote(_ComponentHost)
    handle = actor_cls.options(**options).remote(component, args, init_kwargs)
    methods = ray.get(handle.describe.remote())
    return ActorProxy(handle, methods, name, fast_lane, max_task_retries != 0)  # type: ignore[return-value]


def is_remote(component: Any) -> bool:
    return isinstance(component, ActorProxy)


def kill(component: Any, *, no_restart: bool = True, wait_s: float = 10.0) -> None:
    """Kill the actor behind a proxy (for tests and clean-up); in-process components are ignored.

    `ray.kill` only asks for the kill: a call made right after it may still be served. With
    `no_restart`, this waits (up to `wait_s`) until the actor answers no more, so that the next
    call surely gets Ray's error."""
    if isinstance(component, ActorProxy):
        component.close_lane()
        ray = _ray()
        handle = component.actor_handle
        ray.kill(handle, no_restart=no_restart)
        if not no_restart:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                ray.get(handle.__ray_ready__.remote(), timeout=max(0.01, deadline - time.monotonic()))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return
            time.sleep(0.01)
