"""Adapter and remote-model tools inside a Ray actor: a ToolRegistry holding MCP (stdio), OpenAPI
and DashScope tools is shipped to an actor through `runtime.deploy` and serves the same calls.
The MCP session does not travel: the tools reconnect (one shared session) inside the actor."""

from __future__ import annotations

import sys

import pytest
from fastapi import FastAPI

from _local_servers import serve_asgi
from fake_dashscope import FakeDashScope
from raygent import runtime
from raygent.toolhub.adapters.mcp import MCPServerParams, mcp_tools
from raygent.toolhub.adapters.openapi import openapi_tools
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.dashscope_tools import DashScopeConfig, SambertTTS
from raygent.toolhub.registry import ToolRegistry

pytestmark = pytest.mark.ray

MCP_SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    server.run()
'''


async def test_registry_of_adapter_tools_as_an_actor(ray_cluster, tmp_path):
    script = tmp_path / "calc.py"
    script.write_text(MCP_SERVER)
    api = FastAPI()

    @api.get("/square/{x}", operation_id="square")
    def square(x: int):
        return {"square": x * x}

    fake = FakeDashScope(api_key="sk-test")
    with serve_asgi(api) as api_base, serve_asgi(fake.app()) as ds_base:
        connection, mcp = await mcp_tools(MCPServerParams(name="calc", command=sys.executable, args=[str(script)]))
        await connection.close()  # the actor opens its own session
        rest = await openapi_tools(api_base + "/openapi.json")
        tts = SambertTTS(DashScopeConfig(api_key="sk-test", http_base_url=ds_base + "/api/v1",
                                         websocket_base_url=ds_base.replace("http", "ws") + "/api-ws/v1/inference"),
                         artifact_store=ArtifactStore(tmp_path / "artifacts"))
        registry = runtime.deploy(ToolRegistry, [*mcp, *rest, tts], remote=True)
        try:
            assert runtime.is_remote(registry)
            names = {s.name for s in await registry.list_specs()}
            assert names == {"add", "square", "sambert_tts"}
            added = await registry.call("add", {"a": 20, "b": 22})
            assert added.ok and added.output == 42, added.error
            squared = await registry.call("square", {"x": 12})
            assert squared.ok and squared.output == {"square": 144}, squared.error
            speech = await registry.call("sambert_tts", {"text": "你好"})
            assert speech.ok, speech.error
            assert speech.artifacts[0].kind == "audio" and speech.artifacts[0].metadata["duration_s"] == 0.2
        finally:
            runtime.kill(registry)
