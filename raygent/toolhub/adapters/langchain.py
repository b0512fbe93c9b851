"""LangChain tools -> raygent Tools (the seed's `LangchainTool`).

Any langchain-core `BaseTool` (an `@tool` function, a `StructuredTool`, a `BaseTool` subclass)
keeps its name and description; its args schema becomes the JSON schema (as LangChain itself
renders it for OpenAI tool calling), and calls go through `ainvoke`, so sync tools run in
LangChain's executor and async tools natively. A `ToolException` or an argument the tool's own
schema rejects becomes a ToolError with its message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raygent.toolhub.base import Tool, _docstring_params
from raygent.toolhub.errors import ToolError, ToolUnavailableError


def _base_tool_class() -> type:
    try:
        from langchain_core.tools import BaseTool
    except ImportError as exc:
        raise ToolUnavailableError("wrapping LangChain tools needs langchain-core: "
                                   "pip install 'raygent[adapters]'") from exc
    return BaseTool


class LangchainTool(Tool):
    """A langchain-core tool as a raygent Tool."""

    def __init__(self, langchain_tool: Any, *, name: str | None = None, domain: str | None = None,
                 timeout_s: float = 30.0):
        base = _base_tool_class()
        if not isinstance(langchain_tool, base):
            raise TypeError(f"expected a langchain_core.tools.BaseTool (e.g. made with @tool), "
                            f"got {type(langchain_tool).__name__}")
        from langchain_core.utils.function_calling import convert_to_openai_tool

        self.langchain_tool = langchain_tool
        function = convert_to_openai_tool(langchain_tool)["function"]
        self.name = name or function["name"]
        schema = dict(function.get("parameters") or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        # @tool keeps the whole docstring as the description: split off its Args section so the
        # model sees a short description and per-argument descriptions in the schema
        summary, arg_docs = _docstring_params(function.get("description") or "")
        if arg_docs and set(arg_docs) <= set(schema["properties"]):
            for arg, doc in arg_docs.items():
                schema["properties"][arg] = {**schema["properties"][arg]}
                schema["properties"][arg].setdefault("description", doc)
            self.description = summary
        else:
            self.description = function.get("description") or ""
        self.parameters = schema
        self.domain = domain
        self.timeout_s = timeout_s

    async def call(self, **arguments: Any) -> Any:
        from langchain_core.tools import ToolException
        from pydantic import ValidationError

        try:
            output = await self.langchain_tool.ainvoke(arguments)
        except ToolException as exc:
            raise ToolError(f"{self.name}: {exc}") from exc
        except ValidationError as exc:
            raise ToolError(f"{self.name}: invalid arguments: {exc}") from exc
        content = getattr(output, "content", None)  # a ToolMessage (tools with content_and_artifact)
        return content if content is not None and not isinstance(output, (str, dict, list)) else output


def langchain_tools(tools: Iterable[Any], **options: Any) -> list[LangchainTool]:
    """Wrap several LangChain tools (e.g. a toolkit's `get_tools()`)."""
    return [LangchainTool(t, **options) for t in tools]
