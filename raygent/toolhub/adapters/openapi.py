"""OpenAPI 3 specs -> raygent Tools, one per operation, called over HTTP with httpx.

A user's REST API becomes tools without writing any: each operation's path, query and header
parameters and its JSON request body become one flat JSON-schema object (local `$ref`s inlined),
and a call fills the URL template, query string, headers and body from the arguments. HTTP
errors come back as a ToolError that names the request, the status and the server's message,
so the model can correct its arguments.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin

import httpx
from pydantic import BaseModel, SecretStr

from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.errors import ToolError

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_BINARY_PREFIXES = ("image/", "audio/", "video/", "application/octet-stream", "application/pdf")


class OpenAPIAuth(BaseModel):
    """Credentials sent with every call: a bearer token, or an API key in a header or the query.

    For an API key without `name`, the spec's first `apiKey` security scheme names it.
    """

    kind: Literal["bearer", "api_key"] = "bearer"
    token: SecretStr
    name: str | None = None
    location: Literal["header", "query"] | None = None


class OperationParameter(BaseModel):
    name: str
    location: Literal["path", "query", "header", "cookie"]
    required: bool = False
    json_schema: dict[str, Any] = {}


# --- loading and $ref resolution -------------------------------------------------------------

def load_openapi_spec(source: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A spec from a dict, a JSON/YAML file, or JSON/YAML text (URLs: use `fetch_openapi_spec`)."""
    if isinstance(source, dict):
        spec = source
    else:
        text = str(source)
        if text.startswith(("http://", "https://")):
            raise ValueError(f"{text} is a URL: use `await fetch_openapi_spec(url)` or `await openapi_tools(url)`")
        if isinstance(source, Path) or ("\n" not in text and not text.lstrip().startswith("{")):
            path = Path(text).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"OpenAPI spec file not found: {path}")
            text = path.read_text(encoding="utf-8")
        spec = _parse_spec_text(text)
    if not isinstance(spec, dict) or not str(spec.get("openapi", "")).startswith("3"):
        found = spec.get("openapi") or spec.get("swagger") if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"not an OpenAPI 3 document (openapi: {found!r}); Swagger 2 specs must be converted first")
    return spec


def _parse_spec_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml ships with ray
        raise ValueError("the OpenAPI spec is not JSON, and PyYAML is not installed to read YAML") from exc
    return yaml.safe_load(text)


async def fetch_openapi_spec(url: str, *, headers: dict[str, str] | None = None,
                             timeout_s: float = 30.0) -> dict[str, Any]:
    """GET a spec (JSON or YAML) from a URL."""
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=True) as client:
        try:
            response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ToolError(f"cannot fetch the OpenAPI spec from {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise ToolError(f"fetching the OpenAPI spec from {url} gave HTTP {response.status_code}: "
                        f"{response.text[:300]}")
    return load_openapi_spec(_parse_spec_text(response.text))


def _pointer(spec: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"unresolvable $ref {ref!r}")
        node = node[part]
    return node


