"""Tools, tool registries and domain tool hubs."""

from raygent.toolhub.base import FunctionTool, Tool, ToolOutput, tool
from raygent.toolhub.context import ToolContext, current_context
from raygent.toolhub.hub import HubClient, HubInfo, HubSet, ToolHub, deploy_hub
from raygent.toolhub.registry import ToolRegistry
from raygent.toolhub.wrappers import AudioWrapper, ImageWrapper, OutputWrapper, VideoWrapper

__all__ = ["Tool", "FunctionTool", "ToolOutput", "tool", "ToolRegistry", "ToolHub", "HubClient", "HubInfo", "HubSet",
           "deploy_hub", "ToolContext", "current_context", "AudioWrapper", "ImageWrapper", "VideoWrapper",
           "OutputWrapper"]
