"""Remote A2A agents -> raygent Tools, through the official a2a-sdk client.

A remote agent (another raygent server's `/a2a/{agent}/`, or any A2A 1.0 / 0.3 server) becomes one
tool: its name and description come from the agent card, its one argument is `query`, the text
sent as the user's message. A call sends one blocking message over the first binding the card
offers that the SDK speaks (JSON-RPC or HTTP+JSON) and returns the answer's text; files in the
answer become raygent Artifacts (inline bytes are saved to the artifact store). An unreachable
agent, a protocol error, or a task that ends failed / rejected / canceled raises a ToolError with
the agent's reason, which the registry hands to the model as the call's error.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
from pydantic import SecretStr

from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store, kind_of
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.errors import ToolError, ToolUnavailableError

_CARD_PATH = "/.well-known/agent-card.json"
_DESCRIPTION_CHARS = 1000


def _require_sdk() -> Any:
    try:
        import a2a.client
    except ImportError as exc:
        raise ToolUnavailableError("A2A tools need the official SDK: pip install 'raygent[serve]' "
                                   "(a2a-sdk[http-server]>=1)") from exc
    return a2a


def _headers(api_key: str | SecretStr | None, headers: dict[str, str] | None) -> dict[str, str]:
    out = dict(headers or {})
    if api_key is not None:
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        out["Authorization"] = f"Bearer {secret}"
    return out


def _tool_name(card_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", card_name).strip("_")
    return name[:64] or "a2a_agent"


def _card_location(url: str) -> tuple[str, str]:
    """(base URL, card path) for an agent URL or a card URL."""
    if url.endswith(".json"):
        if _CARD_PATH in url:
            return url[: url.index(_CARD_PATH)], _CARD_PATH
        base, _, name = url.rpartition("/")
        return base, "/" + name
    return url.rstrip("/"), _CARD_PATH


def _describe(card: Any) -> str:
    text = (card.description or f"the remote A2A agent {card.name!r}").strip()
    skills = [f"{s.name}: {s.description}" if s.description and s.description != s.name else s.name
              for s in card.skills]
    if skills:
        text += " Skills: " + "; ".join(skills) + "."
    text += " Ask it in plain language; it answers in text."
    return text if len(text) <= _DESCRIPTION_CHARS else text[: _DESCRIPTION_CHARS - 1] + "…"


class A2AAgentTool(Tool):
    """One remote A2A agent as a tool: `query` goes to it as a message, its answer comes back.

    Each call is a fresh task in a fresh context (tools are shared between runs and users, so no
    conversation carries over). Holds the card and opens an HTTP client per call, so the tool
    pickles into a Ray actor.
    """

    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string",
                                 "description": "the request for the remote agent, in plain language"}},
        "required": ["query"],
    }

    def __init__(self, card: Any, *, name: str | None = None, description: str | None = None,
                 api_key: str | SecretStr | None = None, headers: dict[str, str] | None = None,
                 timeout_s: float = 120.0, domain: str | None = "agents",
                 artifact_store: ArtifactStore | None = None):
        _require_sdk()
        self.card = card
        self.name = name or _tool_name(card.name)
        self.description = description or _describe(card)
        self.api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.extra_headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.domain = domain
        self.artifact_store = artifact_store

    def __getstate__(self) -> dict[str, Any]:
        # the SDK's protobuf classes do not pickle (their module is registered as 'a2a_pb2'): send bytes
        return {**self.__dict__, "card": self.card.SerializeToString()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from a2a.types import a2a_pb2 as a2a

        card = a2a.AgentCard()
        card.ParseFromString(state["card"])
        self.__dict__.update({**state, "card": card})

    @property
    def url(self) -> str:
        interfaces = list(self.card.supported_interfaces)
        return interfaces[0].url if interfaces else "(no URL in the card)"

    async def call(self, query: str) -> Any:
        from a2a.client import A2AClientError, ClientConfig, ClientFactory
        from a2a.client.errors import A2AClientTimeoutError
        from a2a.types import a2a_pb2 as a2a
        from a2a.utils.constants import TransportProtocol
        from a2a.utils.errors import A2AError

        where = f"A2A agent {self.card.name!r} at {self.url}"
        message = a2a.Message(role=a2a.Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[a2a.Part(text=query)])
        request = a2a.SendMessageRequest(message=message)
        last = None
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=_headers(self.api_key, self.extra_headers),
                                     follow_redirects=True) as http:
            config = ClientConfig(streaming=False, httpx_client=http,
                                  supported_protocol_bindings=[TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON])
            try:
                client = ClientFactory(config).create(self.card)
            except ValueError as exc:
                raise ToolError(f"{where}: no binding this client speaks (JSON-RPC, HTTP+JSON): {exc}") from exc
            try:
                async for response in client.send_message(request):
                    last = response
            except A2AClientTimeoutError as exc:
                raise ToolError(f"{where} did not answer within {self.timeout_s:g} s") from exc
            except A2AClientError as exc:
                raise ToolError(f"{where} is unreachable or refused the call: {exc}") from exc
            except A2AError as exc:
                raise ToolError(f"{where} answered with an error: {type(exc).__name__}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise ToolError(f"{where} is unreachable: {type(exc).__name__}: {exc}") from exc
        if last is None:
            raise ToolError(f"{where} sent no response")
        if last.HasField("message"):
            return self._output(list(last.message.parts))
        return self._task_output(last.task, where)

    def _task_output(self, task: Any, where: str) -> Any:
        from a2a.types import a2a_pb2 as a2a

        state = a2a.TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower().replace("_", "-")
        status_parts = list(task.status.message.parts) if task.status.HasField("message") else []
        reason = " ".join(p.text for p in status_parts if p.HasField("text")).strip()
        if task.status.state == a2a.TaskState.TASK_STATE_COMPLETED:
            parts = [p for artifact in task.artifacts for p in artifact.parts] or status_parts
            if not parts:  # some agents answer as the last agent message of the history
                agent_turns = [m for m in task.history if m.role == a2a.Role.ROLE_AGENT]
                parts = list(agent_turns[-1].parts) if agent_turns else []
            return self._output(parts)
        if task.status.state in (a2a.TaskState.TASK_STATE_INPUT_REQUIRED, a2a.TaskState.TASK_STATE_AUTH_REQUIRED):
            return f"(the remote agent needs more: {state}) {reason}".strip()
        raise ToolError(f"{where}: the task ended {state}" + (f": {reason}" if reason else ""))

    def _output(self, parts: list[Any]) -> Any:
        texts: list[str] = []
        artifacts: list[Artifact] = []
        for part in parts:
            if part.HasField("text"):
                texts.append(part.text)
            elif part.HasField("data"):
                from google.protobuf.json_format import MessageToDict

                texts.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
            elif part.HasField("raw") or part.HasField("url"):
                artifacts.append(self._artifact(part))
        text = "\n".join(t for t in texts if t).strip()
        return ToolOutput(text, artifacts) if artifacts else text

    def _artifact(self, part: Any) -> Artifact:
        mime = part.media_type or None
        metadata = {"filename": part.filename} if part.filename else {}
        if part.HasField("url"):
            return Artifact(kind=kind_of(mime), uri=part.url, mime_type=mime, metadata=metadata)
        suffix = "." + part.filename.rsplit(".", 1)[-1] if "." in part.filename else ""
        store = self.artifact_store or default_store()
        return store.save_bytes(part.raw, suffix=suffix, mime_type=mime, metadata=metadata)


async def fetch_agent_card(url: str, *, api_key: str | SecretStr | None = None,
                           headers: dict[str, str] | None = None, timeout_s: float = 30.0) -> Any:
    """The A2A agent card (a2a-sdk's AgentCard) at an agent URL or a card URL."""
    _require_sdk()
    from a2a.client import A2ACardResolver
    from a2a.client.errors import AgentCardResolutionError

    base, path = _card_location(url)
    async with httpx.AsyncClient(timeout=timeout_s, headers=_headers(api_key, headers),
                                 follow_redirects=True) as http:
        try:
            return await A2ACardResolver(http, base, agent_card_path=path).get_agent_card()
        except AgentCardResolutionError as exc:
            raise ToolError(f"cannot read the A2A agent card: {exc}") from exc


async def a2a_tools(url: str, *, api_key: str | SecretStr | None = None, headers: dict[str, str] | None = None,
                    name: str | None = None, timeout_s: float = 120.0,
                    artifact_store: ArtifactStore | None = None) -> list[A2AAgentTool]:
    """The remote agent at `url` (its base URL or its card's URL) as a tool, in a list like the
    other adapters'. `api_key` is sent as a bearer token, to the card and to every call."""
    card = await fetch_agent_card(url, api_key=api_key, headers=headers, timeout_s=min(timeout_s, 30.0))
    return [A2AAgentTool(card, name=name, api_key=api_key, headers=headers, timeout_s=timeout_s,
                         artifact_store=artifact_store)]
