"""The LLM pool: any chat model served by Ray Serve replicas, reached like a local model.

`serve_model(name, model, ...)` starts a Serve deployment whose replicas (Ray actors) each host
one chat model (any backend); `PooledLLM` is the ChatModel interface over its DeploymentHandle, so
an agent uses the pool exactly as it uses a model in its own process. Serve gives the rest:
replicas with CPUs/GPUs and placement-group bundles (tensor-parallel engines), autoscaling on
ongoing requests, `max_ongoing_requests` per replica and a bounded queue for back-pressure, and
health checks that replace a broken replica.

Failure contract: a request that hits a replica that dies is retried on another replica
(`retries`, default 2) as long as nothing has been returned to the caller yet; a stream that
dies after deltas went out fails with PoolReplicaDiedError (re-sending would duplicate text).
A full pool raises PoolBusyError at once. Nothing hangs: death is detected by Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field
from ray import serve

from raygent.llm_pool.base import ChatModel, as_params
from raygent.llm_pool.errors import BackendError
from raygent.schema import Completion, Delta, GenerationParams, Message, ToolSpec
from raygent.telemetry import metrics as _metrics
from raygent.telemetry.runs import served_call
from raygent.telemetry.tracing import carrier as _trace_carrier

log = logging.getLogger(__name__)

DEFAULT_APP_PREFIX = "raygent-llm-"


class PoolError(BackendError):
    """Base class for pool failures the caller can act on (`status` is the HTTP answer to give)."""

    status = 503


class PoolBusyError(PoolError):
    """Every replica is at max_ongoing_requests and the queue is full: retry later or add replicas."""

    status = 429
    retryable = True


class PoolReplicaDiedError(PoolError):
    """A replica died while serving the request and it could not be retried."""

    status = 503
    retryable = True


class AutoscalingSpec(BaseModel):
    """Serve autoscaling on the number of requests in flight per replica."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 60.0

    def to_serve(self) -> dict[str, Any]:
        return self.model_dump()


class PoolConfig(BaseModel):
    """How one model is served: replicas, resources, placement, back-pressure, health checks."""

    num_replicas: int = 1
    autoscaling: AutoscalingSpec | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_bytes: int | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    accelerator_type: str | None = None
    #: one bundle per engine worker, e.g. [{"GPU": 1}] * tensor_parallel_size; the replica actor
    #: takes the first bundle, the engine's workers the rest
    placement_group_bundles: list[dict[str, float]] | None = None
    placement_group_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_ongoing_requests: int = 4
    #: requests waiting for a replica beyond this are refused at once (-1: unbounded)
    max_queued_requests: int = 64
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    retries: int = 2
    #: load the model in the replica's constructor, so a replica is healthy only once it can serve
    eager_load: bool = True
    #: "conversation": raygent's ConversationRouter (a conversation stays on the replica holding its
    #: KV cache, new conversations go to the least loaded replica); "serve": Serve's default
    #: power-of-two-choices router with multiplexed affinity
    routing: Literal["conversation", "serve"] = "conversation"
    #: how many more requests in flight a conversation's replica may have than the least loaded
    #: replica before the conversation moves there (its prompt is then evaluated again)
    imbalance_threshold: int = Field(default=2, ge=0)

    def deployment_options(self, name: str) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_bytes:
            actor["memory"] = self.memory_bytes
        if self.resources:
            actor["resources"] = dict(self.resources)
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        from raygent.ray_env import replica_actor_options

        opts: dict[str, Any] = {
            "name": name,
            "ray_actor_options": replica_actor_options(actor),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
        }
        if self.routing == "conversation":
            from ray.serve.config import RequestRouterConfig

            from raygent.llm_pool.routing import ROUTER_PATH

            opts["request_router_config"] = RequestRouterConfig(
                request_router_class=ROUTER_PATH,
                request_router_kwargs={"imbalance_threshold": self.imbalance_threshold})
        if self.autoscaling is not None:
            opts["autoscaling_config"] = self.autoscaling.to_serve()  # replaces a fixed num_replicas
        else:
            opts["num_replicas"] = self.num_replicas
        if self.placement_group_bundles:
            # the replica actor itself runs in the first bundle: its resources must fit there
            opts["placement_group_bundles"] = [dict(b) for b in self.placement_group_bundles]
            opts["placement_group_strategy"] = self.placement_group_strategy
        return opts


