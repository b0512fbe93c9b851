"""MCP adapter against real MCP servers (the official SDK's MCPServer): a stdio subprocess and a
streamable-HTTP app served by uvicorn on 127.0.0.1 behind a bearer-token check."""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest

from _local_servers import free_port, serve_asgi
from raygent.toolhub.adapters.mcp import MCPConnection, MCPServerParams, mcp_servers_from_config, mcp_tools
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.base import ToolOutput
from raygent.toolhub.errors import ToolError, ToolUnavailableError
from raygent.toolhub.registry import ToolRegistry

SERVER = textwrap.dedent('''
    import io
    import os

    from mcp.server.mcpserver import Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("demo")
    calls = {"n": 0}


    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b


    @server.tool()
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        if b == 0:
            raise ToolError("division by zero")  # a deliberate error reaches the client (a crash does not)
        return a / b


    @server.tool()
    def count() -> int:
        """How many times this tool ran in this server process."""
        calls["n"] += 1
        return calls["n"]


    @server.tool()
    def whoami() -> str:
        """The server's process id and its DEMO_TOKEN variable."""
        return f"{os.getpid()}:{os.environ.get('DEMO_TOKEN', '')}"


    @server.tool()
    def red_square(size: int = 4) -> Image:
        """A red PNG square."""
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.new("RGB", (size, size), (255, 0, 0)).save(buf, format="PNG")
        return Image(data=buf.getvalue(), format="png")
''')


@pytest.fixture(scope="module")
def server_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "demo_server.py"
    path.write_text(SERVER + "\n\nif __name__ == '__main__':\n    server.run()\n")
    return path


def stdio_params(script, **extra) -> MCPServerParams:
    return MCPServerParams(name="demo", command=sys.executable, args=[str(script)], **extra)


async def test_stdio_server_tools_are_listed_and_called(server_script, tmp_path):
    params = stdio_params(server_script, env={"DEMO_TOKEN": "t0k"}, tool_prefix="demo__")
    connection, tools = await mcp_tools(params, artifact_store=ArtifactStore(tmp_path))
    try:
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"demo__add", "demo__divide", "demo__count", "demo__whoami", "demo__red_square"}
        add = by_name["demo__add"]
        assert add.description == "Add two integers."
        assert add.spec.parameters["required"] == ["a", "b"]
        assert add.spec.parameters["properties"]["a"]["type"] == "integer"
        assert await add.call(a=2, b=40) == 42
        # one session, one server process: state persists across calls
        assert [await by_name["demo__count"].call() for _ in range(3)] == [1, 2, 3]
        pid, token = (await by_name["demo__whoami"].call()).split(":")
        assert token == "t0k"
        out = await by_name["demo__red_square"].call(size=6)
        assert isinstance(out, ToolOutput)
        (art,) = out.artifacts
        assert art.kind == "image" and art.mime_type == "image/png" and art.metadata == {"width": 6, "height": 6}
        with pytest.raises(ToolError, match="reported an error: .*division by zero"):
            await by_name["demo__divide"].call(a=1, b=0)
        registry = ToolRegistry(tools)
        result = await registry.call("demo__divide", {"a": 1, "b": 4})
        assert result.ok and result.output == 0.25
        with pytest.raises(ToolError, match="'nope'"):
            await connection.call_tool("nope", {})
    finally:
        await connection.close()
    assert not connection.is_open
    # the server process ended with the session; a new call starts a new one
    pid2, _ = (await by_name["demo__whoami"].call()).split(":")
    assert pid2 != pid
    await connection.close()


async def test_connection_pickles_without_its_session_and_reconnects(server_script):
    connection, tools = await mcp_tools(stdio_params(server_script))
    try:
        clone = pickle.loads(pickle.dumps(tools[0]))
        assert not clone.connection.is_open
        assert clone.name == tools[0].name
        clone_add = next(t for t in pickle.loads(pickle.dumps(tools)) if t.name == "add")
        assert await clone_add.call(a=1, b=1) == 2 and clone_add.connection.is_open
        await clone_add.connection.close()
    finally:
        await connection.close()


async def test_unreachable_servers_give_clear_errors(tmp_path):
    bad = MCPServerParams(name="ghost", command=sys.executable, args=["-c", "import sys; sys.exit(3)"],
                          connect_timeout_s=15)
    with pytest.raises(ToolUnavailableError, match="cannot connect to MCP server 'ghost'"):
        await mcp_tools(bad)
    down = MCPServerParams(name="down", url=f"http://127.0.0.1:{free_port()}/mcp", connect_timeout_s=15)
    with pytest.raises(ToolUnavailableError, match="cannot connect to MCP server 'down'"):
        await mcp_tools(down)
    with pytest.raises(ValueError, match="exactly one of"):
        MCPServerParams(name="x")
    cfg = mcp_servers_from_config({"mcpServers": {"a": {"command": "python", "args": ["s.py"]},
                                                  "b": {"url": "http://127.0.0.1:1/mcp", "headers": {"X": "1"}}}})
    assert [(s.name, s.command, s.url) for s in cfg] == [("a", "python", None), ("b", None, "http://127.0.0.1:1/mcp")]


def http_app(token: str):
    """The demo server's streamable-HTTP app behind a bearer-token check (a plain ASGI middleware)."""
    namespace: dict = {}
    exec(SERVER, namespace)
    inner = namespace["server"].streamable_http_app()

    async def app(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong token"})
                return
        await inner(scope, receive, send)

    return app


async def test_streamable_http_server_with_auth_header():
    with serve_asgi(http_app("abc")) as base:
        params = MCPServerParams(name="web", url=base + "/mcp", headers={"Authorization": "Bearer abc"})
        async with MCPConnection(params) as connection:
            tools = {t.name: t for t in await connection.list_tools()}
            assert await tools["add"].call(a=5, b=6) == 11
            assert [await tools["count"].call() for _ in range(2)] == [1, 2]
            with pytest.raises(ToolError, match="division by zero"):
                await tools["divide"].call(a=1, b=0)
        assert not connection.is_open
        wrong = MCPServerParams(name="web", url=base + "/mcp", headers={"Authorization": "Bearer nope"},
                                connect_timeout_s=15)
        with pytest.raises(ToolUnavailableError, match="cannot connect to MCP server 'web'.*error response; check the URL and the auth headers"):
            await mcp_tools(wrong)
