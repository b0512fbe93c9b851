"""The OpenAPI spec raygent's server publishes at `/openapi.json`: FastAPI's, completed with what the
routes and the security layer really answer, so that clients and fuzzers (Schemathesis) can trust it.

FastAPI describes each route's request and its success reply. raygent answers more than that, and
the spec says so (`document(app)` installs the amended spec as `app.openapi`):

- every error is OpenAI's shape (`ErrorResponse`): 400 for a bad body, query or JSON (FastAPI's 422
  never goes out: raygent turns it into 400), 404 for unknown ids, agents and models, 413 for a body
  over the limit;
- the security layer (`raygent.serve.security`): 401 with `WWW-Authenticate: Bearer` on every route
  but the open ones, 429 with `Retry-After` (rate or concurrent runs), 503 with `Retry-After` (the
  key store or the model pool cannot take the request); the bearer scheme is declared, and open
  routes say they need none;
- replies that are not one JSON document: server-sent events (`text/event-stream`) of the run,
  chat and room routes, Prometheus text at /metrics, an artifact's bytes, `POST /v1/runs?wait=true`'s
  200 beside its 202.
"""

from __future__ import annotations

from typing import Any

from raygent.serve.security import is_open

ERROR_SCHEMA = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                       "code": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}},
    }},
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
#: one server-sent event (OpenAPI 3.2's shape of an event; `data` is one JSON document, or `[DONE]`)
_SSE = {"text/event-stream": {"schema": {
    "type": "object", "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"},
                   "retry": {"type": "integer"}}}}}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "required": True,
                                "schema": {"type": "string"}}}
_DESCRIPTIONS = {400: "invalid request (body, query, JSON)", 401: "missing, unknown or revoked API key",
                 404: "no such item for this API key (or no such agent, model or route)",
                 413: "request body over the server's limit",
                 429: "rate limit or concurrent runs of this API key exceeded",
                 503: "the key store or the model pool cannot take the request now"}

#: replies beyond FastAPI's success reply, per route: {(method, path): {status: content}}; "$model" in
#: a content: the route's own response model as JSON too
_EXTRA_SUCCESS: dict[tuple[str, str], dict[str, dict[str, Any] | None]] = {
    ("post", "/v1/chat/completions"): {"200": {"application/json": {"schema": {"type": "object"}}, **_SSE}},
    ("post", "/v1/runs"): {"200": {"$model": {}, **_SSE}, "202": {"$model": {}}},
    ("post", "/v1/rooms"): {"200": _SSE},
    ("get", "/metrics"): {"200": {"text/plain": {"schema": {"type": "string"}}}},
    ("get", "/v1/artifacts/{artifact_id}"): {"200": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
}


def _error_reply(status: int) -> dict[str, Any]:
    reply: dict[str, Any] = {"description": _DESCRIPTIONS[status], "content": {"application/json": {
        "schema": _ERROR_REF}}}
    if status in (429, 503):
        reply["headers"] = dict(_RETRY_AFTER)
    if status == 401:
        reply["headers"] = {"WWW-Authenticate": {"description": "Bearer", "required": True,
                                                 "schema": {"type": "string"}}}
    return reply


def amend(spec: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's spec -> the one raygent publishes (see the module docstring); changes `spec` in place."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorResponse"] = ERROR_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http", "scheme": "bearer", "description": "an API key made with `raygent keys create` "
                                                          "(needed as soon as one exists; docs/security.md)"}
    spec["security"] = [{"bearerAuth": []}]
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete", "head"):
                continue
            replies: dict[str, Any] = operation.setdefault("responses", {})
            replies.pop("422", None)
            for status, content in _EXTRA_SUCCESS.get((method, path), {}).items():
                reply = replies.setdefault(status, {"description": "Successful Response"})
                content = dict(content)
                if content.pop("$model", None) is not None:  # the route's JSON model describes this status too
                    model = next((r["content"] for r in replies.values() if "application/json" in r.get("content", {})),
                                 {})
                    content = {**model, **content}
                reply["content"] = content
            if is_open(method.upper(), path):
                operation["security"] = []
                continue
            has_body = "requestBody" in operation
            errors = [401, 429, 503]
            if has_body or operation.get("parameters"):
                errors.append(400)
            if has_body:
                errors.append(413)
            if has_body or any(p.get("in") == "path" for p in operation.get("parameters", [])):
                errors.append(404)
            for status in sorted(errors):
                replies.setdefault(str(status), _error_reply(status))
    return spec


def document(app: Any) -> None:
    """Publish the amended spec from `app` (a FastAPI app): `app.openapi()` builds it once."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                               description=app.description, routes=app.routes)
            app.openapi_schema = amend(spec)
        return app.openapi_schema

    app.openapi = openapi


__all__ = ["ERROR_SCHEMA", "amend", "document"]
