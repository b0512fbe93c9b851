"""MCP servers -> raygent Tools, through the official `mcp` SDK (stdio and streamable HTTP).

An `MCPConnection` keeps one session open per server: a background task owns the SDK client
(its anyio task groups must be entered and left in one task), and tools call through it. The
session opens on first use and reopens if it died, so a connection (and the tools holding it)
can be pickled into a Ray actor and reconnect there. Tool results map onto raygent's: text and
structured content become the output, images / audio / binary resources become artifacts, and
`isError` results or protocol errors raise a ToolError with the server's message.
"""

from __future__ import annotations

import asyncio
import base64
import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.errors import ToolError, ToolUnavailableError

if TYPE_CHECKING:
    import mcp


class MCPServerParams(BaseModel):
    """How to reach one MCP server: a command to spawn (stdio) or a streamable-HTTP URL."""

    name: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 60.0
    connect_timeout_s: float = 30.0
    tool_prefix: str = ""  # e.g. "github__" keeps tools of several servers apart

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerParams:
        if bool(self.command) == bool(self.url):
            raise ValueError(f"MCP server {self.name!r}: give exactly one of `command` (stdio) or `url` (HTTP)")
        return self

    def describe(self) -> str:
        return self.url or " ".join([self.command or "", *self.args])


def mcp_servers_from_config(config: dict[str, Any]) -> list[MCPServerParams]:
    """The common `{"mcpServers": {name: {"command", "args", "env"} | {"url", "headers"}}}` config."""
    servers = config.get("mcpServers", config)
    if not isinstance(servers, dict):
        raise ValueError("an MCP config is a mapping of server names to {command, args} or {url}")
    return [MCPServerParams(name=name, **{k: v for k, v in entry.items() if k != "type" and k != "transport"})
            for name, entry in servers.items()]


def _require_mcp() -> Any:
    try:
        import mcp
    except ImportError as exc:
        raise ToolUnavailableError("MCP tools need the official SDK: pip install 'raygent[adapters]' "
                                   "(mcp>=2)") from exc
    if not hasattr(mcp, "Client"):
        raise ToolUnavailableError("raygent's MCP adapter needs mcp>=2 (mcp.Client); "
                                   "pip install -U 'mcp>=2'")
    return mcp