def _build_model(model: Any, args: tuple, kwargs: dict) -> ChatModel:
    """A model instance, a class (+ args), a factory callable, or a config mapping -> a ChatModel."""
    if isinstance(model, dict):
        from raygent.llm_pool.config import build_chat_model
        from raygent.llm_pool.factory import format_name

        entry = dict(model)
        name = str(entry.pop("name", None) or kwargs.pop("name", None) or "model")
        if "format" in kwargs:  # an override may name the format the seed's way, as an entry may
            kwargs["format"] = format_name(kwargs["format"])
        return build_chat_model(entry, name, **kwargs)
    if inspect.isclass(model) or (callable(model) and not hasattr(model, "chat")):
        return model(*args, **kwargs)
    return model


class ModelServer:
    """The body of one replica: hosts one chat model and exposes the chat interface to Serve."""

    def __init__(self, model: Any, args: tuple = (), kwargs: dict | None = None, eager_load: bool = True):
        self.model = _build_model(model, args, dict(kwargs or {}))
        if eager_load and hasattr(self.model, "load"):
            self.model.load()
        self._healthy = True

    @serve.multiplexed(max_num_models_per_replica=256)
    async def conversation_slot(self, key: str) -> str:
        """Serve's multiplexing, used for conversation affinity: a replica that "loaded" a
        conversation key gets that conversation's later requests, where its KV cache is."""
        return key

    async def _pin(self) -> None:
        key = serve.get_multiplexed_model_id()
        if key:
            await self.conversation_slot(key)

    async def _label(self) -> str:
        """The model's name as the metrics label (what agents see from `get_model_name`)."""
        label = getattr(self, "_metrics_label", None)
        if label is None:
            try:
                label = self._metrics_label = str(await self.model.get_model_name())
            except Exception:
                label = "unknown"
        return label

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None, trace: dict[str, str] | None = None) -> Completion:
        """`trace`: the caller's span (raygent.telemetry.tracing.carrier), so this request's span joins its run."""
        await self._pin()
        call = served_call(await self._label(), trace, False)
        try:
            completion = await self.model.chat(messages, tools, params)
        except BaseException as exc:
            call.end(error=exc)
            raise
        call.end(completion)
        return completion

    async def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                     params: GenerationParams | dict | None = None,
                     trace: dict[str, str] | None = None) -> AsyncIterator[Delta]:
        await self._pin()
        call = served_call(await self._label(), trace, True)
        final = None
        try:
            async for delta in self.model.stream(messages, tools, params):
                call.token()
                if delta.finish_reason is not None:
                    final = delta
                yield delta
        except BaseException as exc:
            call.end(error=exc)
            raise
        call.end(final)

    async def get_model_name(self) -> str:
        return await self.model.get_model_name()

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """The hosted model's own token count (memory budgets); a tokenizer estimate when it has none."""
        own = getattr(self.model, "count_tokens", None)
        if own is not None:
            result = own(messages)
            return await result if inspect.isawaitable(result) else result
        from raygent.memory.tokens import fallback_counter

        return fallback_counter()(list(messages))

    async def replica_info(self) -> dict[str, Any]:
        """Which process serves: for tests, benchmarks and debugging placement."""
        from ray import serve

        ctx = serve.get_replica_context()
        batching = getattr(self.model, "batch_stats", None)
        return {"pid": os.getpid(), "replica": ctx.replica_tag if ctx else None,
                "node": __import__("ray").get_runtime_context().get_node_id(),
                "batching": batching() if callable(batching) else None}

    async def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy and replaces it."""
        check = getattr(self.model, "check_health", None)
        if check is not None:
            result = check()
            if inspect.isawaitable(result):
                await result


def model_app(name: str, model: Any, *args: Any, pool: PoolConfig | dict | None = None, **kwargs: Any) -> Any:
    """The Serve Application for one model (bind it into a bigger app, or `serve.run` it)."""
    from ray import serve

    pool = pool if isinstance(pool, PoolConfig) else PoolConfig(**(pool or {}))
    deployment = serve.deployment(ModelServer).options(**pool.deployment_options(name))
    return deployment.bind(model, args, kwargs, pool.eager_load)


def serve_model(name: str, model: Any, *args: Any, pool: PoolConfig | dict | None = None,
                app_name: str | None = None, **kwargs: Any) -> PooledLLM:
    """Deploy `model` (instance, class + args, factory, or config mapping) as a Serve app and
    return a PooledLLM over it. Blocks until the replicas are up (models loaded)."""
    from ray import serve

    from raygent import runtime

    runtime.init()
    pool = pool if isinstance(pool, PoolConfig) else PoolConfig(**(pool or {}))
    app_name = app_name or DEFAULT_APP_PREFIX + name
    handle = serve.run(model_app(name, model, *args, pool=pool, **kwargs), name=app_name, route_prefix=None)
    return PooledLLM(handle, retries=pool.retries, name=name)


@contextlib.contextmanager
def own_request_id() -> Iterator[None]:
    """Give a pool call made inside a Serve replica an internal request id of its own.

    Serve stamps a call made while handling a request with that request's internal id, so an
    agent replica's concurrent model calls (a turn's token counts, parallel runs) all carried one
    id; Serve's router matches pending requests by that id, and with more calls than the pool's
    free slots the extra ones were never routed (measured: the second turn of a served session
    hung until cancelled). The public request id and cancellation with the parent stay."""
    from ray.serve import context as serve_context
    from ray.serve._private.utils import generate_request_id

    current = serve_context._serve_request_context.get()
    if current is None or not current._internal_request_id:
        yield
        return
    token = serve_context._serve_request_context.set(
        dataclasses.replace(current, _internal_request_id=generate_request_id()))
    try:
        yield
    finally:
        serve_context._serve_request_context.reset(token)


def _is_replica_death(exc: BaseException) -> bool:
    import ray

    names = {"ActorDiedError", "RayActorError", "ActorUnavailableError", "ActorUnschedulableError"}
    return isinstance(exc, ray.exceptions.RayActorError) or type(exc).__name__ in names


def _is_back_pressure(exc: BaseException) -> bool:
    from ray.serve.exceptions import BackPressureError

    return isinstance(exc, BackPressureError)


def conversation_key(messages: Sequence[Message]) -> str | None:
    """A stable id for a conversation: its system prompt and first user message, which every later
    step of an agent run (and every later turn) repeats unchanged."""
    opening = [m for m in messages if m.role in ("system", "user")][:2]
    if not any(m.role == "user" for m in opening):
        return None
    digest = hashlib.sha1()
    for m in opening:
        digest.update(f"{m.role}\x00{m.content if isinstance(m.content, str) else m.content!r}\x00".encode())
    return digest.hexdigest()[:16]


class PooledLLM(ChatModel):
    """ChatModel over a Serve deployment: `chat`, `stream` and `get_model_name` go to a replica.

    With `affinity` (default) the requests of one conversation prefer the replica that served it
    before (Serve's multiplexed routing keyed by `conversation_key`), so its KV cache is reused.
    Picklable (the DeploymentHandle travels), so it can be handed to agents running as actors.
    """

    #: the replicas record the model metrics (raygent.telemetry): the agent loop does not count them again
    records_model_metrics = True

    def __init__(self, handle: Any, *, retries: int = 2, name: str | None = None, affinity: bool = True):
        from raygent.ray_env import with_process_transport

        self._handle = with_process_transport(handle)
        self.affinity = affinity
        self.retries = retries
        self.name = name or getattr(handle, "deployment_name", "pool")
        self.model_name = self.name
        self._served_name: str | None = None  # asked of a replica once
        self._name_request: asyncio.Task[str] | None = None  # that request, shared by concurrent callers

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_name_request": None}  # a task belongs to this process's loop

    @classmethod
    def connect(cls, deployment: str, app_name: str | None = None, *, retries: int = 2) -> PooledLLM:
        """A PooledLLM for a deployment already running (e.g. started by `serve deploy`)."""
        from ray import serve

        app = app_name or DEFAULT_APP_PREFIX + deployment
        return cls(serve.get_deployment_handle(deployment, app_name=app), retries=retries, name=deployment)

    @property
    def handle(self) -> Any:
        return self._handle

    def _routed(self, messages: Sequence[Message] | None, **options: Any) -> Any:
        key = conversation_key(messages) if messages and self.affinity else None
        if key:
            options["multiplexed_model_id"] = key
        return self._handle.options(**options) if options else self._handle

    async def _call(self, method: str, *args: Any, messages: Sequence[Message] | None = None,
                    **kwargs: Any) -> Any:
        last: BaseException | None = None
        handle = self._routed(messages)
        for attempt in range(self.retries + 1):
            try:
                with own_request_id():
                    response = getattr(handle, method).remote(*args, **kwargs)
                return await response
            except Exception as exc:
                if _is_back_pressure(exc):
                    self._rejected()
                    raise PoolBusyError(f"model pool {self.name!r} is full (every replica at max_ongoing_requests "
                                        f"and the queue at max_queued_requests): retry later or add replicas") from exc
                if not _is_replica_death(exc):
                    raise
                last = exc
                log.warning("replica of %s died during %s (attempt %d); retrying", self.name, method, attempt + 1)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise PoolReplicaDiedError(f"model pool {self.name!r}: replicas kept dying during {method} "
                                   f"({self.retries + 1} attempts): {last}") from last

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        trace = _trace_carrier()
        return await self._call("chat", list(messages), list(tools) if tools else None, as_params(params),
                                messages=messages, **({"trace": trace} if trace else {}))

    def _rejected(self) -> None:
        _metrics.MODEL_REJECTED.labels(self._served_name or self.name, "pool_full").inc()

    async def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                     params: GenerationParams | dict | None = None) -> AsyncIterator[Delta]:
        args = (list(messages), list(tools) if tools else None, as_params(params))
        trace = _trace_carrier()
        extra = {"trace": trace} if trace else {}
        for attempt in range(self.retries + 1):
            sent = 0
            try:
                with own_request_id():
                    deltas = self._routed(messages, stream=True).stream.remote(*args, **extra)
                async for delta in deltas:
                    sent += 1
                    yield delta
                return
            except Exception as exc:
                if _is_back_pressure(exc):
                    self._rejected()
                    raise PoolBusyError(f"model pool {self.name!r} is full: retry later or add replicas") from exc
                if not _is_replica_death(exc):
                    raise
                if sent:
                    raise PoolReplicaDiedError(f"model pool {self.name!r}: the replica died after {sent} deltas of "
                                               f"a stream; not retried (it would repeat text)") from exc
                if attempt == self.retries:
                    raise PoolReplicaDiedError(f"model pool {self.name!r}: replicas kept dying before the stream "
                                               f"started ({self.retries + 1} attempts): {exc}") from exc
                log.warning("replica of %s died before streaming (attempt %d); retrying", self.name, attempt + 1)
                await asyncio.sleep(0.05 * (attempt + 1))

    async def get_model_name(self) -> str:
        """The served model's name, asked of a replica once: every agent run asks for it first, and
        8 runs started together sent 8 requests through the router before their first chat."""
        if self._served_name is not None:
            return self._served_name
        loop = asyncio.get_running_loop()
        request = self._name_request
        if request is None or request.get_loop() is not loop:
            request = self._name_request = loop.create_task(self._call("get_model_name"))
        try:
            self._served_name = await asyncio.shield(request)
        finally:
            if request.done() and self._name_request is request:
                self._name_request = None  # a failed request is asked again by the next caller
        return self._served_name

    async def count_tokens(self, messages: Sequence[Message]) -> int:
        return await self._call("count_tokens", list(messages))

    async def replica_info(self) -> dict[str, Any]:
        return await self._call("replica_info")


def delete_model(name: str, app_name: str | None = None) -> None:
    """Remove a model's Serve app (its replicas stop)."""
    from ray import serve

    serve.delete(app_name or DEFAULT_APP_PREFIX + name)

