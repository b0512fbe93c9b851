"""Tool hubs: domains, limits, context, crash recovery of hub actors, merged registries, wrappers."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import wave

import pytest

from raygent import Agent, runtime
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.schema import ToolCall, ToolResult
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.base import Tool, ToolOutput, tool
from raygent.toolhub.context import current_context
from raygent.toolhub.hub import HubClient, HubSet, ToolHub, deploy_hub
from raygent.toolhub.registry import ToolRegistry, result_from_row
from raygent.toolhub.wrappers import AudioWrapper, ImageWrapper, VideoWrapper


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(timeout_s=0.2)
async def slow() -> str:
    """Sleeps past its timeout."""
    await asyncio.sleep(5)
    return "never"


@tool
def broken() -> str:
    """Always raises."""
    raise RuntimeError("disk on fire")


@tool
def whoami() -> dict:
    """The caller's session and this process."""
    ctx = current_context()
    return {"session": ctx.session_id, "call_id": ctx.call_id, "pid": os.getpid()}


class Echo(Tool):
    name = "echo"
    description = "Echo the text back."
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    domain = "text"

    async def call(self, text: str) -> str:
        return text


def _call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


async def test_hub_specs_carry_the_domain_and_failures_are_results():
    hub = ToolHub("math", [add, slow, broken, Echo])  # a Tool class is built by the hub
    specs = {s.name: s for s in await hub.list_specs()}
    assert specs["add"].domain == "math" and specs["echo"].domain == "text"
    assert (await hub.call("add", {"a": 2, "b": 3})).output == 5
    bad = await hub.call("add", {"a": "two"})
    assert "invalid arguments for tool 'add'" in bad.error and "'b' is a required property" in bad.error
    assert (await hub.call("slow")).error == "tool 'slow' timed out after 0.2 s"
    assert (await hub.call("broken")).error == "tool 'broken' failed: RuntimeError: disk on fire"
    assert (await hub.call("add", {"a": 1, "b": 1})).output == 2  # still serving
    info = await hub.info()
    assert info.calls == 5 and info.in_flight == 0 and info.tools == ["add", "slow", "broken", "echo"]


async def test_context_reaches_the_tool():
    hub = ToolHub("id", [whoami])
    r = await hub.call("whoami", {}, {"session_id": "s-42"}, call_id="c1")
    assert r.output["session"] == "s-42" and r.output["call_id"] == "c1"
    assert (await hub.call("whoami", {}, "s-7")).output["session"] == "s-7"
    assert (await hub.call("whoami")).output["session"] == "default"


async def test_concurrency_limit_is_respected_and_queueing_is_not_timeout():
    """As ratios: one nap takes a tenth of the timeout (room for a slow machine), and the last pair
    queues for 11 naps, past the timeout, so a queue that counted against it would fail the test."""
    state = {"now": 0, "peak": 0}
    nap_s, calls, limit = 0.05, 24, 2

    @tool(timeout_s=10 * nap_s)
    async def nap() -> int:
        """Sleep, counting how many run at once."""
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(nap_s)
        state["now"] -= 1
        return 1

    hub = ToolHub("sleepy", [nap], max_concurrency=limit)
    results = await hub.call_many([ToolCall(name="nap") for _ in range(calls)])
    assert state["peak"] == limit
    assert (calls / limit - 1) * nap_s > 10 * nap_s  # the last pair's queueing alone outlasts the timeout
    assert all(r.ok for r in results), [r.error for r in results]  # 0.55 s of queueing, no timeout


async def test_hubset_merges_routes_and_isolates_a_dead_hub():
    class DeadHub(ToolRegistry):
        async def call_many(self, calls):
            raise ConnectionError("gone")

    hubs = HubSet([ToolHub("math", [add]), ToolHub("text", [Echo()]), DeadHub([broken])])
    assert {s.name for s in await hubs.list_specs()} == {"add", "echo", "broken"}
    calls = [ToolCall(name="echo", arguments={"text": "hi"}), ToolCall(name="add", arguments={"a": 1, "b": 2}),
             ToolCall(name="broken"), ToolCall(name="nope")]
    out = await hubs.call_many(calls)
    assert [r.call_id for r in out] == [c.id for c in calls]
    assert out[0].output == "hi" and out[1].output == 3
    assert out[2].error == "tool hub DeadHub unavailable: ConnectionError: gone"
    assert out[3].error.startswith("unknown tool 'nope'; available tools: add, broken, echo")
    with pytest.raises(ValueError, match="tool 'add' is offered by two hubs"):
        await HubSet([ToolHub("a", [add]), ToolHub("b", [add])]).list_specs()


async def test_agent_runs_on_a_hubset():
    llm = ScriptedChatModel([_call("add", a=20, b=22), _call("echo", text="done"), "42"])
    result = await Agent(llm=llm, tools=HubSet([ToolHub("math", [add]), ToolHub("text", [Echo])])).run("go")
    assert [c.result for c in result.tool_calls] == [42, "done"] and result.answer == "42"
    assert set(llm.requests[0]["tools"]) == {"add", "echo"}


