"""Tools and tool registries."""

from raygent.toolhub.base import FunctionTool, Tool, ToolOutput, tool
from raygent.toolhub.registry import ToolRegistry

__all__ = ["Tool", "FunctionTool", "ToolOutput", "tool", "ToolRegistry"]
