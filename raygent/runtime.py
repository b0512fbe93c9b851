"""Where components live: in this process, or as Ray actors behind the same awaitable methods.

`deploy(component, remote=True)` wraps any raygent component (an instance, or a class plus its
constructor arguments) in a Ray actor and returns an `ActorProxy` whose methods are awaited
exactly like the component's own; async-generator methods (e.g. `stream`) come back as async
iterators through Ray's streaming generators. The agent code is identical for both placements.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")

_DEFAULT_NAMESPACE = "raygent"


class RayUnavailableError(RuntimeError):
    """Ray is missing or cannot be reached."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a core dependency
        raise RayUnavailableError("Ray is not installed: pip install 'ray[serve]'") from exc
    return ray


def init(address: str | None = None, *, num_cpus: int | None = None, namespace: str = _DEFAULT_NAMESPACE,
         **kwargs: Any) -> dict[str, Any]:
    """Connect to Ray once: RAY_ADDRESS / `address` ("auto" or ray://...) or an embedded local Ray.

    Safe to call repeatedly; returns the cluster resources.
    """
    ray = _ray()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        options: dict[str, Any] = {"namespace": namespace, "ignore_reinit_error": True,
                                   "log_to_driver": kwargs.pop("log_to_driver", True)}
        if address is None:
            options["num_cpus"] = num_cpus or max(2, os.cpu_count() or 2)
            options["include_dashboard"] = kwargs.pop("include_dashboard", False)
        options.update(kwargs)
        ray.init(address=address, **options)
    return dict(ray.cluster_resources())


def shutdown() -> None:
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()


class _ComponentHost:
    """The actor body: owns one component and forwards method calls to it."""

    def __init__(self, factory: Any, args: tuple, kwargs: dict):
        self.component = factory(*args, **kwargs) if callable(factory) and inspect.isclass(factory) else factory

    async def invoke(self, method: str, args: tuple, kwargs: dict) -> Any:
        fn = getattr(self.component, method)
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def invoke_stream(self, method: str, args: tuple, kwargs: dict) -> Any:
        async for item in getattr(self.component, method)(*args, **kwargs):
            yield item

    def describe(self) -> dict[str, str]:
        """Method name -> 'async' | 'stream' | 'sync', so the proxy knows how to call each."""
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


class ActorProxy:
    """The component's interface, backed by a Ray actor. Every method is awaitable (or an async
    iterator for async-generator methods), whatever the component's own method was."""

    def __init__(self, handle: Any, methods: dict[str, str], name: str | None = None):
        self._handle = handle
        self._methods = methods
        self._name = name

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
                return _stream(handle, method, args, kwargs)
            return stream_call

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await handle.invoke.remote(method, args, kwargs)
        return call

    def __repr__(self) -> str:
        return f"ActorProxy(name={self._name!r}, methods={sorted(self._methods)})"

    def __reduce__(self) -> Any:
        return (ActorProxy, (self._handle, self._methods, self._name))


async def _stream(handle: Any, method: str, args: tuple, kwargs: dict) -> AsyncIterator[Any]:
    gen = handle.invoke_stream.options(num_returns="streaming").remote(method, args, kwargs)
    async for ref in gen:
        yield await ref


def deploy(component: T | type[T], *args: Any, remote: bool = True, name: str | None = None,
           get_if_exists: bool = True, max_restarts: int = 3, max_task_retries: int = 0,
           max_concurrency: int = 64, init_kwargs: dict[str, Any] | None = None, **ray_options: Any) -> T:
    """Place a component. `remote=False` returns it unchanged (constructing it if a class).

    `remote=True` starts (or, with `name` and `get_if_exists`, finds) a Ray actor hosting it and
    returns an ActorProxy with the same awaitable methods. Pass a class plus `*args` /
    `init_kwargs` for components that must be built inside the actor (e.g. models that hold native
    memory); an instance is shipped by pickling. Other keyword arguments are Ray actor options
    (num_cpus, num_gpus, resources, scheduling_strategy, runtime_env, ...).
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
    return ActorProxy(handle, methods, name)  # type: ignore[return-value]


def is_remote(component: Any) -> bool:
    return isinstance(component, ActorProxy)


def kill(component: Any, *, no_restart: bool = True) -> None:
    """Kill the actor behind a proxy (for tests and clean-up); in-process components are ignored."""
    if isinstance(component, ActorProxy):
        _ray().kill(component.actor_handle, no_restart=no_restart)
