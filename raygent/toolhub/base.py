"""Tools: a name, a description, a JSON schema for the arguments, and an async `call`.

`@tool` turns a typed function into a tool (schema from the signature, descriptions from the
docstring); subclass `Tool` for anything stateful (model pipelines, kernels, clients).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from typing import Any, ClassVar, get_type_hints

from pydantic import ConfigDict, TypeAdapter, create_model
from pydantic.fields import FieldInfo

from raygent.schema import Artifact, ToolExample, ToolSpec

_TYPE_NAMES = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
               "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
               "dict": "object", "object": "object"}


def seed_parameters_to_schema(params: list[dict[str, Any]]) -> dict[str, Any]:
    """ModelScope-Agent's `[{'name','description','required','type'?}]` list -> a JSON schema."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in params:
        if "name" not in p:
            raise ValueError(f"seed-style parameter without a 'name': {p!r}")
        prop: dict[str, Any] = {"type": _TYPE_NAMES.get(str(p.get("type", "string")).lower(), "string")}
        if p.get("description"):
            prop["description"] = p["description"]
        properties[p["name"]] = prop
        if p.get("required", False):
            required.append(p["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def normalize_parameters(parameters: dict[str, Any] | list[dict[str, Any]] | None) -> dict[str, Any]:
    if parameters is None:
        return {"type": "object", "properties": {}}
    if isinstance(parameters, list):
        return seed_parameters_to_schema(parameters)
    if parameters.get("type") != "object":
        raise ValueError(f"tool parameters must be a JSON schema of type 'object', got {parameters!r}")
    return parameters


class ToolOutput:
    """Returned by a tool that wants to attach artifacts to its output."""

    def __init__(self, output: Any, artifacts: list[Artifact] | None = None):
        self.output = output
        self.artifacts = artifacts or []


class Tool:
    """Base class for tools. Subclasses set `name`, `description`, `parameters` and implement `call`.

    `parameters` may be a JSON schema or the seed's parameter list. `timeout_s` bounds each call.
    `idempotent` marks tools that are safe to run twice: a hub retries them when its actor crashed
    mid-call (a non-idempotent call is reported as failed instead, since it may have had effects).
    """

    name: ClassVar[str] | str = ""
    description: ClassVar[str] | str = ""
    parameters: Any = None
    domain: str | None = None
    timeout_s: float = 30.0
    idempotent: bool = False
    examples: list[ToolExample] = []

    async def call(self, **arguments: Any) -> Any:
        """Run the tool; return JSON-able output, or a ToolOutput with artifacts."""
        raise NotImplementedError(f"tool {self.name!r} does not implement call()")

    @property
    def spec(self) -> ToolSpec:
        if not self.name:
            raise ValueError(f"{type(self).__name__} has no tool name")
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=normalize_parameters(self.parameters),
            domain=self.domain,
            timeout_s=self.timeout_s,
            examples=[e if isinstance(e, ToolExample) else ToolExample(**e) for e in self.examples],
        )


def _docstring_params(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google/Sphinx-style docstring into summary and per-argument descriptions."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    in_args = False
    for line in lines:
        stripped = line.strip()
        if re.match(r"^(Args|Arguments|Parameters|Params)\s*:\s*$", stripped):
            in_args = True
            continue
        if re.match(r"^(Returns?|Raises|Examples?|Yields)\s*:\s*$", stripped):
            in_args = False
            continue
        m = re.match(r"^:param\s+(\w+)\s*:\s*(.*)$", stripped)
        if m:
            params[m.group(1)] = m.group(2)
            continue
        if in_args:
            m = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
            if m:
                params[m.group(1)] = m.group(3)
            continue
        if not params:
            summary.append(stripped)
    return " ".join(s for s in summary if s).strip(), params


class FunctionTool(Tool):
    """A tool made from a typed Python function (sync functions run in a worker thread)."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 domain: str | None = None, timeout_s: float = 30.0,
                 examples: list[ToolExample | dict[str, Any]] | None = None, idempotent: bool = False):
        self.fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)  # decided once: inspect costs ~1 us per call
        self.name = name or fn.__name__
        summary, arg_docs = _docstring_params(fn.__doc__ or "")
        self.description = description if description is not None else summary
        self.domain = domain
        self.timeout_s = timeout_s
        self.idempotent = idempotent
        self.examples = [e if isinstance(e, ToolExample) else ToolExample(**e) for e in (examples or [])]
        self.parameters = self._schema_from_signature(fn, arg_docs)

    @staticmethod
    def _schema_from_signature(fn: Callable[..., Any], arg_docs: dict[str, str]) -> dict[str, Any]:
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = hints.get(pname, Any)
            default = ... if param.default is param.empty else param.default
            fields[pname] = (annotation, FieldInfo(default=default, description=arg_docs.get(pname)))
        model = create_model(f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)
        schema = TypeAdapter(model).json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    async def call(self, **arguments: Any) -> Any:
        if self._is_async:
            return await self.fn(**arguments)
        return await asyncio.to_thread(self.fn, **arguments)


def tool(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorator: `@tool` or `@tool(name=..., description=..., timeout_s=..., idempotent=..., examples=[...])`."""
    if fn is None:
        return lambda f: FunctionTool(f, **options)
    return FunctionTool(fn, **options)
