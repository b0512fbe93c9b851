"""OpenAI-compatible HTTP ingress for the LLM pool (a Ray Serve app).

`POST /v1/chat/completions` (messages, tools, tool_choice, stream, temperature, max_tokens, stop),
`GET /v1/models`, `GET /healthz`. Each model is its own Serve deployment (see llm_pool.pool); the
ingress holds a PooledLLM per model and routes by the request's `model`. Every error is in
OpenAI's shape (`{"error": {message, type, param, code}}`) with a fitting status, so the official
SDKs raise their usual exception classes: 400 bad request, 401 bad key, 404 unknown model,
413 oversized body, 429 pool full (with Retry-After), 503 replicas dying, 502/500 backend faults.
"""

# no `from __future__ import annotations`: FastAPI must see real classes (Request) in the
# signatures of the ingress methods, which Serve re-binds outside this module's namespace
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from raygent.llm_pool.openai_wire import (
    SSE_DONE,
    ChunkEncoder,
    WireError,
    completion_to_response,
    error_body,
    error_response,
    from_request,
    models_response,
    sse_error_event,
    sse_event,
)
from raygent.llm_pool.pool import PooledLLM

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

# Serve's ingress freezes the FastAPI app when the class below is decorated: every helper the
# routes use must already be defined above it.
api = FastAPI(title="raygent", description="OpenAI-compatible chat completions over raygent's LLM pool")


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, param=param, code=code, status=status), status_code=status,
                        headers=headers)


def _cause(exc: BaseException) -> BaseException:
    """The component's own exception behind Ray's RayTaskError wrapper."""
    return getattr(exc, "cause", None) or exc


def error_json(exc: BaseException) -> JSONResponse:
    """Any failure while serving -> an OpenAI-shaped error with the status it deserves
    (openai_wire.error_response); 429/503 also say when to retry."""
    status, body = error_response(_cause(exc))
    return JSONResponse(body, status_code=status, headers={"Retry-After": "1"} if status in (429, 503) else None)


async def _sse(stream: AsyncIterator[Any], first: Any, model: str, include_usage: bool) -> AsyncIterator[bytes]:
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
            from raygent.schema import Delta

            for chunk in encoder.encode(Delta(finish_reason="stop")):
                yield sse_event(chunk)
    except Exception as exc:  # mid-stream: the status is already 200, so the error travels as an event
        log.warning("stream for %s failed: %s", model, exc)
        yield sse_error_event(_cause(exc))
    yield SSE_DONE


@serve.deployment(name="openai-ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(api)
class OpenAIIngress:
    """Routes OpenAI requests to the model deployments it was bound with (name -> handle)."""

    def __init__(self, models: dict[str, Any], default_model: str | None = None,
                 api_keys: list[str] | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 retries: int = 2):
        if not models:
            raise ValueError("the OpenAI ingress needs at least one model")
        self.pools = {name: PooledLLM(handle, retries=retries, name=name) for name, handle in models.items()}
        self.default_model = default_model or next(iter(models))
        env_keys = [k for k in os.environ.get("RAYGENT_API_KEYS", "").split(",") if k.strip()]
        self.api_keys = {k.strip() for k in (api_keys or env_keys)}
        self.max_body_bytes = max_body_bytes
        self.created = int(time.time())

    def _unauthorized(self, request: Request) -> JSONResponse | None:
        if not self.api_keys:
            return None
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if key in self.api_keys:
            return None
        return _error(401, "invalid or missing API key (send Authorization: Bearer <key>)", code="invalid_api_key")

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "models": sorted(self.pools)}

    @api.get("/v1/models")
    async def models(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return JSONResponse(models_response(sorted(self.pools), created=self.created))

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        raw = await request.body()
        if len(raw) > self.max_body_bytes:
            return _error(413, f"request body is {len(raw)} bytes; the limit is {self.max_body_bytes}",
                          code="request_too_large")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"the request body is not valid JSON: {exc}", code="invalid_json")
        try:
            req = from_request(body)
        except WireError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        name = req.model or self.default_model
        pool = self.pools.get(name)
        if pool is None:
            return _error(404, f"model {name!r} is not served here; available: {sorted(self.pools)}",
                          code="model_not_found", param="model")
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
