"""raygent's HTTP front door (a Ray Serve ingress): models and agents behind one OpenAI-compatible API.

Routes: `POST /v1/chat/completions` (`model` names a model or an agent), `GET /v1/models`,
`GET /v1/agents`, `POST /v1/runs` (SSE with `Accept: text/event-stream` or `stream: true`),
`GET /v1/runs/{id}`, `POST /v1/runs/{id}/cancel`, `GET|DELETE /v1/sessions/{id}`,
`POST /v1/rooms` (a team, e.g. a storybook, streaming its progress), `GET /v1/artifacts/{id}`,
`/a2a/{agent}/...` (A2A), `/healthz`, `/metrics`. Every error is in OpenAI's shape. Sessions, runs
and artifacts belong to the API key that made them; another key is told they do not exist.

Models are their own deployments (the LLM pool), each agent is its own deployment (AgentServer);
this ingress holds their handles and the live runs it started.
"""

# no `from __future__ import annotations`: FastAPI must see real classes in the route signatures

import asyncio
import json
import logging
import mimetypes
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from raygent.llm_pool.openai_wire import (
    SSE_DONE,
    ChunkEncoder,
    WireError,
    completion_to_response,
    error_body,
    error_response,
    from_request,
    models_response,
    new_completion_id,
    sse_error_event,
    sse_event,
    usage_to_openai,
)
from raygent.llm_pool.pool import PooledLLM
from raygent.schema import AgentEvent, Completion, Delta, RunResult, new_id
from raygent.serve.a2a import A2ARouter
from raygent.serve.agent_server import ServedAgent, SessionAccessError
from raygent.serve.metrics import Metrics, MetricsMiddleware
from raygent.serve.models import (
    AgentCard,
    ChatCompletionBody,
    RoomRequest,
    RunRecord,
    RunRequest,
    SessionView,
    event_payload,
)
from raygent.serve.openapi import document
from raygent.serve.security import SecurityMiddleware, SecuritySettings

log = logging.getLogger(__name__)

_ARTIFACT_ID = re.compile(r"^art_[0-9a-f]{16}$")
_RUN_ID = re.compile(r"^run_[0-9a-f]{16}$")
#: how long a finished run stays in memory (its events, for a stream still being written out); then
#: GET /v1/runs/{id} reads it from the run store. It was 300 s: at 22 runs/s the ingress held ~6,600
#: finished runs, +126 MiB (benchmarks/load.py's soak), and more the faster runs came
FINISHED_RUN_GRACE_S = 5.0

# Serve freezes the FastAPI app when the class below is decorated: the app, its handlers and its
# middleware are all set up here, and read the running ingress's state through _LIVE.
api = FastAPI(title="raygent", version="1",
              description="Models and agents over an OpenAI-compatible API, agent runs with server-sent events, "
                          "multi-agent rooms, artifacts, and A2A.")
# /openapi.json says what the routes and the security layer really answer (raygent.serve.openapi)
document(api)
_LIVE: dict[str, Any] = {}
METRICS = Metrics()
# keys, limits, body size and CORS (raygent.serve.security); added first so that the metrics
# middleware (added last, outermost) also counts the requests it refuses
api.add_middleware(SecurityMiddleware, settings=lambda: _LIVE["security"])
api.add_middleware(MetricsMiddleware, metrics=METRICS)
# every agent is also an A2A server under /a2a/{agent}/ (raygent.serve.a2a)
A2A = A2ARouter(lambda: _LIVE.get("runners", {}))
api.mount("/a2a", A2A)


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, param=param, code=code, status=status), status_code=status,
                        headers=headers)


@api.exception_handler(RequestValidationError)
async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 -> OpenAI's 400 with the first problem's location as `param`."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    if first.get("type") == "json_invalid" or (not where and request.method == "POST"):
        try:  # FastAPI reads a body without a JSON content type as absent: say what is wrong with it
            json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            return _error(400, f"the request body is not valid JSON: {err}", code="invalid_json")
    return _error(400, message, code="invalid_request", param=where or None)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (no such path, wrong method) in OpenAI's shape too."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    return _error(exc.status_code, message, code=code, headers=getattr(exc, "headers", None))


