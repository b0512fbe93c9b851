"""A Coordinator gives a handler (an Agent, or any async function) a mailbox on a MessageHub.

It receives envelopes, runs the handler, sends what the handler returns (a reply, or new
envelopes), then acknowledges. Envelopes it sends while handling get ids derived from the one it is
handling, so a coordinator that crashes mid-way and handles the same envelope again after a restart
re-sends the same ids, which the hub stores once: each message is handled once in effect, and its
consequences appear once. It drops ids it already handled (a redelivery racing an ack).

The same class runs in-process or as a Ray actor (`runtime.deploy(Coordinator, ...)`, started by
`start()`; after a crash Ray restarts the actor, which starts itself again and takes back what its
previous life had not acknowledged). Handling is sequential by default, so each sender's messages
are handled in the order sent; `concurrency=N` opts into N at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from raygent.actors.hub import HubError, RoomCancelledError
from raygent.schema import Envelope, Message

log = logging.getLogger(__name__)

Reply = str | Message | Envelope | Sequence[Envelope] | None
Handler = Callable[[Envelope, "Context"], Awaitable[Reply]]


class Context:
    """What a handler may do while it handles one envelope: send (with derived ids), emit live events."""

    def __init__(self, coordinator: Coordinator, envelope: Envelope):
        self.coordinator = coordinator
        self.envelope = envelope
        self.name = coordinator.name
        self.room = coordinator.room
        self._sent = 0

    def _next_id(self, tag: str) -> str:
        self._sent += 1
        return f"{self.envelope.id}.{tag}{self._sent}"

    def envelope_to(self, recipient: str | None, content: Message | str, *, topic: str | None = None,
                    **fields: Any) -> Envelope:
        message = Message.assistant(content) if isinstance(content, str) else content
        fields.setdefault("correlation_id", self.envelope.correlation_id or self.envelope.id)
        return Envelope(id=self._next_id("s"), sender=self.name, recipient=recipient, topic=topic, room=self.room,
                        content=message, **fields)

    async def send(self, recipient: str, content: Message | str, **fields: Any) -> Envelope:
        """Send a message now (before the handler returns); its id is derived from the envelope being
        handled, so doing this again after a crash does not send a second message."""
        env = self.envelope_to(recipient, content, **fields)
        await self.coordinator.hub.send(env)
        return env

    async def request(self, recipient: str, content: Message | str, *, timeout_s: float = 300.0,
                      **fields: Any) -> Envelope:
        """Send and wait for the reply (request/reply between agents); TimeoutError names the agent."""
        env = self.envelope_to(recipient, content, reply_to=self.coordinator.reply_box, **fields)
        env = env.model_copy(update={"correlation_id": env.id})  # the reply comes back under this id
        return await self.coordinator._request(env, timeout_s)

    async def emit(self, event: dict[str, Any] | str) -> None:
        """A live event for the room's subscribers (not stored)."""
        await self.coordinator.hub.emit(self.room, event, sender=self.name)


class CoordinatorStats(BaseModel):
    name: str
    consumer: str = ""  # which replica of the member
    running: bool
    handled: int = 0
    failed: int = 0
    duplicates_dropped: int = 0
    in_flight: int = 0
    cancelled: str | None = None
    last_error: str | None = None