def resolve_refs(node: Any, spec: dict[str, Any], _seen: tuple[str, ...] = ()) -> Any:
    """`node` with every local `$ref` inlined; a recursive reference becomes an open object."""
    if isinstance(node, list):
        return [resolve_refs(item, spec, _seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in _seen:
            return {"type": "object", "description": f"(recursive {ref.rsplit('/', 1)[-1]})"}
        target = resolve_refs(copy.deepcopy(_pointer(spec, ref)), spec, _seen + (ref,))
        siblings = {k: resolve_refs(v, spec, _seen) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings} if isinstance(target, dict) else target
    return {k: resolve_refs(v, spec, _seen) for k, v in node.items()}


def _tool_name(operation_id: str | None, method: str, path: str) -> str:
    if operation_id:
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", operation_id).strip("_")
    else:  # GET /pets/{pet_id} -> get_pets_pet_id
        name = re.sub(r"[^A-Za-z0-9]+", "_", f"{method}_{path}").strip("_")
    return name[:64] or method


# --- the tool --------------------------------------------------------------------------------

class OpenAPITool(Tool):
    """One OpenAPI operation. Arguments: its parameters plus its JSON body's properties (flat), or
    a `body` argument when the body is not an object or its property names clash with parameters."""

    def __init__(self, *, name: str, description: str, method: str, path: str, base_url: str,
                 parameters: list[OperationParameter], body_schema: dict[str, Any] | None = None,
                 body_required: bool = False, body_media_type: str = "application/json",
                 auth: OpenAPIAuth | None = None, headers: dict[str, str] | None = None,
                 timeout_s: float = 30.0, domain: str | None = "web", artifact_store: ArtifactStore | None = None):
        self.name = name
        self.description = description
        self.method = method.upper()
        self.path = path
        self.base_url = base_url.rstrip("/")
        self.operation_parameters = parameters
        self.body_media_type = body_media_type
        self.auth = auth
        self.extra_headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.domain = domain
        self.artifact_store = artifact_store
        self.body_fields: list[str] | None = None  # flattened body properties; None = one `body` arg
        self.has_body = body_schema is not None
        self.parameters = self._build_schema(body_schema, body_required)

    def _build_schema(self, body_schema: dict[str, Any] | None, body_required: bool) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for p in self.operation_parameters:
            properties[p.name] = p.json_schema or {"type": "string"}
            if p.required or p.location == "path":
                required.append(p.name)
        if body_schema is not None:
            body_props = body_schema.get("properties") if body_schema.get("type", "object") == "object" else None
            if body_props and not set(body_props) & set(properties) and "body" not in body_props:
                self.body_fields = list(body_props)
                properties.update(body_props)
                if body_required:
                    required.extend(r for r in body_schema.get("required", []) if r in body_props)
            else:
                properties["body"] = body_schema
                if body_required:
                    required.append("body")
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema

    def _request_parts(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str], Any]:
        path = self.path
        query: dict[str, Any] = {}
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for p in self.operation_parameters:
            if p.name not in arguments:
                continue
            value = arguments[p.name]
            if p.location == "path":
                path = path.replace("{" + p.name + "}", quote(str(value), safe=""))
            elif p.location == "query":
                query[p.name] = json.dumps(value) if isinstance(value, dict) else value
            elif p.location == "header":
                headers[p.name] = str(value)
            else:
                cookies.append(f"{p.name}={value}")
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        missing = re.findall(r"\{([^}]+)\}", path)
        if missing:
            raise ToolError(f"{self.name}: missing path parameter(s) {', '.join(missing)}")
        body: Any = None
        if self.has_body:
            if self.body_fields is not None:
                body = {k: arguments[k] for k in self.body_fields if k in arguments}
            else:
                body = arguments.get("body")
        if self.auth is not None:
            secret = self.auth.token.get_secret_value()
            if self.auth.kind == "bearer":
                headers["Authorization"] = f"Bearer {secret}"
            elif self.auth.location == "query":
                query[self.auth.name or "api_key"] = secret
            else:
                headers[self.auth.name or "X-API-Key"] = secret
        return self.base_url + path, query, {**self.extra_headers, **headers}, body

    async def call(self, **arguments: Any) -> Any:
        url, query, headers, body = self._request_parts(arguments)
        request: dict[str, Any] = {"params": query, "headers": headers}
        if body is not None:
            if self.body_media_type == "application/x-www-form-urlencoded":
                request["data"] = body
            else:
                request["json"] = body
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            try:
                response = await client.request(self.method, url, **request)
            except httpx.HTTPError as exc:
                raise ToolError(f"{self.method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ToolError(f"{self.method} {url} returned HTTP {response.status_code} {response.reason_phrase}: "
                            f"{_error_detail(response)}")
        return self._output(response)

    def _output(self, response: httpx.Response) -> Any:
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not response.content:
            return {"status": response.status_code}
        if ctype.startswith(_BINARY_PREFIXES):
            store = self.artifact_store or default_store()
            art = store.save_bytes(response.content, mime_type=ctype)
            return ToolOutput({"status": response.status_code, "artifact": art.uri, "mime_type": ctype}, [art])
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                return response.json()
            except ValueError:
                pass
        return response.text


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or "(empty body)"
    if isinstance(data, dict):
        for key in ("detail", "message", "error", "msg"):
            if key in data:
                return json.dumps(data[key], ensure_ascii=False)[:500]
    return json.dumps(data, ensure_ascii=False)[:500]


# --- spec -> tools ---------------------------------------------------------------------------

def _auth_for_spec(auth: OpenAPIAuth | None, spec: dict[str, Any]) -> OpenAPIAuth | None:
    if auth is None or auth.kind != "api_key" or auth.name:
        return auth
    for scheme in spec.get("components", {}).get("securitySchemes", {}).values():
        if scheme.get("type") == "apiKey":
            return auth.model_copy(update={"name": scheme.get("name"), "location": auth.location or scheme.get("in")})
    return auth


def openapi_tools_from_spec(spec: dict[str, Any] | str | Path, *, base_url: str | None = None,
                            auth: OpenAPIAuth | None = None, headers: dict[str, str] | None = None,
                            operations: Iterable[str] | None = None, timeout_s: float = 30.0,
                            spec_url: str | None = None, domain: str | None = "web",
                            artifact_store: ArtifactStore | None = None) -> list[OpenAPITool]:
    """One tool per operation of a spec (dict, file path or text); `operations` keeps only those names."""
    spec = load_openapi_spec(spec)
    if base_url is None:
        servers = spec.get("servers") or []
        server_url = servers[0].get("url") if servers else None
        if server_url and "://" in server_url:
            base_url = server_url
        elif spec_url:
            base_url = urljoin(spec_url, server_url or "/")
        else:
            raise ValueError("the spec names no absolute server URL: pass base_url=")
    wanted = set(operations) if operations is not None else None
    auth = _auth_for_spec(auth, spec)
    tools: list[OpenAPITool] = []
    seen: set[str] = set()
    for path, item in (spec.get("paths") or {}).items():
        item = resolve_refs(item, spec)
        shared_params = item.get("parameters", [])
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            name = _tool_name(op.get("operationId"), method, path)
            if wanted is not None and name not in wanted:
                continue
            if name in seen:
                raise ValueError(f"two operations map to the tool name {name!r}; give them distinct operationIds")
            seen.add(name)
            params: dict[tuple[str, str], OperationParameter] = {}
            for raw in [*shared_params, *op.get("parameters", [])]:
                schema = dict(raw.get("schema") or {"type": "string"})
                if raw.get("description") and "description" not in schema:
                    schema["description"] = raw["description"]
                params[(raw["name"], raw["in"])] = OperationParameter(
                    name=raw["name"], location=raw["in"], required=bool(raw.get("required")), json_schema=schema)
            body_schema, body_required, media = None, False, "application/json"
            body = op.get("requestBody")
            if body:
                content = body.get("content", {})
                media = next((m for m in content if m == "application/json" or m.endswith("+json")),
                             next(iter(content), "application/json"))
                body_schema = (content.get(media) or {}).get("schema") or {"type": "object"}
                body_required = bool(body.get("required"))
            summary = op.get("summary") or ""
            description = op.get("description") or ""
            text = summary if not description else (f"{summary}. {description}" if summary else description)
            tools.append(OpenAPITool(
                name=name, description=text.strip() or f"{method.upper()} {path}", method=method, path=path,
                base_url=base_url, parameters=list(params.values()), body_schema=body_schema,
                body_required=body_required, body_media_type=media, auth=auth, headers=headers,
                timeout_s=timeout_s, domain=domain, artifact_store=artifact_store))
    if wanted is not None and wanted - seen:
        raise ValueError(f"operations not in the spec: {sorted(wanted - seen)}; it has: {sorted(seen) or '(none)'}")
    return tools


async def openapi_tools(source: dict[str, Any] | str | Path, **options: Any) -> list[OpenAPITool]:
    """Like `openapi_tools_from_spec`, and `source` may also be an http(s) URL of the spec."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        spec = await fetch_openapi_spec(source, timeout_s=options.get("timeout_s", 30.0))
        options.setdefault("spec_url", source)
        return openapi_tools_from_spec(spec, **options)
    return openapi_tools_from_spec(source, **options)
