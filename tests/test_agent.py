"""The agent loop with a scripted model: steps, events, recovery from bad model output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raygent import Agent, tool
from raygent.llm_pool.base import ChatModel
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.toolhub.builtin import default_tools

CORPUS = Path(__file__).parent / "data" / "malformed_outputs.jsonl"


def call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


async def test_single_step_run_calls_the_tool_and_answers():
    llm = ScriptedChatModel([call("address_parse", address="浙江杭州市江干区九堡镇三村村一区"),
                             "浙江省，杭州市，江干区，九堡镇，三村村"])
    agent = Agent(llm=llm, tools=default_tools())
    result = await agent.run("地址：浙江杭州市江干区九堡镇三村村一区")
    assert result.answer == "浙江省，杭州市，江干区，九堡镇，三村村"
    assert result.steps == 2 and result.stop_reason == "answer"
    [rec] = result.tool_calls
    assert rec.name == "address_parse" and rec.result["district"] == "江干区" and rec.error is None
    # the model saw the tool result on its second step, as a tool message
    second = llm.requests[1]["messages"]
    assert second[-1].role == "tool" and "江干区" in second[-1].content
    assert result.to_json_dict().keys() >= {"answer", "tool_calls", "steps", "usage", "model"}


async def test_multi_step_uses_first_result_in_second_call():
    llm = ScriptedChatModel([call("calculator", expression="17*23"), call("calculator", expression="391*3"),
                             "17*23 = 391, and 391*3 = 1173."])
    result = await Agent(llm=llm, tools=default_tools()).run("Compute 17*23, then multiply by 3")
    assert [c.result["result"] for c in result.tool_calls] == [391, 1173]
    assert result.steps == 3


async def test_multi_turn_keeps_history_until_reset():
    llm = ScriptedChatModel(["Hi Ada.", "Your name is Ada.", "I don't know your name."])
    agent = Agent(llm=llm)
    await agent.run("My name is Ada.")
    await agent.run("What is my name?")
    assert [m.content for m in llm.requests[1]["messages"] if m.role == "user"] == ["My name is Ada.",
                                                                                    "What is my name?"]
    agent.reset()
    await agent.run("What is my name?")
    assert [m.role for m in llm.requests[2]["messages"]] == ["system", "user"]


async def test_stream_yields_events_in_order():
    llm = ScriptedChatModel(["Let me compute." + call("calculator", expression="2+2"), "It is 4."])
    events = [e async for e in Agent(llm=llm, tools=default_tools()).stream("2+2?")]
    assert [e.type for e in events] == ["thought", "tool_call", "tool_result", "answer_delta", "done"]
    assert events[0].text == "Let me compute."
    assert events[2].tool_result.output == {"expression": "2+2", "result": 4}
    assert events[-1].result.answer == "It is 4."


async def test_parallel_calls_in_one_reply_all_run():
    llm = ScriptedChatModel([call("calculator", expression="1+1") + "\n" + call("calculator", expression="2*3"),
                             "2 and 6"])
    result = await Agent(llm=llm, tools=default_tools()).run("two sums")
    assert [c.result["result"] for c in result.tool_calls] == [2, 6]


async def test_unknown_tool_and_bad_arguments_reach_the_model_as_errors():
    llm = ScriptedChatModel([call("teleport", to="moon"), call("calculator", expr="1+1"),
                             call("calculator", expression="1+1"), "2"])
    events = [e async for e in Agent(llm=llm, tools=default_tools()).stream("1+1")]
    errors = [e.text for e in events if e.type == "error"]
    assert errors[0].startswith("tool 'teleport': unknown tool 'teleport'; available tools: address_parse")
    assert "'expression' is a required property" in errors[1]
    assert "ERROR: unknown tool 'teleport'" in llm.requests[1]["messages"][-1].content
    assert events[-1].result.answer == "2"


async def test_truncated_call_is_reported_and_the_model_retries():
    llm = ScriptedChatModel(['<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+', "I cannot."])
    events = [e async for e in Agent(llm=llm, tools=default_tools()).stream("1+1")]
    error = next(e for e in events if e.type == "error")
    assert error.text.startswith("could not read")
    retry_prompt = llm.requests[1]["messages"][-1]
    assert retry_prompt.role == "user" and retry_prompt.content.startswith("Your tool call could not be read")
    assert events[-1].result.stop_reason == "answer"


async def test_step_limit_ends_a_runaway_loop_with_a_clear_event():
    replies = [call("calculator", expression=f"{i}+1") for i in range(10)]
    agent = Agent(llm=ScriptedChatModel(replies), tools=default_tools(), max_steps=3)
    events = [e async for e in agent.stream("loop forever")]
    assert events[-2].type == "error" and events[-2].text.startswith("step limit reached: the model made 3 steps")
    assert events[-1].result.stop_reason == "max_steps" and len(events[-1].result.tool_calls) == 3


async def test_repeated_identical_call_is_not_rerun_and_forces_an_answer():
    runs = []

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        runs.append(key)
        return key.upper()

    llm = ScriptedChatModel([call("lookup", key="a"), call("lookup", key="a"), "A"])
    result = await Agent(llm=llm, tools=[lookup]).run("look up a")
    assert runs == ["a"] and result.answer == "A"
    assert llm.requests[2]["params"].tool_choice == "none"


async def test_a_failing_model_ends_the_run_with_an_error_not_an_exception():
    class Dead(ChatModel):
        model_name = "dead"

        async def chat(self, messages, tools=None, params=None):
            raise ConnectionError("replica is gone")

    events = [e async for e in Agent(llm=Dead()).stream("hello")]
    assert events[0].type == "error" and events[0].text == "model call failed: ConnectionError: replica is gone"
    assert events[-1].result.stop_reason == "error"


def test_sync_wrappers():
    agent = Agent(llm=ScriptedChatModel(["hello"]))
    assert agent.run_sync("hi").answer == "hello"
    agent2 = Agent(llm=ScriptedChatModel(["a", "b"]))
    assert [e.type for e in agent2.stream_sync("hi")] == ["answer_delta", "done"]


@pytest.mark.parametrize("fmt", ["hermes", "msagent", "react"])
async def test_malformed_corpus_never_escapes_the_agent_loop(fmt):
    lines = [json.loads(x) for x in CORPUS.read_text(encoding="utf-8").splitlines() if x.strip()]
    texts = [x["text"] for x in lines]
    assert len(texts) >= 40
    for text in texts:
        llm = ScriptedChatModel([text, text, "done"], format=fmt)
        events = [e async for e in Agent(llm=llm, tools=default_tools(), max_steps=3).stream("go")]
        assert events[-1].type == "done", text
        assert events[-1].result.stop_reason in ("answer", "max_steps"), text


class _RemoteLikeRegistry:
    """A registry seen from afar: no `specs_version`, every `list_specs` counted (as an actor's would cost a
    round trip)."""

    def __init__(self, tools):
        from raygent.toolhub.registry import ToolRegistry

        self.inner = ToolRegistry(tools)
        self.listed = 0

    async def list_specs(self):
        self.listed += 1
        return await self.inner.list_specs()

    async def call_many(self, calls):
        return await self.inner.call_many(calls)


async def test_tool_specs_are_cached_between_turns_and_refreshed_when_they_change():
    @tool
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    # in-process registry: cached exactly while its specs_version holds, so a new tool shows at once
    llm = ScriptedChatModel(["a", "b", call("shout", text="hi"), "HI"])
    agent = Agent(llm=llm, tools=default_tools())
    await agent.run("one")
    await agent.run("two")
    assert "shout" not in llm.requests[1]["tools"]
    agent.tools.register(shout)
    result = await agent.run("three")
    assert "shout" in llm.requests[2]["tools"] and result.tool_calls[0].result == "HI"

    # a remote registry: fetched once per `tool_specs_ttl_s`, again after refresh_tools() or an unknown tool
    remote = _RemoteLikeRegistry(default_tools())
    agent = Agent(llm=ScriptedChatModel(["a", "b", "c", call("calculator", expression="1+1"), "2", "d"]),
                  tools=remote, tool_specs_ttl_s=60)
    await agent.run("one")
    await agent.run("two")
    assert remote.listed == 1
    agent.refresh_tools()
    await agent.run("three")
    assert remote.listed == 2
    remote.inner.unregister("calculator")  # gone on the far side; the agent still offers it
    result = await agent.run("four")
    assert "unknown tool 'calculator'" in result.tool_calls[0].error  # the model and the user see why
    await agent.run("five")
    assert remote.listed == 3  # the unknown-tool error dropped the cache
    zero = _RemoteLikeRegistry(default_tools())
    agent = Agent(llm=ScriptedChatModel(["a", "b"]), tools=zero, tool_specs_ttl_s=0)
    await agent.run("one")
    await agent.run("two")
    assert zero.listed == 2