@tool(idempotent=True)
def crash_once(marker: str) -> str:
    """Kills its own process the first time (the marker file records that it did)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "survived"


@tool
def crash_always() -> str:
    """Kills its own process (not idempotent: must not be retried)."""
    os._exit(1)


@pytest.mark.ray
@pytest.mark.parametrize("fast_lane", [False, True])
async def test_crashed_hub_actor_restarts_and_retries_only_idempotent_calls(ray_cluster, tmp_path, fast_lane):
    hub = deploy_hub("fragile", [crash_once, crash_always, whoami], num_cpus=0, fast_lane=fast_lane)
    assert isinstance(hub, HubClient)
    pid = (await hub.call("whoami")).output["pid"]
    assert pid != os.getpid()  # it runs in the actor
    retried = await hub.call("crash_once", {"marker": str(tmp_path / "m")})
    assert retried.ok and retried.output == "survived"  # the actor died, came back, the call was re-sent
    failed = await hub.call("crash_always")
    assert failed.error.startswith("tool 'crash_always' did not finish: the 'fragile' tool hub actor died")
    assert "not retried because the tool is not marked idempotent" in failed.error
    after = await hub.call("whoami", {}, "s1")
    assert after.ok and after.output["pid"] not in (pid, os.getpid())  # a restarted process serves on
    if fast_lane:  # the calls went over the socket lane, reconnected after each restart
        assert hub.proxy._socket._lane.calls >= 1
    runtime.kill(hub.proxy)


@pytest.mark.ray
async def test_runtime_deploy_of_a_hub_and_a_remote_member_in_a_hubset(ray_cluster):
    proxy = runtime.deploy(ToolHub, remote=True, init_kwargs={"domain": "math", "tools": [add]}, num_cpus=0,
                           resources={})
    hubs = HubSet([proxy, ToolHub("text", [Echo])])
    assert isinstance(hubs.hubs[0], HubClient)
    specs = {s.name: s.domain for s in await hubs.list_specs()}
    assert specs == {"add": "math", "echo": "text"}
    out = await hubs.call_many([ToolCall(name="add", arguments={"a": 1, "b": 1}),
                                ToolCall(name="echo", arguments={"text": "x"})])
    assert [r.output for r in out] == [2, "x"]
    runtime.kill(proxy)


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * int(16000 * seconds))
    return buf.getvalue()


async def test_seed_wrappers_are_tool_outputs_with_artifacts(tmp_path):
    from PIL import Image

    store = ArtifactStore(tmp_path)
    audio = AudioWrapper(_wav(0.25), store=store)
    assert audio.artifact.metadata["duration_s"] == 0.25 and str(audio).startswith("<audio id=audio")
    assert audio.path.endswith(".wav") and audio.raw_data[:4] == b"RIFF"
    image = ImageWrapper(Image.new("RGB", (32, 16), "red"), store=store)
    assert image.artifact.metadata == {"width": 32, "height": 16} and str(image) == f"![IMAGEGEN]({image.path})"
    assert image.raw_data.size == (32, 16)
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    video = VideoWrapper(tmp_path / "clip.mp4", store=store)
    assert video.artifact.kind == "video" and video.artifact.mime_type == "video/mp4"
    with pytest.raises(FileNotFoundError, match="URLs are not downloaded"):
        AudioWrapper("https://example.com/a.wav", store=store)

    @tool
    def speak() -> AudioWrapper:
        """Return audio the seed's way."""
        return AudioWrapper(_wav(0.5), store=store)

    result = await ToolHub("speech", [speak]).call("speak")
    assert result.ok and result.artifacts[0].kind == "audio" and result.artifacts[0].metadata["duration_s"] == 0.5
    assert result.output.startswith("<audio id=audio")


async def test_a_tool_returning_a_bad_artifact_gets_an_error_result_and_the_hub_keeps_serving():
    @tool
    def draw(ok: bool = False) -> ToolOutput:
        """Returns an artifact dict; without `ok` it has no uri."""
        return ToolOutput("drawn", [{"kind": "image", "uri": "/tmp/x.png"} if ok else {"kind": "image"}])

    hub = ToolHub("vision", [draw])
    bad = await hub.call("draw")
    # what the model and the user see: which tool, what is wrong, where
    assert bad.error == "tool 'draw' returned an invalid artifact: Field required (at uri)" and bad.output is None
    good = await hub.call("draw", {"ok": True})
    assert good.ok and good.output == "drawn" and good.artifacts[0].uri == "/tmp/x.png"
    rows = await hub.call_wire([("c1", "draw", {"ok": True}), ("c2", "draw", {})])  # the actor's form
    assert rows[0]["artifacts"] == [good.artifacts[0].model_dump()] and rows[1]["error"].startswith("tool 'draw'")


class _CountingProxy:
    """Stands in for an actor proxy (same methods), counting round trips."""

    def __init__(self, hub: ToolHub, delay_s: float = 0.01):
        self.hub, self.round_trips, self.delay_s = hub, 0, delay_s

    async def call_wire(self, calls, context=None):
        self.round_trips += 1
        await asyncio.sleep(self.delay_s)  # a round trip takes time: calls pile up behind it
        return await self.hub.call_wire(calls, context)

    async def info(self):
        return await self.hub.info()


