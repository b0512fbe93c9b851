"""LangChain adapter: real langchain-core tools (@tool functions, StructuredTool, BaseTool subclasses)."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from pydantic import BaseModel, Field

from raygent.toolhub.adapters.langchain import LangchainTool, langchain_tools
from raygent.toolhub.errors import ToolError
from raygent.toolhub.registry import ToolRegistry


@tool
def multiply(a: int, b: int = 2) -> int:
    """Multiply two integers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


@tool
async def shout(text: str) -> str:
    """Upper-case a text (an async tool)."""
    await asyncio.sleep(0)
    return text.upper()


class Point(BaseModel):
    x: float
    y: float


class DistanceArgs(BaseModel):
    a: Point = Field(description="start point")
    b: Point = Field(description="end point")
    metric: Literal["euclid", "manhattan"] = "euclid"


def _distance(a: Point, b: Point, metric: str = "euclid") -> float:
    if isinstance(a, dict):
        a, b = Point(**a), Point(**b)
    if metric == "manhattan":
        return abs(a.x - b.x) + abs(a.y - b.y)
    return ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5


distance = StructuredTool.from_function(_distance, name="distance", description="Distance between two points.",
                                        args_schema=DistanceArgs)


class Lookup(BaseTool):
    """A stateful BaseTool subclass that raises ToolException on a miss."""

    name: str = "lookup"
    description: str = "Look a word up in a small dictionary."
    table: dict[str, str] = {"ray": "a distributed runtime"}

    def _run(self, word: str) -> str:
        if word not in self.table:
            raise ToolException(f"{word!r} is not in the dictionary")
        return self.table[word]


async def test_tool_functions_keep_name_schema_and_docs():
    t = LangchainTool(multiply)
    spec = t.spec
    assert spec.name == "multiply" and spec.description == "Multiply two integers."
    assert spec.parameters["required"] == ["a"]
    assert spec.parameters["properties"]["a"] == {"type": "integer", "description": "the first factor"}
    assert spec.parameters["properties"]["b"]["default"] == 2
    assert await t.call(a=6, b=7) == 42 and await t.call(a=5) == 10
    assert await LangchainTool(shout).call(text="hi") == "HI"


async def test_structured_tool_with_nested_schema():
    t = LangchainTool(distance)
    props = t.spec.parameters["properties"]
    assert props["metric"]["enum"] == ["euclid", "manhattan"]
    assert props["a"]["description"] == "start point"  # the nested model is inlined
    assert props["a"]["properties"]["x"] == {"type": "number"} and props["a"]["required"] == ["x", "y"]
    assert await t.call(a={"x": 0, "y": 0}, b={"x": 3, "y": 4}) == 5.0
    assert await t.call(a={"x": 0, "y": 0}, b={"x": 3, "y": 4}, metric="manhattan") == 7.0
    with pytest.raises(ToolError, match="distance: invalid arguments"):
        await t.call(a={"x": "far"}, b={"x": 1, "y": 1})


async def test_base_tool_errors_and_registry():
    tools = langchain_tools([multiply, shout, distance, Lookup()], domain="knowledge")
    assert all(t.domain == "knowledge" for t in tools)
    registry = ToolRegistry(tools)
    ok = await registry.call("lookup", {"word": "ray"})
    assert ok.ok and ok.output == "a distributed runtime"
    miss = await registry.call("lookup", {"word": "actor"})
    assert miss.error == "tool 'lookup' failed: ToolError: lookup: 'actor' is not in the dictionary"
    bad = await registry.call("multiply", {"a": "six"})
    assert bad.error and "invalid arguments for tool 'multiply'" in bad.error
    with pytest.raises(TypeError, match="expected a langchain_core.tools.BaseTool"):
        LangchainTool(lambda x: x)