def _owner(request: Request) -> str:
    return getattr(request.state, "raygent_owner", None) or "anonymous"


def _wants_sse(request: Request, stream_flag: bool) -> bool:
    return stream_flag or "text/event-stream" in request.headers.get("accept", "")


def _sse_payload(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


def _home() -> Path:
    from raygent.llm_pool.embedded import raygent_home

    return raygent_home()


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        return None
    path = Path(uri)
    return path if path.is_absolute() and path.is_file() else None


def _cause(exc: BaseException) -> BaseException:
    """The component's own exception behind Ray's RayTaskError wrapper."""
    return getattr(exc, "cause", None) or exc


def error_json(exc: BaseException) -> JSONResponse:
    """Any failure while serving -> an OpenAI-shaped error with the status it deserves
    (openai_wire.error_response); 429/503 also say when to retry."""
    status, body = error_response(_cause(exc))
    return JSONResponse(body, status_code=status, headers={"Retry-After": "1"} if status in (429, 503) else None)


async def _sse(stream: AsyncIterator[Any], first: Any, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    """A model's stream of Deltas as OpenAI `chat.completion.chunk` events."""
    encoder = ChunkEncoder(model, include_usage=include_usage)
    try:
        for chunk in encoder.start():
            yield sse_event(chunk)
        if first is not None:
            for chunk in encoder.encode(first):
                yield sse_event(chunk)
        async for delta in stream:
            for chunk in encoder.encode(delta):
                yield sse_event(chunk)
        if not encoder.finished:
            for chunk in encoder.encode(Delta(finish_reason="stop")):
                yield sse_event(chunk)
    except Exception as exc:  # mid-stream: the status is already 200, so the error travels as an event
        log.warning("stream for %s failed: %s", model, exc)
        yield sse_error_event(_cause(exc))
    yield SSE_DONE


def _run_error(exc: BaseException) -> JSONResponse:
    exc = _cause(exc)
    if isinstance(exc, SessionAccessError):
        return _error(404, str(exc), code="session_not_found", param="session_id")
    return error_json(exc)


def _agent_response(result: RunResult, name: str, session_id: str | None) -> dict[str, Any]:
    completion = Completion(text=result.answer, model=name, usage=result.usage,
                            finish_reason="stop" if result.stop_reason == "answer" else "length")
    out = completion_to_response(completion, model=name)
    out["raygent"] = {"tool_calls": [c.model_dump(mode="json") for c in result.tool_calls], "steps": result.steps,
                      "stop_reason": result.stop_reason, "error": result.error, "session_id": session_id,
                      "artifacts": [a.model_dump(mode="json") for a in result.artifacts],
                      "run_id": result.run_id}  # names the run's trace: `raygent trace RUN_ID`
    return out


async def _agent_sse(first: AgentEvent | None, events: AsyncIterator[AgentEvent], name: str, include_usage: bool,
                     session_id: str | None) -> AsyncIterator[bytes]:
    """An agent's run as `chat.completion.chunk`s: answer text as content deltas; every other step
    event rides in `raygent_event` on a chunk with an empty delta, which OpenAI clients ignore."""
    completion_id, created = new_completion_id(), int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        body: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": name, "choices": [] if delta is None else
                                [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        body.update(extra)
        return sse_event(body)

    yield chunk({"role": "assistant", "content": ""})
    result: RunResult | None = None
    sent_text = False

    async def all_events() -> AsyncIterator[AgentEvent]:
        if first is not None:
            yield first
        async for event in events:
            yield event

    try:
        async for event in all_events():
            if event.type == "answer_delta" and event.text:
                sent_text = True
                yield chunk({"content": event.text})
            elif event.type == "done":
                result = event.result
            else:
                yield chunk({}, raygent_event=event_payload(event))
        if result is not None and result.answer and not sent_text:
            yield chunk({"content": result.answer})
        finish = "stop" if result is None or result.stop_reason == "answer" else "length"
        extra: dict[str, Any] = {"raygent": {"session_id": session_id, "steps": result.steps if result else 0,
                                             "stop_reason": result.stop_reason if result else "error"}}
        yield chunk({}, finish, **extra)
        if include_usage and result is not None:
            yield chunk(None, usage=usage_to_openai(result.usage))
    except Exception as exc:  # the status is already 200: the error travels as an event
        log.warning("agent stream for %s failed: %s", name, exc)
        yield sse_error_event(_cause(exc))
    yield SSE_DONE


class _RunMetrics:
    """An agent run's gauge and duration: in flight while the block runs; its status from the result
    (`finished`), "cancelled" when cancelled, else "failed".

    The Metrics object is passed in, not read from this module: Serve ships the app's routes and
    middleware by value, with their own copy of METRICS, while a module-level class like this one is
    imported in the replica and would see the module's other copy."""

    def __init__(self, metrics: Metrics, agent: str):
        self.metrics = metrics
        self.agent = agent
        self.status = "failed"

    def finished(self, result: RunResult | None) -> None:
        self.status = "succeeded" if result is not None and result.stop_reason != "error" else "failed"

    def __enter__(self) -> "_RunMetrics":
        self.started = time.perf_counter()
        self.metrics.runs_in_flight.labels(self.agent).inc()
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None and issubclass(kind, asyncio.CancelledError):
            self.status = "cancelled"
        self.metrics.runs_in_flight.labels(self.agent).dec()
        self.metrics.run_seconds.labels(self.agent, self.status).observe(time.perf_counter() - self.started)


class _LiveRun:
    """A run this replica is executing: its events so far (for SSE followers) and its task."""

    def __init__(self, record: RunRecord):
        self.record = record
        self.events: list[AgentEvent] = []
        self.changed = asyncio.Condition()
        self.task: asyncio.Task | None = None
        self.done = asyncio.Event()
        self.refusal: BaseException | None = None  # the run was refused for capacity (429/503)

    async def add(self, event: AgentEvent) -> None:
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    async def finish(self) -> None:
        self.done.set()
        async with self.changed:
            self.changed.notify_all()

    async def follow(self) -> AsyncIterator[AgentEvent]:
        index = 0
        while True:
            async with self.changed:
                while index >= len(self.events) and not self.done.is_set():
                    await self.changed.wait()
                batch = self.events[index:]
                index = len(self.events)
            for event in batch:
                yield event
            if self.done.is_set() and index >= len(self.events):
                return


@serve.deployment(name="raygent-ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
@serve.ingress(api)
class RaygentIngress:
    """Holds the model pools and agent deployments by name, and the runs it started."""

    def __init__(self, models: dict[str, Any], agents: dict[str, Any], config: dict[str, Any]):
        from raygent.serve.app import ServeConfig
        from raygent.serve.state import memory_store, run_store

        if not models:
            raise ValueError("the ingress needs at least one model")
        self.config = ServeConfig(**config)
        self.pools = {name: PooledLLM(handle, retries=self.config.models[name].pool.retries, name=name)
                      for name, handle in models.items()}
        self.agents = {name: ServedAgent(name, handle) for name, handle in agents.items()}
        self.default_model = self.config.default_model or next(iter(models))
        self.default_agent = self.config.default_agent or (next(iter(agents)) if agents else None)
        self.sessions = memory_store(self.config.state.url)
        self.runs = run_store(self.config.state.url)
        self.live: dict[str, _LiveRun] = {}
        self.created = int(time.time())
        self.rooms_dir = Path(os.environ.get("RAYGENT_ROOMS_DIR") or _home() / "rooms")
        _LIVE.update(ingress=self, runners=self.agents, config=self.config,
                     security=SecuritySettings.from_config(self.config))

    async def __del__(self) -> None:
        """Serve's graceful shutdown: stop the live runs and close the A2A task store."""
        for live in list(self.live.values()):
            if live.task is not None and not live.task.done():
                live.task.cancel()
        await A2A.aclose()

    # -- health, metrics, listings -------------------------------------------------------------
    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "models": sorted(self.pools), "agents": sorted(self.agents)}

    @api.get("/metrics")
    async def metrics(self) -> Response:
        from raygent.telemetry.metrics import cluster_text

        body, content_type = METRICS.render()
        # models, tools and hubs (raygent.telemetry): every process's values, summed
        return Response(body + (await cluster_text()).encode(), media_type=content_type)

    @api.get("/v1/models")
    async def models(self) -> Response:
        listing = models_response(sorted(self.pools), created=self.created)
        listing["data"] += models_response(sorted(self.agents), owned_by="raygent-agent",
                                           created=self.created)["data"]
        return JSONResponse(listing)

    @api.get("/v1/agents", response_model=dict[str, list[AgentCard]])
    async def list_agents(self) -> dict[str, list[AgentCard]]:
        cards = await asyncio.gather(*(agent.card() for agent in self.agents.values()))
        return {"data": list(cards)}

    # -- chat completions: a model, or an agent ------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request, body: ChatCompletionBody) -> Response:
        raw = body.model_dump(exclude_unset=True, exclude_none=True)
        raw["messages"] = [m.model_dump(exclude_none=True) for m in body.messages]
        try:
            req = from_request(raw)
        except WireError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        name = req.model or self.default_model
        if name in self.agents:
            return await self._agent_completion(request, name, body, req)
        pool = self.pools.get(name)
        if pool is None:
            return _error(404, f"model {name!r} is not served here; models: {sorted(self.pools)}, "
                               f"agents: {sorted(self.agents)}", code="model_not_found", param="model")
        tools = req.tools or None
        if not req.stream:
            try:
                completion = await pool.chat(req.messages, tools, req.params)
            except Exception as exc:
                return error_json(exc)
            return JSONResponse(completion_to_response(completion, model=name))
        stream = pool.stream(req.messages, tools, req.params)
        try:  # fail before the 200 goes out when the pool refuses the request outright
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            return error_json(exc)
        return StreamingResponse(_sse(stream, first, name, req.include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _agent_completion(self, request: Request, name: str, body: ChatCompletionBody, req: Any) -> Response:
        if req.tools:
            return _error(400, f"{name!r} is an agent with its own tools; send requests without `tools`",
                          code="invalid_value", param="tools")
        if req.messages[-1].role != "user":
            return _error(400, "an agent's request must end with the user's message", param="messages")
        run = RunRequest(agent=name, input=req.messages, session_id=body.session_id,
                         temperature=body.temperature, max_tokens=req.params.max_tokens if (
                             body.max_tokens or body.max_completion_tokens) else None)
        owner = _owner(request)
        if not req.stream:  # the result only: one call to the agent's replica, no event stream
            try:
                result = await self._run_result(name, run, owner)
            except Exception as exc:
                return _run_error(exc)
            return JSONResponse(_agent_response(result, name, body.session_id))
        events = self._run_events(name, run, owner)
        try:  # the first event (or the refusal) before the status goes out
            first = await events.__anext__()
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            return _run_error(exc)
        return StreamingResponse(_agent_sse(first, events, name, req.include_usage, body.session_id),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _run_result(self, name: str, run: RunRequest, owner: str) -> RunResult:
        with _RunMetrics(METRICS, name) as metrics:
            result = await self.agents[name].run(run, owner)
            for call in result.tool_calls:
                METRICS.tool_calls.labels(name, call.name).inc()
            metrics.finished(result)
            return result

    async def _run_events(self, name: str, run: RunRequest, owner: str,
                          run_id: str | None = None) -> AsyncIterator[AgentEvent]:
        with _RunMetrics(METRICS, name) as metrics:
            async for event in self.agents[name].stream(run, owner, run_id=run_id):
                if event.type == "tool_call" and event.tool_call is not None:
                    METRICS.tool_calls.labels(name, event.tool_call.name).inc()
                if event.type == "done":
                    metrics.finished(event.result)
                yield event

    # -- runs ------------------------------------------------------------------------------------
    @api.post("/v1/runs", status_code=202, response_model=RunRecord)
    async def start_run(self, request: Request, body: RunRequest, wait: bool = False) -> Response:
        name = body.agent or self.default_agent
        if name not in self.agents:
            return _error(404, f"agent {name!r} is not served here; agents: {sorted(self.agents)}",
                          code="agent_not_found", param="agent")
        try:
            body.text()
        except ValueError as exc:
            return _error(400, str(exc), param="input")
        owner = _owner(request)
        memory = self.config.agents[name].memory
        if memory and body.session_id:  # another key's session: 404 now, not a run that fails later
            refused = await self._owned_session(request, body.session_id, new_ok=True)
            if isinstance(refused, JSONResponse):
                return refused
        session_id = body.session_id or (f"s-{new_id('run')[4:]}" if memory else None)
        body = body.model_copy(update={"agent": name, "session_id": session_id})
        record = RunRecord(agent=name, owner=owner, session_id=session_id)
        live = _LiveRun(record)
        self.live[record.id] = live
        await self.runs.put(record)
        if wait and not _wants_sse(request, body.stream):
            # consumed right here: a request that awaited a separate task consuming a Serve stream
            # stalled that stream until the request ended (seen with Ray 2.60)
            live.task = asyncio.current_task()
            await self._execute(live, body)
            if live.refusal is not None:  # the agent or its model had no room: 429/503 with Retry-After
                return error_json(live.refusal)
            return JSONResponse(live.record.model_dump(mode="json"), status_code=200)
        live.task = asyncio.ensure_future(self._execute(live, body))
        slot = getattr(request.state, "raygent_run_slot", None)
        if slot is not None and not _wants_sse(request, body.stream):  # the run outlives this response
            slot.detach()
            live.task.add_done_callback(lambda _: slot.release())
        if _wants_sse(request, body.stream):
            return StreamingResponse(self._run_sse(live), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Raygent-Run": record.id})
        return JSONResponse(record.model_dump(mode="json"), status_code=202,
                            headers={"Location": f"/v1/runs/{record.id}"})

    async def _execute(self, live: _LiveRun, body: RunRequest) -> None:
        record = live.record
        record.status = "running"
        await self.runs.put(record)
        watcher = asyncio.ensure_future(self._watch_cancel(live))
        try:
            async for event in self._run_events(record.agent, body, record.owner, record.id):
                await live.add(event)
                if event.type == "done" and event.result is not None:
                    record.result = await self._publish_artifacts(event.result, record)
            record.status = "succeeded" if record.result and record.result.stop_reason != "error" else "failed"
            if record.result is not None and record.result.error:
                record.error = record.result.error
        except asyncio.CancelledError:
            record.status = "cancelled"
            record.error = "cancelled by the caller"
            await live.add(AgentEvent(type="error", text="run cancelled"))
        except SessionAccessError as exc:
            record.status, record.error = "failed", str(exc)
            await live.add(AgentEvent(type="error", text=str(exc)))
        except Exception as exc:  # a dead replica, a pool error: the record says what happened
            record.status, record.error = "failed", f"{type(exc).__name__}: {_cause(exc)}"
            if getattr(_cause(exc), "status", None) in (429, 503):  # refused for capacity: retry later
                live.refusal = _cause(exc)
            await live.add(AgentEvent(type="error", text=record.error))
        finally:
            watcher.cancel()
            record.finished_at = time.time()
            await asyncio.shield(self.runs.put(record))
            await live.finish()
            asyncio.get_running_loop().call_later(FINISHED_RUN_GRACE_S, self.live.pop, record.id, None)

    async def _watch_cancel(self, live: _LiveRun) -> None:
        """A cancel asked through another ingress replica arrives through the run store."""
        while True:
            await asyncio.sleep(0.5)
            if await self.runs.cancel_requested(live.record.id):
                if live.task is not None:
                    live.task.cancel()
                return

    async def _run_sse(self, live: _LiveRun) -> AsyncIterator[bytes]:
        yield _sse_payload("run", live.record.model_dump(mode="json"))
        async for event in live.follow():
            yield _sse_payload(event.type, event_payload(event))
        yield _sse_payload("end", {"id": live.record.id, "status": live.record.status, "error": live.record.error})

    async def _owned_run(self, request: Request, run_id: str) -> RunRecord | JSONResponse:
        """The caller's run, or the 404 for it (unknown, malformed or another key's id alike)."""
        live = self.live.get(run_id)
        record = live.record if live is not None else (await self.runs.get(run_id) if _RUN_ID.match(run_id)
                                                       else None)
        if record is None or record.owner != _owner(request):
            return _error(404, f"run {run_id!r} not found", code="run_not_found")
        return record

    @api.get("/v1/runs/{run_id}", response_model=RunRecord)
    async def get_run(self, request: Request, run_id: str) -> Response:
        record = await self._owned_run(request, run_id)
        return record if isinstance(record, JSONResponse) else JSONResponse(record.model_dump(mode="json"))

    @api.post("/v1/runs/{run_id}/cancel", response_model=RunRecord)
    async def cancel_run(self, request: Request, run_id: str) -> Response:
        record = await self._owned_run(request, run_id)
        if isinstance(record, JSONResponse):
            return record
        live = self.live.get(run_id)
        if record.status in ("queued", "running"):
            if live is not None and live.task is not None:
                live.task.cancel()
                await live.done.wait()
            else:
                await self.runs.request_cancel(run_id)
        return JSONResponse((live.record if live else record).model_dump(mode="json"))

    # -- sessions --------------------------------------------------------------------------------
    async def _owned_session(self, request: Request, session_id: str, *, new_ok: bool = False) -> Any:
        """The caller's session info, or the 404 for it (unknown, malformed or another key's);
        `new_ok`: a session that does not exist yet is fine (None: a run creates it), a malformed id 400."""
        try:
            info = await self.sessions.get_session(session_id)
        except ValueError as exc:
            if new_ok:
                return _error(400, str(exc), code="invalid_value", param="session_id")
            info = None
        if info is None and new_ok:
            return None
        if info is None or info.metadata.get("owner", "anonymous") != _owner(request):
            return _error(404, f"session {session_id!r} not found", code="session_not_found",
                          param="session_id" if new_ok else None)
        return info

    @api.get("/v1/sessions/{session_id}", response_model=SessionView)
    async def get_session(self, request: Request, session_id: str) -> Response:
        info = await self._owned_session(request, session_id)
        if isinstance(info, JSONResponse):
            return info
        messages = await self.sessions.load(session_id)
        view = SessionView(id=info.id, agent=info.metadata.get("agent"), created_at=info.created_at,
                           updated_at=info.updated_at, messages=messages)
        return JSONResponse(view.model_dump(mode="json", exclude_none=True))

    @api.delete("/v1/sessions/{session_id}")
    async def delete_session(self, request: Request, session_id: str) -> Response:
        info = await self._owned_session(request, session_id)
        if isinstance(info, JSONResponse):
            return info
        await self.sessions.delete_session(session_id)
        return JSONResponse({"id": session_id, "deleted": True})

    # -- artifacts -------------------------------------------------------------------------------
    async def _publish_artifacts(self, result: RunResult, record: RunRecord) -> RunResult:
        """Files the run produced get ids served at /v1/artifacts/{id} (to this owner only)."""
        from raygent.serve.state import ArtifactEntry

        out = []
        for artifact in result.artifacts:
            path = _local_path(artifact.uri)
            if path is None:
                out.append(artifact)
                continue
            entry = ArtifactEntry(id=new_id("art"), owner=record.owner, path=str(path), run_id=record.id,
                                  mime_type=artifact.mime_type or mimetypes.guess_type(path.name)[0],
                                  created_at=time.time())
            await self.runs.put_artifact(entry)
            out.append(artifact.model_copy(update={"metadata": {**artifact.metadata, "artifact_id": entry.id,
                                                                "url": f"/v1/artifacts/{entry.id}"}}))
        return result.model_copy(update={"artifacts": out})

    @api.get("/v1/artifacts/{artifact_id}")
    async def get_artifact(self, request: Request, artifact_id: str) -> Response:
        entry = await self.runs.get_artifact(artifact_id) if _ARTIFACT_ID.match(artifact_id) else None
        if entry is None or entry.owner != _owner(request) or not Path(entry.path).is_file():
            return _error(404, f"artifact {artifact_id!r} not found", code="artifact_not_found")
        return FileResponse(entry.path, media_type=entry.mime_type or "application/octet-stream",
                            filename=Path(entry.path).name)

    # -- rooms (multi-agent teams) ---------------------------------------------------------------
    @api.post("/v1/rooms")
    async def start_room(self, request: Request, body: RoomRequest) -> Response:
        model = body.model or (self.config.agent_model(self.default_agent) if self.default_agent
                               else self.default_model)
        if model not in self.pools:
            return _error(404, f"model {model!r} is not served here; models: {sorted(self.pools)}",
                          code="model_not_found", param="model")
        room_id = new_id("room")
        out_dir = self.rooms_dir / room_id
        return StreamingResponse(self._story_events(body, model, room_id, out_dir, _owner(request)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                          "X-Raygent-Room": room_id})

    async def _story_events(self, body: RoomRequest, model: str, room_id: str, out_dir: Path,
                            owner: str) -> AsyncIterator[bytes]:
        from raygent.apps.story.studio import StoryRequest, StoryStudio
        from raygent.serve.state import ArtifactEntry

        lines: asyncio.Queue[str | None] = asyncio.Queue()
        studio = StoryStudio(llm=self.pools[model], writers=2, progress=lines.put_nowait)
        request = StoryRequest(topic=body.topic, pages=body.pages,
                               language=None if body.language == "auto" else body.language)
        yield _sse_payload("room", {"id": room_id, "app": body.app, "model": model})
        task = asyncio.ensure_future(studio.make(request, out_dir, room=room_id))
        task.add_done_callback(lambda _: lines.put_nowait(None))
        try:
            while (line := await lines.get()) is not None:
                yield _sse_payload("progress", {"text": line})
            result = task.result()
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:
            yield _sse_payload("error", {"message": f"{type(exc).__name__}: {exc}"})
            return
        try:
            files = []
            for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
                entry = ArtifactEntry(id=new_id("art"), owner=owner, path=str(path), run_id=room_id,
                                      mime_type=mimetypes.guess_type(path.name)[0], created_at=time.time())
                await self.runs.put_artifact(entry)
                files.append({"name": str(path.relative_to(out_dir)), "url": f"/v1/artifacts/{entry.id}",
                              "mime_type": entry.mime_type})
            done = {"id": room_id, "seconds": round(result.seconds, 2), "title": result.book.title,
                    "missing": list(result.book.missing), "files": files}
        except Exception as exc:  # the status is already 200: the failure travels as an event
            log.warning("room %s: publishing the book failed", room_id, exc_info=True)
            yield _sse_payload("error", {"message": f"{type(exc).__name__}: {exc}"})
            return
        yield _sse_payload("done", done)