class Coordinator:
    """A mailbox plus a handler. See the module docstring."""

    def __init__(self, name: str, handler: Any, hub: Any, *, room: str = "default", concurrency: int = 1,
                 batch_size: int | None = None, consumer: str | None = None, poll_s: float = 10.0, dedupe_window: int = 100_000,
                 topics: Sequence[str] = ()):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.handler_spec = handler
        self.hub = hub
        self.room = room
        self.concurrency = concurrency
        # how many envelopes it takes from the hub at once: by default only as many as it can handle
        # now, so replicas sharing a mailbox share a burst; more (prefetch) only pays for a lone
        # consumer of many small messages
        self.batch_size = max(batch_size or concurrency, concurrency)
        self.consumer = consumer or name
        self.poll_s = poll_s
        self.dedupe_window = dedupe_window
        self.topics = list(topics)
        self._handler: Handler | None = None
        self._task: asyncio.Task | None = None
        self._watch: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._held: dict[str, Envelope] = {}
        self._starting: asyncio.Future | None = None
        self.lease_renew_s = 5.0
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._waiting: dict[str, asyncio.Future] = {}
        self._early_replies: dict[str, Envelope] = {}
        self._reply_task: asyncio.Future | None = None
        self._reply_loop_task: asyncio.Future | None = None
        self._stats = CoordinatorStats(name=name, consumer=self.consumer, running=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "handler": self.handler_spec, "hub": self.hub, "room": self.room,
                "concurrency": self.concurrency, "batch_size": self.batch_size, "consumer": self.consumer,
                "poll_s": self.poll_s, "dedupe_window": self.dedupe_window, "topics": self.topics}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("name"), state.pop("handler"), state.pop("hub"), **state)  # type: ignore[misc]

    # -- life cycle ------------------------------------------------------------------------------
    #: as a Ray actor, `start` runs whenever the actor (re)starts (see raygent.runtime)
    __autostart__ = "start"

    async def start(self) -> dict[str, Any]:
        """Register the mailbox (taking back what a previous life left leased) and start handling.
        Idempotent."""
        if self._starting is not None:
            return {"name": self.name, "started": False, **await asyncio.shield(self._starting)}
        self._starting = asyncio.ensure_future(self._start())
        return {"name": self.name, "started": True, **await asyncio.shield(self._starting)}

    async def _start(self) -> dict[str, Any]:
        self._handler = as_handler(self.handler_spec)
        info = await _retry_hub(lambda: self.hub.register(self.name, room=self.room, consumer=self.consumer))
        # renew leases well before the hub's lease ends (three times per lease)
        self.lease_renew_s = max(0.05, min(5.0, float(info.get("lease_s", 15.0)) / 3))
        for topic in self.topics:
            await _retry_hub(lambda t=topic: self.hub.subscribe(t, self.name))
        self._stats.running = True
        self._task = asyncio.ensure_future(self._loop())
        self._watch = asyncio.ensure_future(self._watch_cancel())
        return info

    async def stop(self) -> None:
        """Stop receiving; what is being handled is cancelled and given back to the hub (at once;
        had this process died instead, its leases would run out)."""
        held = list(self._held)
        for task in (self._task, self._watch, self._reply_task, self._reply_loop_task):
            if task is not None:
                task.cancel()
        self._reply_task = self._reply_loop_task = None
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if held and not self._stats.cancelled:
            try:
                await self.hub.nack(self.name, held)
            except Exception:  # the hub is gone too: the leases run out there
                pass
        self._stats.running = False
        self._starting = None

    async def stats(self) -> CoordinatorStats:
        self._stats.in_flight = len(self._running)
        return self._stats.model_copy()

    async def ping(self) -> str:
        return self.name

    # -- the receive loop ------------------------------------------------------------------------
    # One loop receives; `concurrency` workers handle from a local queue of at most `batch_size`
    # envelopes (replies to a handler's own requests come through `reply_box` instead).
    async def _loop(self) -> None:
        queue: asyncio.Queue[Envelope] = asyncio.Queue()
        room = asyncio.Event()
        room.set()
        workers = [asyncio.ensure_future(self._worker(queue, room)) for _ in range(self.concurrency)]
        keeper = asyncio.ensure_future(self._keep_leases())
        try:
            while not self._stats.cancelled:
                while len(self._held) >= self.batch_size:
                    room.clear()
                    await room.wait()
                try:
                    batch = await self.hub.receive(self.name, max_items=self.batch_size - len(self._held),
                                                   timeout_s=self.poll_s, consumer=self.consumer)
                except RoomCancelledError as exc:
                    self._stats.cancelled = str(exc)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the hub is restarting (Ray restarts it): wait, register again
                    self._stats.last_error = f"receive: {type(exc).__name__}: {exc}"
                    await asyncio.sleep(0.2)
                    # claim back what is held here, so the restarted hub does not hand it to a replica
                    await _retry_hub(lambda: self.hub.register(self.name, room=self.room, consumer=self.consumer,
                                                               holding=list(self._held)))
                    continue
                for env in batch:
                    if env.id in self._handled:
                        self._stats.duplicates_dropped += 1
                        await _retry_hub(lambda e=env: self.hub.ack(self.name, [e.id]))
                    elif env.id not in self._held:  # (a redelivery of one still queued here is ignored)
                        self._held[env.id] = env
                        queue.put_nowait(env)
        finally:
            self._stats.running = False
            keeper.cancel()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, queue: asyncio.Queue[Envelope], room: asyncio.Event) -> None:
        """Handles envelopes one after another. While it handles one it is in `_running`: a room's
        cancellation cancels it there (the coordinator stops as a whole then, so no worker has to
        survive that)."""
        me = asyncio.current_task()
        while True:
            env = await queue.get()
            try:
                if not self._stats.cancelled:  # (not one taken just before the room was cancelled)
                    self._running.add(me)  # type: ignore[arg-type]
                    await self._handle(env)
            finally:
                self._running.discard(me)  # type: ignore[arg-type]
                self._held.pop(env.id, None)
                room.set()

    async def _keep_leases(self) -> None:
        """Renew the leases of everything held here (queued or being handled), so the hub does not
        give it to someone else during a long agent run; a coordinator that dies stops renewing
        and its leases run out."""
        while True:
            await asyncio.sleep(self.lease_renew_s)
            if self._held:
                try:
                    await self.hub.extend(self.name, list(self._held))
                except Exception:  # the hub restarted: it re-delivers, and the ids held here are ignored
                    pass

    async def _handle(self, env: Envelope) -> None:
        assert self._handler is not None
        ctx = Context(self, env)
        try:
            try:
                reply = await self._handler(env, ctx)
                error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed on %s: %s", self.name, env.id, exc)
                reply, error = None, f"{type(exc).__name__}: {exc}"
            outgoing = self._outgoing(env, ctx, reply, error)
            self._remember(env.id)
            # the reply and the ack in one call and one commit (retried across a hub restart: the
            # reply's id is derived from the envelope's, so a retry stores nothing twice)
            await _retry_hub(lambda: self.hub.complete(self.name, [env.id], outgoing))
            if error is None:
                self._stats.handled += 1
            else:
                self._stats.failed += 1
                self._stats.last_error = error
        except RoomCancelledError as exc:
            self._stats.cancelled = str(exc)

    def _outgoing(self, env: Envelope, ctx: Context, reply: Reply, error: str | None) -> list[Envelope]:
        if error is not None:
            if env.reply_to is None:
                return []  # nobody waits: the failure is in stats and the log
            return [env.reply(Message.assistant(f"ERROR from {self.name}: {error}"), sender=self.name,
                              headers={"error": error, "consumer": self.consumer})]
        if reply is None:
            return []
        if isinstance(reply, Envelope):
            return [reply]
        if isinstance(reply, (list, tuple)):
            return list(reply)
        if env.reply_to is None:
            return []  # a notification: the handler's return value has no one to go to
        message = Message.assistant(reply) if isinstance(reply, str) else reply
        return [env.reply(message, sender=self.name, artifacts=list(message.artifacts),
                          headers={"consumer": self.consumer})]

    def _remember(self, env_id: str) -> None:
        self._handled[env_id] = None
        while len(self._handled) > self.dedupe_window:
            self._handled.popitem(last=False)

    async def _watch_cancel(self) -> None:
        """Cancel running handlers when the room is cancelled, from whatever process did it."""
        while True:
            try:
                reason = await self.hub.wait_cancelled(self.room, timeout_s=self.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)
                continue
            if reason is not None:
                self._stats.cancelled = reason
                for task in list(self._running):
                    task.cancel()
                return

    # -- request/reply from inside a handler -----------------------------------------------------
    # Replies to a handler's requests come to a mailbox of this replica's own ("name@consumer"),
    # read by a loop of its own: the main mailbox may be shared with other replicas, and its loop
    # is busy while the handler waits.
    @property
    def reply_box(self) -> str:
        return f"{self.name}@{self.consumer}"

    async def _ensure_reply_loop(self) -> None:
        if self._reply_task is None:
            self._reply_task = asyncio.ensure_future(self._start_reply_loop())
        await asyncio.shield(self._reply_task)

    async def _start_reply_loop(self) -> None:
        await _retry_hub(lambda: self.hub.register(self.reply_box, room=self.room, consumer=self.consumer,
                                                   private=True))
        self._reply_loop_task = asyncio.ensure_future(self._reply_loop())

    async def _reply_loop(self) -> None:
        while True:
            try:
                batch = await self.hub.receive(self.reply_box, max_items=64, timeout_s=self.poll_s,
                                               consumer=self.consumer)
            except RoomCancelledError:
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.2)
                continue
            for env in batch:
                key = env.correlation_id or ""
                future = self._waiting.get(key)
                if future is not None and not future.done():
                    future.set_result(env)
                else:  # a reply for a request this replica makes again after a restart
                    self._early_replies[key] = env
            if batch:
                await _retry_hub(lambda b=batch: self.hub.ack(self.reply_box, [e.id for e in b]))

    async def _request(self, env: Envelope, timeout_s: float) -> Envelope:
        await self._ensure_reply_loop()
        early = self._early_replies.pop(env.id, None)
        if early is not None:
            return early
        future = asyncio.get_running_loop().create_future()
        self._waiting[env.id] = future
        try:
            await _retry_hub(lambda: self.hub.send(env))
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self.name}: no reply from {env.recipient!r} within {timeout_s:.0f} s "
                               f"(request {env.id})") from None
        finally:
            self._waiting.pop(env.id, None)


