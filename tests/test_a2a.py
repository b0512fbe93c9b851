"""A2A: raygent agents served by `A2ARouter` (a real uvicorn on 127.0.0.1) to the a2a-sdk's own client
and to raygent's `A2AAgentTool`.

The agents are real raygent Agents (the loop, the tool registry, the calculator) whose model is a
ScriptedChatModel, run by an in-process AgentRunner that records what the server asked of it.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import parse_agent_card
from a2a.helpers import get_artifact_text, get_data_parts, get_message_text
from a2a.types import a2a_pb2 as a2a
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import A2AError
from a2a.utils.proto_utils import validate_proto_required_fields
from fastapi import FastAPI
from google.protobuf.json_format import MessageToDict

from _local_servers import free_port, serve_asgi
from raygent.actors.agent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.schema import AgentEvent
from raygent.serve.a2a import A2ARouter
from raygent.serve.models import AgentCard, RunRequest, ToolCard
from raygent.toolhub.adapters.a2a import A2AAgentTool, a2a_tools
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.base import ToolOutput, tool
from raygent.toolhub.builtin.calculator import CalculatorTool
from raygent.toolhub.errors import ToolError
from raygent.toolhub.registry import ToolRegistry

pytestmark = pytest.mark.timeout(60)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
KEYS = {"key-alice": "alice", "key-bob": "bob"}


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


# What the calculator agent's model says for each question: its tool call, then its answer.
CALC_TURNS = {
    "what is 6*7?": [call("calculator", expression="6*7"), "The answer is 42."],
    "and twice that?": [call("calculator", expression="42*2"), "Twice that is 84."],
    "what is 1/0?": [call("calculator", expression="1/0"), "That has no value."],
}


class RecordingRunner:
    """An in-process AgentRunner: one real Agent per session (so a session continues its history),
    its model scripted turn by turn; records every (session_id, owner) and when a stream closes."""

    def __init__(self, name: str, tools: list[Any], turns: dict[str, list[str]] | None = None, *,
                 model_delay_s: float = 0.0):
        self.name = name
        self.tools = tools
        self.turns = turns or {}
        self.model_delay_s = model_delay_s
        self.calls: list[tuple[str | None, str]] = []
        self.models: dict[str, ScriptedChatModel] = {}
        self.started = threading.Event()
        self.closed = threading.Event()
        self._agents: dict[str, Agent] = {}

    async def card(self) -> AgentCard:
        return AgentCard(name=self.name, description=f"the {self.name} test agent", model="scripted",
                         tools=[ToolCard(name=t.name, description=t.description) for t in self.tools])

    async def stream(self, request: RunRequest, owner: str = "anonymous") -> AsyncIterator[AgentEvent]:
        self.calls.append((request.session_id, owner))
        key = request.session_id or f"run-{len(self.calls)}"
        if key not in self._agents:
            self.models[key] = ScriptedChatModel([], delay_s=self.model_delay_s)
            self._agents[key] = Agent(self.models[key], tools=self.tools, system="You are a test agent.")
        self.models[key].replies += self.turns.get(request.text(), [])
        self.started.set()
        try:
            async for event in self._agents[key].stream(request.text()):
                yield event
        finally:
            self.closed.set()


class LockedRunner(RecordingRunner):
    """A runner that refuses the run (as a served agent refuses another key's session)."""

    async def stream(self, request: RunRequest, owner: str = "anonymous") -> AsyncIterator[AgentEvent]:
        raise LookupError(f"session {request.session_id!r} not found")
        yield  # pragma: no cover - makes this an async generator


class KeyOwners:
    """Stands in for raygent's auth middleware: a known bearer key puts its owner in scope["state"]."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            owner = KEYS.get(auth.removeprefix("Bearer "))
            if owner:
                scope.setdefault("state", {})["raygent_owner"] = owner
        await self.app(scope, receive, send)


def painter_tool(store: ArtifactStore) -> Any:
    @tool
    async def draw(subject: str) -> ToolOutput:
        """Draw a picture of the subject."""
        art = store.save_bytes(PNG, mime_type="image/png")
        return ToolOutput({"image": art.uri, "subject": subject}, [art])

    return draw


serve = serve_asgi  # uvicorn on 127.0.0.1 in a thread, with uvicorn options such as root_path


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RecordingRunner]:
    store = ArtifactStore(tmp_path_factory.mktemp("server-artifacts"))
    return {
        "calc": RecordingRunner("calc", [CalculatorTool()], CALC_TURNS),
        "slow": RecordingRunner("slow", [CalculatorTool()], {"take your time": ["never said"]}, model_delay_s=60),
        "painter": RecordingRunner("painter", [painter_tool(store)],
                                   {"draw a fox": [call("draw", subject="fox"), "Here is your fox."]}),
        "broken": RecordingRunner("broken", [CalculatorTool()]),  # no replies: its model fails
        "locked": LockedRunner("locked", []),
    }


def make_app(runners: dict[str, RecordingRunner]) -> Any:
    app = FastAPI()
    app.mount("/a2a", A2ARouter(lambda: runners))  # a callable: the server fills the mapping when it starts
    return KeyOwners(app)


@pytest.fixture(scope="module")
def base(runners: dict[str, RecordingRunner]) -> Iterator[str]:
    with serve(make_app(runners)) as url:
        yield url


def user_message(text: str, context_id: str | None = None) -> a2a.SendMessageRequest:
    message = a2a.Message(role=a2a.Role.ROLE_USER, message_id=f"m-{time.monotonic_ns()}", parts=[a2a.Part(text=text)])
    if context_id:
        message.context_id = context_id
    return a2a.SendMessageRequest(message=message)


@asynccontextmanager
async def sdk_client(url: str, *, streaming: bool, key: str = "key-alice",
                     bindings: list[str] | None = None) -> AsyncIterator[Any]:
    """The a2a-sdk's client for the agent at `url` (its card resolved over HTTP), with an API key."""
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    try:
        config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=bindings or [])
        yield await create_client(url, config)
    finally:
        await http.aclose()


