"""raygent agents as A2A servers: `/a2a/{agent}/` speaks the A2A protocol through the official a2a-sdk.

`A2ARouter` is an ASGI app mounted at `/a2a` of raygent's HTTP server. For each served agent it
builds (on first request) the a2a-sdk's request handler over an AgentExecutor that runs the
agent's `AgentRunner.stream`, and serves it on the bindings a2a-sdk 1.x makes standard over HTTP:
JSON-RPC (`POST /a2a/{agent}/`) and HTTP+JSON (`POST /a2a/{agent}/message:send`, ...), protocol 1.0
and, on the same paths, 0.3 for older clients. The card (`/a2a/{agent}/.well-known/agent-card.json`)
is made per request, so its URLs carry the scheme, host and root path the caller used (right
behind a proxy that sets them). Tasks live in the SDK's in-memory store, per raygent owner: a
task is visible to the API key that started it and lost when the process restarts.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from a2a.auth.user import User
from a2a.helpers import new_data_part, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore, TaskUpdater
from a2a.types import a2a_pb2 as a2a
from a2a.utils.constants import (
    AGENT_CARD_WELL_KNOWN_PATH,
    PROTOCOL_VERSION_0_3,
    PROTOCOL_VERSION_1_0,
    TransportProtocol,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from raygent import __version__
from raygent.llm_pool.openai_wire import error_body
from raygent.schema import AgentEvent, Artifact, RunResult
from raygent.serve.models import AgentCard, AgentRunner, RunRequest, event_payload

Runners = Mapping[str, AgentRunner] | Callable[[], Mapping[str, AgentRunner]]

OWNER_KEY = "raygent_owner"
INLINE_FILE_BYTES = 8 * 1024 * 1024  # artifacts up to this size travel inline (raw parts); larger ones by URI
_STATUS_TEXT_CHARS = 500
_STATUS_DATA_CHARS = 16_000  # a step event larger than this (a long tool output) goes as text only
_BINDINGS = ((TransportProtocol.JSONRPC, PROTOCOL_VERSION_1_0), (TransportProtocol.HTTP_JSON, PROTOCOL_VERSION_1_0),
             (TransportProtocol.JSONRPC, PROTOCOL_VERSION_0_3), (TransportProtocol.HTTP_JSON, PROTOCOL_VERSION_0_3))


# --- the card ------------------------------------------------------------------------------------

def a2a_card(card: AgentCard, url: str) -> a2a.AgentCard:
    """raygent's agent card as A2A's, served at `url` (the agent's base URL, ending in '/').

    Each tool is a skill (it is what the agent can do for a caller); an agent without tools has one
    skill, the agent itself. Every binding is announced at the one URL: JSON-RPC posts to it,
    HTTP+JSON appends its paths (`message:send`, `tasks/{id}`, ...; 0.3 under `v1/`).
    """
    description = card.description or f"raygent agent {card.name!r} on {card.model}"
    skills = [a2a.AgentSkill(id=t.name, name=t.name, description=t.description or t.name, tags=["tool"])
              for t in card.tools]
    if not skills:
        skills = [a2a.AgentSkill(id=card.name, name=card.name, description=description, tags=["chat"])]
    return a2a.AgentCard(
        name=card.name, description=description, version=__version__,
        supported_interfaces=[a2a.AgentInterface(url=url, protocol_binding=binding.value, protocol_version=version)
                              for binding, version in _BINDINGS],
        capabilities=a2a.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=skills,
    )


def agent_base_url(request: Request) -> str:
    """The agent's URL as the caller sees it: scheme and host of the request, the mount's root path."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}/"


# --- the owner -----------------------------------------------------------------------------------

class RaygentOwner(User):
    """The raygent API key's owner (set by the auth middleware) as the a2a-sdk's user."""

    def __init__(self, owner: str):
        self.owner = owner

    @property
    def is_authenticated(self) -> bool:
        return self.owner != "anonymous"

    @property
    def user_name(self) -> str:
        return self.owner


class OwnerContextBuilder(DefaultServerCallContextBuilder):
    """Carries `scope["state"]["raygent_owner"]` into every A2A call: the executor passes it to the
    runner, and the task store keys tasks by it (another key's task is 'not found')."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        owner = str((request.scope.get("state") or {}).get(OWNER_KEY) or "anonymous")
        context.user = RaygentOwner(owner)
        context.state[OWNER_KEY] = owner
        return context


def owner_of(context: ServerCallContext) -> str:
    return str(context.state.get(OWNER_KEY) or "anonymous")


# --- the executor --------------------------------------------------------------------------------

def _clip(text: str, limit: int = _STATUS_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _status_text(event: AgentEvent) -> str | None:
    """What a caller reads in a status update for one step event (None: not reported)."""
    if event.type == "tool_call" and event.tool_call is not None:
        args = json.dumps(event.tool_call.arguments, ensure_ascii=False, default=str)
        return _clip(f"calling {event.tool_call.name} {args}")
    if event.type == "tool_result" and event.tool_result is not None:
        r = event.tool_result
        return _clip(f"{r.name} failed: {r.error}" if r.error else f"{r.name} returned: {r.content_for_model()}")
    if event.type == "thought" and event.text:
        return _clip(event.text)
    if event.type == "error" and event.text:
        return _clip(f"error: {event.text}")
    return None  # answer deltas: the answer arrives whole as the task's artifact


def _file_part(artifact: Artifact) -> a2a.Part:
    """A file the run produced: inline bytes when it is a local file of modest size, else its URI."""
    meta: dict[str, Any] = {"raygent_artifact": artifact.model_dump(mode="json", include={"kind", "metadata"})}
    uri = artifact.uri
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    mime = artifact.mime_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    part = a2a.Part(media_type=mime, filename=path.name)
    if "://" not in uri or uri.startswith("file://"):
        if path.is_file() and path.stat().st_size <= INLINE_FILE_BYTES:
            part.raw = path.read_bytes()
        else:
            part.url = path.absolute().as_uri()
            meta["note"] = "a file on the agent's server (missing or too large to send inline)"
    else:
        part.url = uri
    part.metadata.update(meta)
    return part


def _user_text(message: a2a.Message | None) -> str:
    """The caller's request: its text parts, and data parts as JSON."""
    if message is None:
        return ""
    out: list[str] = []
    for part in message.parts:
        if part.HasField("text"):
            out.append(part.text)
        elif part.HasField("data"):
            out.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
    return "\n".join(t for t in out if t.strip())


class _Relay:
    """Publishes one run's updates. Holds the task's one TaskUpdater (it knows when the task is
    final) and a lock, so a cancel and the run never publish at the same moment."""

    def __init__(self, queue: EventQueue, task_id: str, context_id: str):
        self.updater = TaskUpdater(queue, task_id, context_id)
        self.lock = asyncio.Lock()
        self.closed = False
        self.run: asyncio.Task[RunResult | None] | None = None

    def _message(self, text: str, data: dict[str, Any] | None = None) -> a2a.Message:
        parts = [new_text_part(text)] + ([new_data_part(data)] if data is not None else [])
        return self.updater.new_agent_message(parts)

    async def status(self, state: a2a.TaskState.ValueType, text: str | None = None,
                     event: AgentEvent | None = None, *, final: bool = False) -> None:
        async with self.lock:
            if self.closed:
                return
            data = event_payload(event) if event else None
            if data is not None and len(json.dumps(data, ensure_ascii=False, default=str)) > _STATUS_DATA_CHARS:
                data = None
            message = self._message(text, data) if text else None
            await self.updater.update_status(state, message=message,
                                             metadata={"raygent_event": event.type} if event else None)
            self.closed = final

    async def answer(self, result: RunResult) -> None:
        parts = [new_text_part(result.answer)]
        parts += await asyncio.to_thread(lambda: [_file_part(a) for a in result.artifacts])
        async with self.lock:
            if not self.closed:
                await self.updater.add_artifact(parts, name="answer", last_chunk=True,
                                                metadata={"steps": result.steps, "model": result.model})


class RunnerExecutor(AgentExecutor):
    """Runs a raygent agent for the a2a-sdk: one A2A task is one run of `runner.stream`.

    The contextId is the run's session_id (follow-up messages in one context continue one
    conversation); tool calls and results are 'working' status updates; the answer is the task's
    artifact; the task ends completed, or failed with the reason, or canceled (the run is stopped
    and its stream closed before the cancel is answered).
    """

    def __init__(self, agent: str, runner: AgentRunner, *, cancel_wait_s: float = 10.0):
        self.agent = agent
        self.runner = runner
        self.cancel_wait_s = cancel_wait_s
        self._relays: dict[str, _Relay] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        relay = _Relay(event_queue, task_id, context_id)
        self._relays[task_id] = relay
        try:
            if context.current_task is None:
                history = [context.message] if context.message is not None else []
                await event_queue.enqueue_event(a2a.Task(
                    id=task_id, context_id=context_id, history=history,
                    status=a2a.TaskStatus(state=a2a.TaskState.TASK_STATE_SUBMITTED)))
            text = _user_text(context.message)
            if not text:
                await relay.status(a2a.TaskState.TASK_STATE_REJECTED,
                                   f"agent {self.agent!r} reads text: send a text (or data) part", final=True)
                return
            await relay.status(a2a.TaskState.TASK_STATE_WORKING)
            request = RunRequest(agent=self.agent, input=text, session_id=context_id)
            # The run is a task of its own so that `cancel` can stop it and wait for its stream to
            # close, while this coroutine (and the SDK's producer awaiting it) ends normally.
            relay.run = run = asyncio.create_task(self._relay_run(request, owner_of(context.call_context), relay))
            try:
                await asyncio.wait([run])
            finally:
                if not run.done():  # this execution itself was cancelled (the handler is closing)
                    run.cancel()
                    await asyncio.wait([run], timeout=self.cancel_wait_s)
            if run.cancelled():  # canceled by the caller: `cancel` has said so
                return
            if run.exception() is not None:  # the runner's own failure ends the task, with its reason
                exc = run.exception()
                await relay.status(a2a.TaskState.TASK_STATE_FAILED, f"{type(exc).__name__}: {exc}", final=True)
                return
            result = run.result()
            if result is None:
                await relay.status(a2a.TaskState.TASK_STATE_FAILED, "the agent ended without a result", final=True)
            elif result.stop_reason == "answer":
                await relay.answer(result)
                await relay.status(a2a.TaskState.TASK_STATE_COMPLETED, final=True)
            else:
                await relay.status(a2a.TaskState.TASK_STATE_FAILED,
                                   result.error or f"the agent stopped ({result.stop_reason})", final=True)
        finally:
            self._relays.pop(task_id, None)

    async def _relay_run(self, request: RunRequest, owner: str, relay: _Relay) -> RunResult | None:
        stream = self.runner.stream(request, owner=owner)
        failed_tool = False  # the loop repeats a failed tool result as an error event: said once
        try:
            async for event in stream:
                if event.type == "done":
                    return event.result
                text = _status_text(event)
                if text is not None and not (failed_tool and event.type == "error"):
                    await relay.status(a2a.TaskState.TASK_STATE_WORKING, text, event)
                failed_tool = event.type == "tool_result" and event.tool_result is not None and not event.tool_result.ok
            return None
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        relay = self._relays.get(str(context.task_id))
        if relay is None:  # not running here (not yet started): the SDK closes the task as canceled
            return
        await relay.status(a2a.TaskState.TASK_STATE_CANCELED, "canceled by the caller", final=True)
        run = relay.run
        if run is not None and not run.done():
            run.cancel()
            await asyncio.wait([run], timeout=self.cancel_wait_s)


# --- the router ----------------------------------------------------------------------------------

class _AgentApp:
    """One agent's A2A endpoints: the a2a-sdk's handler and routes, and a per-request card."""

    def __init__(self, name: str, runner: AgentRunner, card: AgentCard, base_url: str, task_store: TaskStore):
        self.runner = runner
        self.card = card
        self.handler = DefaultRequestHandler(agent_executor=RunnerExecutor(name, runner), task_store=task_store,
                                             agent_card=a2a_card(card, base_url))
        builder = OwnerContextBuilder()
        routes = [Route(AGENT_CARD_WELL_KNOWN_PATH, self._card, methods=["GET"]),
                  *create_jsonrpc_routes(self.handler, rpc_url="/", context_builder=builder, enable_v0_3_compat=True),
                  *create_rest_routes(self.handler, context_builder=builder, enable_v0_3_compat=True)]
        self.app = Starlette(routes=routes)

    async def _card(self, request: Request) -> Response:
        return JSONResponse(agent_card_to_dict(a2a_card(self.card, agent_base_url(request))))


async def _reply(status: int, body: dict[str, Any], scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await JSONResponse(body, status_code=status)(scope, receive, send)
    else:  # A2A has no websocket binding
        await send({"type": "websocket.close", "code": 1008})


def _owner_store() -> TaskStore:
    return InMemoryTaskStore(owner_resolver=owner_of)


class A2ARouter:
    """ASGI app for `/a2a`: `/{agent}/...` is that agent's A2A server (built on first use); an
    unknown agent is a 404 naming the agents there are.

    `runners` is the name -> AgentRunner mapping, or a callable returning it (the server fills it
    when it starts). A runner replaced under the same name gets a fresh A2A server (its tasks are
    in memory). Call `aclose()` at shutdown (or let a lifespan reach this app) to stop live runs.
    """

    def __init__(self, runners: Runners, *, task_store: Callable[[], TaskStore] = _owner_store):
        self._runners = runners if callable(runners) else (lambda: runners)
        self._task_store = task_store
        self._apps: dict[str, _AgentApp] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        name, _, rest = (path[len(root):] if path.startswith(root) else path).lstrip("/").partition("/")
        runners = self._runners()
        runner = runners.get(name) if name else None
        if runner is None:
            await self._not_found(name, runners, scope, receive, send)
            return
        try:
            agent = await self._agent_app(name, runner, scope)
        except Exception as exc:  # the agent's card could not be read (its deployment is not up, ...)
            body = error_body(f"A2A agent {name!r} is unavailable: {type(exc).__name__}: {exc}",
                              code="agent_unavailable", status=503)
            await _reply(503, body, scope, receive, send)
            return
        root = f"{scope.get('root_path', '')}/{name}"
        await agent.app({**scope, "root_path": root, "path": f"{root}/{rest}"}, receive, send)

    async def _agent_app(self, name: str, runner: AgentRunner, scope: Scope) -> _AgentApp:
        agent = self._apps.get(name)
        if agent is not None and agent.runner is runner:
            return agent
        async with self._lock:
            agent = self._apps.get(name)
            if agent is None or agent.runner is not runner:
                if agent is not None:
                    await agent.handler.aclose()
                card = await runner.card()
                base = agent_base_url(Request({**scope, "root_path": f"{scope.get('root_path', '')}/{name}"}))
                agent = self._apps[name] = _AgentApp(name, runner, card, base, self._task_store())
        return agent

    @staticmethod
    async def _not_found(name: str, runners: Mapping[str, AgentRunner], scope: Scope, receive: Receive,
                         send: Send) -> None:
        available = sorted(runners)
        what = f"no A2A agent named {name!r}" if name else "no agent named in the path (/a2a/{agent}/)"
        body = error_body(f"{what}; available agents: {', '.join(available) or '(none)'}", code="agent_not_found",
                          status=404)
        body["error"]["available"] = available
        await _reply(404, body, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Stop every live A2A run (their streams are closed) and forget the tasks."""
        apps, self._apps = list(self._apps.values()), {}
        for agent in apps:
            await agent.handler.aclose()