async def _retry_hub(call: Callable[[], Awaitable[Any]], *, wait_s: float = 60.0) -> Any:
    """Call the hub, waiting out a restart (Ray restarts a hub actor; its proxy raises meanwhile).
    Hub errors that are answers (full mailbox, cancelled room, unknown recipient) are raised."""
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return await call()
        except (HubError, asyncio.CancelledError):
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


# -- handlers --------------------------------------------------------------------------------------
class AgentRole(BaseModel):
    """An agent's part in a team: who it is and what it runs on. Built inside the coordinator's
    process (so a model is loaded where the actor is placed)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    system: str | None = None
    llm: Any = None  # a ChatModel (in-process or proxy), a model config dict/name, or None (embedded default)
    tools: Any = None  # tool names (built-ins), Tool objects, a registry/hub, or None
    max_steps: int = 6
    params: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)  # Ray actor options: num_cpus, num_gpus, resources
    replicas: int = 1
    concurrency: int = 1
    keep_history: bool = False  # multi-turn memory across messages (False: each message is a fresh task)

    def build_llm(self) -> Any:
        """The role's chat model: the one given, one built from a config mapping or from the name of
        a configured model (`load_model_configs()`), or the embedded default."""
        llm = self.llm
        if llm is None:
            from raygent.llm_pool.llama_cpp import LlamaCppChatModel

            return LlamaCppChatModel()
        if isinstance(llm, (str, dict)):
            from raygent.llm_pool.config import build_chat_model, load_model_configs

            if isinstance(llm, str):
                configs = load_model_configs()
                if llm not in configs:
                    raise ValueError(f"role {self.name!r}: no model named {llm!r} in the model config "
                                     f"(configured: {', '.join(sorted(configs))})")
                llm = configs[llm]
            return build_chat_model(llm)
        return llm

    def build_agent(self) -> Any:
        from raygent.actors.agent import Agent

        llm = self.build_llm()
        tools = self.tools
        if tools is not None and isinstance(tools, (list, tuple)) and all(isinstance(t, str) for t in tools):
            from raygent.toolhub.builtin import BUILTIN_TOOLS

            unknown = [t for t in tools if t not in BUILTIN_TOOLS]
            if unknown:
                raise ValueError(f"role {self.name!r}: unknown built-in tools {unknown} "
                                 f"(known: {', '.join(sorted(BUILTIN_TOOLS))})")
            tools = [BUILTIN_TOOLS[t]() for t in tools]
        kwargs: dict[str, Any] = {"max_steps": self.max_steps, "params": self.params or None}
        if self.system is not None:
            kwargs["system"] = self.system
        return Agent(llm, tools, **kwargs)


class AgentHandler:
    """Runs an Agent on each envelope's text, streams its step events to the room, replies with
    the answer (and the artifacts its tools made)."""

    def __init__(self, agent: Any, *, keep_history: bool = False):
        self.agent = agent
        self.keep_history = keep_history

    async def __call__(self, env: Envelope, ctx: Context) -> Message:
        if not self.keep_history:
            self.agent.reset()
        result = None
        async for event in self.agent.stream(env.content.content or "", token_stream=False):
            if event.type == "done":
                result = event.result
            else:
                await ctx.emit(_event_dict(event))
        assert result is not None
        if result.error and not result.answer:
            raise RuntimeError(result.error)
        return Message(role="assistant", content=result.answer, name=ctx.name,
                       artifacts=list(result.artifacts),
                       metadata={"tool_calls": [c.model_dump() for c in result.tool_calls], "model": result.model,
                                 "steps": result.steps})


class StructuredHandler:
    """An LLM member whose reply is JSON matching `schema`: the model is asked for one call of a
    function whose parameters are the schema, with tool_choice "required", so backends that
    constrain calls (llama.cpp's grammar, OpenAI's tools) return valid JSON of that shape. The
    reply's content is that JSON; a model that answers in text instead is reported as an error."""

    def __init__(self, llm: Any, schema: dict[str, Any], *, name: str = "submit", description: str = "",
                 system: str | None = None, params: dict[str, Any] | None = None):
        self.llm = llm
        self.schema = schema
        self.name = name
        self.description = description
        self.system = system
        self.params = params or {}

    async def __call__(self, env: Envelope, ctx: Context) -> Message:
        import json

        from raygent.schema import ToolSpec

        llm = self.llm
        if llm is None or isinstance(llm, (str, dict)):
            llm = self.llm = AgentRole(name=ctx.name, llm=llm).build_llm()
        spec = ToolSpec(name=self.name, description=self.description, parameters=self.schema)
        messages = ([Message.system(self.system)] if self.system else []) + [Message.user(env.content.content or "")]
        completion = await llm.chat(messages, [spec], {**self.params, "tool_choice": "required"})
        await ctx.emit({"type": "tool_call", "text": f"{self.name} ({completion.usage.completion_tokens} tokens)"})
        calls = [c for c in completion.tool_calls if c.name == self.name]
        if not calls:
            problems = "; ".join(completion.parse_errors) or f"it answered in text: {completion.text[:200]!r}"
            raise ValueError(f"the model gave no {self.name} call ({problems})")
        return Message(role="assistant", content=json.dumps(calls[0].arguments, ensure_ascii=False), name=ctx.name,
                       metadata={"model": completion.model, "usage": completion.usage.model_dump()})