async def send(url: str, text: str, *, streaming: bool = False, context_id: str | None = None,
               **options: Any) -> list[Any]:
    async with sdk_client(url, streaming=streaming, **options) as client:
        return [r async for r in client.send_message(user_message(text, context_id))]


def status_texts(events: list[Any]) -> list[str]:
    return [get_message_text(e.status_update.status.message) for e in events
            if e.HasField("status_update") and e.status_update.status.HasField("message")]


# --- the card and the router ----------------------------------------------------------------------

async def test_card_is_a_valid_a2a_card_with_the_agents_url(base: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/a2a/calc/.well-known/agent-card.json")
    assert response.status_code == 200
    card = parse_agent_card(response.json())
    validate_proto_required_fields(card)  # every field the A2A spec requires is there
    assert card.name == "calc" and card.description == "the calc test agent"
    assert card.capabilities.streaming
    assert [(s.id, s.description) for s in card.skills] == [("calculator", CalculatorTool.description)]
    bindings = {(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces}
    assert bindings == {("JSONRPC", "1.0"), ("HTTP+JSON", "1.0"), ("JSONRPC", "0.3"), ("HTTP+JSON", "0.3")}
    assert {i.url for i in card.supported_interfaces} == {f"{base}/a2a/calc/"}
    assert response.json()["url"] == f"{base}/a2a/calc/"  # the 0.3 field older clients read


def test_card_url_follows_the_proxy(runners: dict[str, RecordingRunner]) -> None:
    """Behind a proxy that strips /agents-api and forwards https: the card names the public URL."""
    with serve(make_app(runners), root_path="/agents-api", proxy_headers=True, forwarded_allow_ips="*") as url:
        response = httpx.get(f"{url}/a2a/calc/.well-known/agent-card.json",
                             headers={"Host": "agents.example.com", "X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    card = parse_agent_card(response.json())
    assert {i.url for i in card.supported_interfaces} == {"https://agents.example.com/agents-api/a2a/calc/"}


async def test_unknown_agent_is_404_naming_the_agents(base: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/a2a/nobody/.well-known/agent-card.json")
        bare = await http.post(f"{base}/a2a/", json={})
    assert response.status_code == 404 and bare.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "agent_not_found"
    assert error["available"] == ["broken", "calc", "locked", "painter", "slow"]
    assert "'nobody'" in error["message"] and "calc" in error["message"]


# --- the a2a-sdk's own client against raygent -----------------------------------------------------

async def test_sdk_client_blocking_send_gets_the_answer_as_the_tasks_artifact(base: str) -> None:
    [response] = await send(f"{base}/a2a/calc/", "what is 6*7?")
    task = response.task
    assert task.status.state == a2a.TaskState.TASK_STATE_COMPLETED
    assert [a.name for a in task.artifacts] == ["answer"]
    assert get_artifact_text(task.artifacts[0]) == "The answer is 42."
    assert get_message_text(task.history[0]) == "what is 6*7?"


async def test_sdk_client_streaming_sees_tool_calls_then_the_answer(base: str, runners: dict) -> None:
    events = await send(f"{base}/a2a/calc/", "what is 6*7?", streaming=True)
    texts = status_texts(events)
    assert texts[0] == 'calling calculator {"expression": "6*7"}'
    assert texts[1] == 'calculator returned: {"expression": "6*7", "result": 42}'
    tool_event = next(e.status_update for e in events if e.HasField("status_update")
                      and MessageToDict(e.status_update.metadata).get("raygent_event") == "tool_call")
    [data] = get_data_parts(tool_event.status.message.parts)  # the raygent event itself, as data
    assert data["type"] == "tool_call" and data["tool_call"]["name"] == "calculator"
    answers = [get_artifact_text(e.artifact_update.artifact) for e in events if e.HasField("artifact_update")]
    assert answers == ["The answer is 42."]
    assert events[-1].status_update.status.state == a2a.TaskState.TASK_STATE_COMPLETED
    assert runners["calc"].calls[-1][1] == "alice"  # the raygent owner reached the runner


async def test_a_failed_tool_call_is_reported_once(base: str) -> None:
    events = await send(f"{base}/a2a/calc/", "what is 1/0?", streaming=True)
    texts = status_texts(events)
    assert len(texts) == 2 and texts[0] == 'calling calculator {"expression": "1/0"}'
    assert texts[1].startswith("calculator failed: ") and "division by zero" in texts[1]
    assert events[-1].status_update.status.state == a2a.TaskState.TASK_STATE_COMPLETED


async def test_http_json_binding_and_task_get(base: str) -> None:
    url = f"{base}/a2a/calc/"
    events = await send(url, "what is 6*7?", streaming=True, bindings=[TransportProtocol.HTTP_JSON])
    assert status_texts(events)[:1] == ['calling calculator {"expression": "6*7"}']
    task_id = events[0].task.id
    for binding in (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON):
        async with sdk_client(url, streaming=False, bindings=[binding]) as client:
            task = await client.get_task(a2a.GetTaskRequest(id=task_id))
        assert task.status.state == a2a.TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(task.artifacts[0]) == "The answer is 42."


async def test_a_0_3_client_speaks_json_rpc_without_the_version_header(base: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/send",
            "params": {"message": {"role": "user", "messageId": "m-03", "kind": "message",
                                   "parts": [{"kind": "text", "text": "what is 6*7?"}]}}}
    async with httpx.AsyncClient(timeout=30) as http:
        result = (await http.post(f"{base}/a2a/calc/", json=body)).json()["result"]
    assert result["kind"] == "task" and result["status"]["state"] == "completed"
    assert result["artifacts"][0]["parts"][0]["text"] == "The answer is 42."


async def test_context_id_continues_the_session(base: str, runners: dict) -> None:
    url = f"{base}/a2a/calc/"
    [first] = await send(url, "what is 6*7?")
    context_id = first.task.context_id
    [second] = await send(url, "and twice that?", context_id=context_id)
    assert second.task.context_id == context_id and second.task.id != first.task.id
    assert get_artifact_text(second.task.artifacts[0]) == "Twice that is 84."
    calc = runners["calc"]
    assert [c for c in calc.calls if c[0] == context_id] == [(context_id, "alice"), (context_id, "alice")]
    second_prompt = calc.models[context_id].requests[2]["messages"]  # the model's first request of turn 2
    assert [m.content for m in second_prompt if m.role == "user"] == ["what is 6*7?", "and twice that?"]


async def test_another_key_does_not_see_the_task(base: str) -> None:
    [response] = await send(f"{base}/a2a/calc/", "what is 6*7?")
    async with sdk_client(f"{base}/a2a/calc/", streaming=False, key="key-bob") as client:
        with pytest.raises(A2AError, match="not found"):
            await client.get_task(a2a.GetTaskRequest(id=response.task.id))


async def test_cancel_stops_the_run_and_closes_its_stream(base: str, runners: dict) -> None:
    slow = runners["slow"]
    async with sdk_client(f"{base}/a2a/slow/", streaming=True) as client:
        stream = client.send_message(user_message("take your time"))
        first = await anext(stream)
        task_id = first.task.id
        assert await asyncio.to_thread(slow.started.wait, 10)  # the model is now waiting (60 s)
        assert not slow.closed.is_set()
        async with sdk_client(f"{base}/a2a/slow/", streaming=False) as canceller:
            started = time.monotonic()
            task = await canceller.cancel_task(a2a.CancelTaskRequest(id=task_id))
            assert time.monotonic() - started < 5
            assert task.status.state == a2a.TaskState.TASK_STATE_CANCELED
            assert slow.closed.is_set()  # the runner's stream was closed before the cancel was answered
            rest = [e async for e in stream]
            stored = await canceller.get_task(a2a.GetTaskRequest(id=task_id))
    assert rest[-1].status_update.status.state == a2a.TaskState.TASK_STATE_CANCELED
    assert stored.status.state == a2a.TaskState.TASK_STATE_CANCELED


async def test_failures_end_the_task_failed_with_the_reason(base: str) -> None:
    [broken] = await send(f"{base}/a2a/broken/", "what is 6*7?")
    assert broken.task.status.state == a2a.TaskState.TASK_STATE_FAILED
    assert "model call failed: ScriptExhausted" in get_message_text(broken.task.status.message)
    [locked] = await send(f"{base}/a2a/locked/", "hello")
    assert locked.task.status.state == a2a.TaskState.TASK_STATE_FAILED
    assert get_message_text(locked.task.status.message).startswith("LookupError: session '")


# --- raygent's A2A client (a tool) against raygent's A2A server ------------------------------------

async def test_a_raygent_agent_uses_a_remote_agent_as_a_tool(base: str, runners: dict) -> None:
    [remote] = await a2a_tools(f"{base}/a2a/calc/", api_key="key-alice")
    assert remote.name == "calc"
    assert remote.spec.parameters["required"] == ["query"]
    assert pickle.loads(pickle.dumps(remote)).card == remote.card  # it can travel into a tool hub actor
    assert "calculator" in remote.description and "the calc test agent" in remote.description
    model = ScriptedChatModel([call("calc", query="what is 6*7?"), "The calc agent says 42."])
    result = await Agent(model, tools=[remote]).run("Ask the calc agent what 6*7 is.")
    assert result.answer == "The calc agent says 42."
    assert [(c.name, c.result, c.error) for c in result.tool_calls] == [("calc", "The answer is 42.", None)]
    assert model.requests[1]["messages"][-1].content == "The answer is 42."  # what the model read back
    assert runners["calc"].calls[-1][1] == "alice"  # the bearer key reached the server as its owner


async def test_remote_files_become_raygent_artifacts(base: str, tmp_path: Path) -> None:
    [remote] = await a2a_tools(f"{base}/a2a/painter/.well-known/agent-card.json",  # a card URL works too
                               artifact_store=ArtifactStore(tmp_path))
    result = await ToolRegistry([remote]).call("painter", {"query": "draw a fox"})
    assert result.error is None and result.output == "Here is your fox."
    [art] = result.artifacts
    assert art.kind == "image" and art.mime_type == "image/png"
    assert Path(art.uri).parent == tmp_path and Path(art.uri).read_bytes() == PNG


async def test_remote_failures_and_unreachable_agents_are_tool_errors(base: str) -> None:
    [broken] = await a2a_tools(f"{base}/a2a/broken/")
    [calc] = await a2a_tools(f"{base}/a2a/calc/")
    dead_url = f"http://127.0.0.1:{free_port()}/a2a/calc/"
    gone = A2AAgentTool(calc.card, name="gone")
    for interface in gone.card.supported_interfaces:
        interface.url = dead_url
    registry = ToolRegistry([broken, gone])
    failed = await registry.call("broken", {"query": "what is 6*7?"})
    assert failed.error is not None and "the task ended failed: model call failed" in failed.error
    model = ScriptedChatModel([call("gone", query="what is 6*7?"), "The calc agent is down."])
    result = await Agent(model, tools=registry).run("Ask the calc agent.")
    [record] = result.tool_calls
    assert record.error is not None and dead_url in record.error and "unreachable" in record.error
    assert result.answer == "The calc agent is down."  # the loop went on with the error
    with pytest.raises(ToolError, match=f"cannot read the A2A agent card: .* from {dead_url}.well-known/"):
        await a2a_tools(dead_url)