class MCPConnection:
    """One open session to one MCP server (opened lazily, closed by `close()` or `async with`)."""

    def __init__(self, params: MCPServerParams, artifact_store: ArtifactStore | None = None):
        self.params = params
        self.artifact_store = artifact_store
        self._reset()

    def _reset(self) -> None:
        self._client: mcp.Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._lock: asyncio.Lock | None = None

    def __getstate__(self) -> dict[str, Any]:  # a live session does not travel; it reopens on first use
        return {"params": self.params, "artifact_store": self.artifact_store}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.params = state["params"]
        self.artifact_store = state["artifact_store"]
        self._reset()

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._runner is not None and not self._runner.done()

    async def __aenter__(self) -> MCPConnection:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _run(self) -> None:
        mcp = _require_mcp()
        assert self._ready is not None and self._closing is not None
        try:
            async with AsyncExitStack() as stack:
                if self.params.url:
                    from mcp.client.streamable_http import streamable_http_client
                    from mcp.shared._httpx_utils import create_mcp_http_client

                    http = await stack.enter_async_context(create_mcp_http_client(headers=self.params.headers))
                    target: Any = streamable_http_client(self.params.url, http_client=http)
                else:
                    target = mcp.StdioServerParameters(command=self.params.command, args=self.params.args,
                                                       env=self.params.env, cwd=self.params.cwd)
                client = await stack.enter_async_context(
                    mcp.Client(target, read_timeout_seconds=self.params.timeout_s))
                self._client = client
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:  # reported to open() / the next call; never lost in the task
            self._error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None
            self._ready.set()

    async def open(self) -> None:
        """Start the server session (idempotent); raises ToolUnavailableError when it cannot."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.is_open:
                return
            if self._runner is not None:  # a dead session: clean up and reconnect
                await self._stop_runner()
            self._ready, self._closing, self._error = asyncio.Event(), asyncio.Event(), None
            self._runner = asyncio.create_task(self._run(), name=f"mcp-{self.params.name}")
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=self.params.connect_timeout_s)
            except asyncio.TimeoutError:
                await self._stop_runner()
                raise ToolUnavailableError(f"MCP server {self.params.name!r} ({self.params.describe()}) did not "
                                           f"answer within {self.params.connect_timeout_s:g} s") from None
            if self._client is None:
                error = self._error
                await self._stop_runner()
                hint = ("; check the URL and the auth headers" if self.params.url
                        else "; check that the command starts an MCP server on stdio")
                raise ToolUnavailableError(f"cannot connect to MCP server {self.params.name!r} "
                                           f"({self.params.describe()}): {_describe(error)}{hint}") from error

    async def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            self._closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(runner), timeout=10)
        except (asyncio.TimeoutError, Exception):
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def close(self) -> None:
        """End the session (for stdio servers this also stops the server process)."""
        if self._lock is None:
            return
        async with self._lock:
            await self._stop_runner()
            self._client = None

    async def _session(self) -> mcp.Client:
        if not self.is_open:
            await self.open()
        assert self._client is not None
        return self._client

    async def list_tools(self) -> list[MCPTool]:
        """The server's tools (all pages) as raygent Tools bound to this connection."""
        client = await self._session()
        tools: list[MCPTool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(MCPTool(self, t) for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call a tool by its server-side name; returns the output (or a ToolOutput with artifacts)."""
        client = await self._session()
        try:
            result = await client.call_tool(name, arguments)
        except Exception as exc:
            raise ToolError(f"MCP server {self.params.name!r} failed on tool {name!r}: {_describe(exc)}") from exc
        return self._convert(name, result)

    def _convert(self, name: str, result: Any) -> Any:
        texts: list[str] = []
        artifacts: list[Artifact] = []
        store = self.artifact_store or default_store()
        for block in result.content or []:
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind in ("image", "audio"):
                artifacts.append(store.save_bytes(base64.b64decode(block.data), mime_type=block.mime_type))
            elif kind == "resource":
                res = block.resource
                if getattr(res, "text", None) is not None:
                    texts.append(res.text)
                elif getattr(res, "blob", None) is not None:
                    artifacts.append(store.save_bytes(base64.b64decode(res.blob), mime_type=res.mime_type,
                                                      metadata={"source_uri": str(res.uri)}))
            elif kind == "resource_link":
                texts.append(f"[{block.name}]({block.uri})")
        if result.is_error:
            raise ToolError(f"MCP tool {name!r} on server {self.params.name!r} reported an error: "
                            f"{' '.join(texts) or '(no message)'}")
        output: Any
        if result.structured_content is not None:
            output = result.structured_content
            if isinstance(output, dict) and set(output) == {"result"}:
                output = output["result"]
        elif len(texts) == 1:
            output = texts[0]
        else:
            output = "\n".join(texts)
        if artifacts:
            if output == "":
                output = {"artifacts": [a.uri for a in artifacts]}
            return ToolOutput(output, artifacts)
        return output


def _describe(exc: BaseException | None) -> str:
    """The innermost useful message of an exception (anyio wraps failures in ExceptionGroups)."""
    while isinstance(getattr(exc, "exceptions", None), (list, tuple)) and exc.exceptions:  # type: ignore[union-attr]
        exc = exc.exceptions[0]
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _tool_name(prefix: str, name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", prefix + name)[:64]


class MCPTool(Tool):
    """One tool of an MCP server; calls go through its server's shared connection."""

    def __init__(self, connection: MCPConnection, tool: Any):
        self.connection = connection
        self.remote_name: str = tool.name
        self.name = _tool_name(connection.params.tool_prefix, tool.name)
        self.description = tool.description or tool.title or tool.name
        schema = dict(tool.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        self.parameters = schema
        self.timeout_s = connection.params.timeout_s
        self.domain = connection.params.name

    async def call(self, **arguments: Any) -> Any:
        return await self.connection.call_tool(self.remote_name, arguments)


async def mcp_tools(params: MCPServerParams, artifact_store: ArtifactStore | None = None
                    ) -> tuple[MCPConnection, list[MCPTool]]:
    """Connect to a server and list its tools; close the returned connection when done."""
    connection = MCPConnection(params, artifact_store)
    try:
        return connection, await connection.list_tools()
    except BaseException:
        await connection.close()
        raise
