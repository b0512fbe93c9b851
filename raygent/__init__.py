"""raygent: multi-agent LLM tool use on Ray (ModelScope-Agent re-founded on actors)."""

from raygent.actors.agent import Agent
from raygent.runtime import deploy
from raygent.schema import (
    AgentEvent,
    Artifact,
    Completion,
    Delta,
    GenerationParams,
    Message,
    RunResult,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from raygent.toolhub import FunctionTool, Tool, ToolRegistry, tool

__version__ = "0.1.0"

__all__ = ["Agent", "deploy", "tool", "Tool", "FunctionTool", "ToolRegistry", "AgentEvent", "Artifact",
           "Completion", "Delta", "GenerationParams", "Message", "RunResult", "ToolCall", "ToolResult", "ToolSpec",
           "Usage", "__version__"]