class ToolHandler:
    """A member that runs one tool per message: the message's content is the arguments (JSON); the
    reply carries the tool's output and artifacts. The tool goes through a ToolRegistry (arguments
    validated, calls time-limited) and is built in the member's own process by `tool_factory` (a
    picklable zero-argument callable, e.g. a Tool class or a functools.partial). A failed call is
    tried `attempts` times, then the message fails with the last error (the asker gets it)."""

    def __init__(self, tool_factory: Callable[[], Any], *, attempts: int = 2, needs_artifacts: bool = True):
        self.tool_factory = tool_factory
        self.attempts = attempts
        self.needs_artifacts = needs_artifacts
        self._registry: Any = None
        self._name = ""

    def _tools(self) -> Any:
        if self._registry is None:
            from raygent.toolhub.registry import ToolRegistry

            tool = self.tool_factory()
            self._registry = ToolRegistry([tool])
            self._name = tool.name
        return self._registry

    def __getstate__(self) -> dict[str, Any]:
        return {"tool_factory": self.tool_factory, "attempts": self.attempts, "needs_artifacts": self.needs_artifacts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("tool_factory"), **state)  # type: ignore[misc]

    async def __call__(self, env: Envelope, ctx: Context) -> Message:
        import json

        tools = self._tools()
        try:
            arguments = json.loads(env.content.content or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{ctx.name} takes JSON arguments for {self._name}: {exc}") from None
        error = ""
        for attempt in range(1, self.attempts + 1):
            result = await tools.call(self._name, arguments)
            if result.ok and (result.artifacts or not self.needs_artifacts):
                await ctx.emit({"type": "tool_result", "text": f"{self._name} done (attempt {attempt})",
                                "headers": env.headers})
                return Message(role="assistant", content=result.content_for_model(100_000), name=ctx.name,
                               artifacts=list(result.artifacts), metadata={"attempts": attempt})
            error = result.error or f"{self._name} returned no file"
            await ctx.emit({"type": "error", "text": f"{self._name} attempt {attempt} failed: {error}",
                            "headers": env.headers})
        raise RuntimeError(f"{self._name} failed {self.attempts} time(s): {error}")


def _event_dict(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": event.type, "step": event.step, "text": event.text}
    if event.tool_call is not None:
        out["tool_call"] = {"name": event.tool_call.name, "arguments": event.tool_call.arguments}
    if event.tool_result is not None:
        out["tool_result"] = {"name": event.tool_result.name, "error": event.tool_result.error,
                              "output": event.tool_result.content_for_model(500)}
    return out


def as_handler(spec: Any) -> Handler:
    """An AgentRole (built here), an Agent, or an async callable (envelope, ctx) -> reply."""
    from raygent.actors.agent import Agent

    if isinstance(spec, AgentRole):
        return AgentHandler(spec.build_agent(), keep_history=spec.keep_history)
    if isinstance(spec, Agent):
        return AgentHandler(spec)
    if callable(spec):
        return spec
    raise TypeError(f"not a handler: {spec!r} (pass an AgentRole, an Agent, or an async function (envelope, ctx))")


__all__ = ["AgentHandler", "AgentRole", "Context", "Coordinator", "CoordinatorStats", "StructuredHandler", "ToolHandler",
           "as_handler"]