async def test_hub_client_coalesces_concurrent_calls_into_few_round_trips():
    proxy = _CountingProxy(ToolHub("math", [add]))
    client = HubClient(proxy)
    results = await asyncio.gather(*(client.call("add", {"a": i, "b": 1}) for i in range(50)))
    assert [r.output for r in results] == [i + 1 for i in range(50)]
    assert proxy.round_trips == 1  # the first call waits one loop iteration; the other 49 join it
    assert (await client.call("add", {"a": 1})).error.startswith("invalid arguments")


async def test_coalesced_calls_survive_a_cancelled_leader_and_mixed_contexts():
    # round trips of 0.3 s: the cancel below surely lands while a batch is at the "actor", however
    # slowly a loaded machine runs this loop
    proxy = _CountingProxy(ToolHub("math", [add]), delay_s=0.3)
    client = HubClient(proxy)
    # the first call leads the batch; cancelling it must not strand the calls that joined it
    leader = asyncio.ensure_future(client.call("add", {"a": 0, "b": 1}))
    followers = [asyncio.ensure_future(client.call("add", {"a": i, "b": 1})) for i in range(1, 6)]
    await asyncio.sleep(0)  # every task has started: the leader yields, the followers joined it
    leader.cancel()
    assert [r.output for r in await asyncio.gather(*followers)] == [2, 3, 4, 5, 6]
    with pytest.raises(asyncio.CancelledError):
        await leader
    # cancelled later, while its batch is at the actor: the others still get their results
    leader = asyncio.ensure_future(client.call("add", {"a": 0, "b": 1}))
    followers = [asyncio.ensure_future(client.call("add", {"a": i, "b": 1})) for i in range(1, 4)]
    for _ in range(200):  # until the batch is in its round trip
        if proxy.round_trips == 2:
            break
        await asyncio.sleep(0.001)
    assert proxy.round_trips == 2  # one per batch so far
    leader.cancel()
    assert [r.output for r in await asyncio.gather(*followers)] == [2, 3, 4]
    with pytest.raises(asyncio.CancelledError):
        await leader
    # calls for two sessions made together: each session's batch runs under its own context
    results = await asyncio.gather(*(client.call("add", {"a": i, "b": 0}, context=f"s{i % 2}") for i in range(6)))
    assert [r.output for r in results] == list(range(6))


@pytest.mark.ray
async def test_artifacts_survive_the_wire_from_a_hub_actor(ray_cluster, tmp_path):
    from raygent.toolhub.builtin.vision import ImageDrawTextTool

    hub = deploy_hub("vision", [ImageDrawTextTool(ArtifactStore(tmp_path))], num_cpus=0)
    result = await hub.call("image_draw_text", {"text": "hi"})
    art = result.artifacts[0]
    assert type(art).__name__ == "Artifact" and art.kind == "image" and art.metadata["width"] > 0
    assert os.path.isfile(art.uri)
    runtime.kill(hub.proxy)


def test_compiled_validator_agrees_with_jsonschema():
    import jsonschema

    from raygent.toolhub.registry import CompiledValidator

    schema = {"type": "object", "additionalProperties": False, "required": ["n"],
              "properties": {"n": {"type": "integer", "minimum": 0}, "tag": {"enum": ["a", "b"]},
                             "opt": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
    compiled, full = CompiledValidator(schema), jsonschema.Draft202012Validator(schema)
    assert compiled.fast is not None
    cases = [{"n": 1}, {"n": 1.0}, {"n": -1}, {"n": True}, {"n": 1, "tag": "c"}, {"n": 1, "opt": None},
             {"n": 1, "x": 1}, {}, {"n": "1"}]
    for args in cases:  # the fast check may only say yes where jsonschema says yes
        assert not compiled.quick_ok(args) or full.is_valid(args), args
    assert CompiledValidator({"type": "object", "properties": {"p": {"prefixItems": []}}}).fast is None


def test_a_result_built_from_a_row_is_the_validated_result():
    """The fast path behind every hub result must give exactly what pydantic would."""
    def row():
        return {"call_id": "c1", "name": "draw", "arguments": {"x": 1}, "output": {"ok": True}, "error": None,
                "artifacts": [{"uri": "/tmp/a.png", "mime_type": "image/png", "kind": "image"}], "duration_s": 0.5}

    fast, checked = result_from_row(row()), ToolResult.model_validate(row())
    assert fast == checked and fast.model_dump() == checked.model_dump()
    assert fast.model_fields_set == checked.model_fields_set and repr(fast) == repr(checked)
    assert type(fast.artifacts[0]).__name__ == "Artifact" and pickle.loads(pickle.dumps(fast)) == fast
    assert fast.model_copy(update={"error": "x"}).ok is False and fast.ok
    partial = {"call_id": "c2", "name": "t", "arguments": {}, "output": 1, "error": None, "artifacts": []}
    assert result_from_row(partial).duration_s == 0.0  # a row missing a field takes model_construct
