"""ToolRetriever: incremental indexing of registered tools, persistence, Ray actor placement, and an agent
with 2,000 registered tools that still calls the right one (only the top-k specs reach the prompt)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raygent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.retrieval.synthetic import synthetic_tools
from raygent.retrieval.tool_retriever import ToolRetriever, tool_text
from raygent.schema import ToolSpec
from raygent.toolhub.base import Tool
from raygent.toolhub.builtin import default_tools
from raygent.toolhub.registry import ToolRegistry


class CatalogueTool(Tool):
    """A registered tool built from a spec; echoes its arguments (the distractors of the big catalogue)."""

    def __init__(self, spec: ToolSpec):
        self.name, self.description, self.parameters = spec.name, spec.description, spec.parameters

    async def call(self, **arguments: Any) -> Any:
        return {"tool": self.name, "arguments": arguments}


def call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


@pytest.fixture(scope="module")
def big_registry() -> ToolRegistry:
    tools: list[Tool] = [CatalogueTool(s) for s in synthetic_tools(1997)]
    return ToolRegistry(tools + default_tools())


def test_tool_text_has_name_description_parameters_and_examples():
    spec = next(t.spec for t in default_tools() if t.name == "address_parse")
    text = tool_text(spec)
    assert text.startswith("address_parse (address parse)\n识别中文地址")
    assert "parameters: address: the address text" in text and "examples: 把这个地址拆成省市区" in text
    # digit-only name segments are ids/versions: they must not match numbers in a request
    assert tool_text(ToolSpec(name="Weather_1_GetWeather")) == "Weather_GetWeather (Weather GetWeather)"


async def test_sync_is_incremental_and_persists(tmp_path):
    retriever = ToolRetriever(path=tmp_path / "tools")
    specs = list(synthetic_tools(50)) + [t.spec for t in default_tools()]
    assert await retriever.sync(specs) == {"added": 53, "removed": 0, "total": 53}
    assert await retriever.sync(specs) == {"added": 0, "removed": 0, "total": 53}  # nothing re-embedded
    changed = specs[0].model_copy(update={"description": "Send a birthday card to a friend by post."})
    assert await retriever.sync([changed] + specs[2:]) == {"added": 1, "removed": 1, "total": 52}
    assert [s.name for s in await retriever.search("mail a birthday card to my friend", 1)] == [changed.name]
    await retriever.save()
    again = ToolRetriever(path=tmp_path / "tools")
    assert await again.count() == 52
    assert (await again.search("what is 12*(3+4)? calculate it", 1))[0].name == "calculator"
    assert await again.sync([changed] + specs[2:]) == {"added": 0, "removed": 0, "total": 52}


async def test_agent_with_2000_tools_offers_top_k_and_calls_the_right_one(big_registry):
    assert len(big_registry) == 2000
    llm = ScriptedChatModel([call("calculator", expression="17*23"), "17*23 = 391."])
    agent = Agent(llm=llm, tools=big_registry, retriever=ToolRetriever(), tool_top_k=5, retrieval_threshold=32)
    result = await agent.run("Please calculate 17*23 for me")
    offered = llm.requests[0]["tools"]
    assert len(offered) == 5 and "calculator" in offered
    assert result.tool_calls[0].name == "calculator" and result.tool_calls[0].result["result"] == 391
    assert result.answer == "17*23 = 391."

    llm.replies += [call("address_parse", address="浙江杭州市江干区九堡镇三村村一区"), "浙江省杭州市江干区"]
    result = await agent.run("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区")
    assert "address_parse" in llm.requests[2]["tools"] and len(llm.requests[2]["tools"]) == 5
    assert result.tool_calls[0].result["district"] == "江干区"

    # a catalogue tool is found by what it does, among its near-duplicates
    llm.replies += [call("cancel_hotel_reservation_103", id="H-77"), "cancelled"]
    await agent.run("cancel my hotel reservation H-77 please")
    assert "cancel_hotel_reservation_103" in llm.requests[4]["tools"]


async def test_few_tools_all_reach_the_prompt():
    llm = ScriptedChatModel(["hello"])
    retriever = ToolRetriever()
    await Agent(llm=llm, tools=default_tools(), retriever=retriever, retrieval_threshold=16).run("hi")
    assert sorted(llm.requests[0]["tools"]) == ["address_parse", "calculator", "current_datetime"]
    assert await retriever.count() == 0  # below the threshold the retriever is not even asked


async def test_dropped_tools_leave_the_index():
    registry = ToolRegistry([CatalogueTool(s) for s in synthetic_tools(40)] + default_tools())
    retriever = ToolRetriever()
    llm = ScriptedChatModel(["a", "b"])
    agent = Agent(llm=llm, tools=registry, retriever=retriever, tool_top_k=3, retrieval_threshold=10)
    await agent.run("what is 2+2, calculate")
    assert "calculator" in llm.requests[0]["tools"]
    registry.unregister("calculator")
    await agent.run("what is 2+2, calculate")
    assert "calculator" not in llm.requests[1]["tools"] and await retriever.count() == 42


@pytest.mark.ray
async def test_retriever_as_ray_actor(ray_cluster, big_registry):
    from raygent import runtime

    retriever = runtime.deploy(ToolRetriever, remote=True, name="test-tool-retriever")
    try:
        assert (await retriever.sync(await big_registry.list_specs()))["total"] == 2000
        found = await retriever.search("what's the time in Asia/Shanghai right now", 5)
        assert isinstance(found[0], ToolSpec) and "current_datetime" in [s.name for s in found]
        llm = ScriptedChatModel([call("current_datetime", timezone="Asia/Shanghai"), "It is now ..."])
        agent = Agent(llm=llm, tools=big_registry, retriever=retriever, tool_top_k=5)
        result = await agent.run("What time is it now in Asia/Shanghai?")
        assert "current_datetime" in llm.requests[0]["tools"] and len(llm.requests[0]["tools"]) == 5
        assert result.tool_calls[0].error is None and "weekday" in result.tool_calls[0].result
    finally:
        runtime.kill(retriever)


@pytest.mark.model
async def test_embedded_model_picks_the_tool_among_2000(embedded_llm, big_registry):
    agent = Agent(llm=embedded_llm, tools=big_registry, retriever=ToolRetriever(), tool_top_k=5)
    result = await agent.run("Please calculate 17*23 for me.")
    assert result.tool_calls and result.tool_calls[0].name == "calculator"
    assert result.tool_calls[0].result["result"] == 391


async def test_retriever_true_builds_the_default_and_index_registry():
    registry = ToolRegistry([CatalogueTool(s) for s in synthetic_tools(30)] + default_tools())
    llm = ScriptedChatModel(["ok"])
    agent = Agent(llm=llm, tools=registry, retriever=True, tool_top_k=4)
    await agent.run("what time is it in Tokyo now?")
    assert isinstance(agent.retriever, ToolRetriever) and len(llm.requests[0]["tools"]) == 4
    assert "current_datetime" in llm.requests[0]["tools"]
    fresh = ToolRetriever()
    assert await fresh.index_registry(registry) == {"added": 33, "removed": 0, "total": 33}


async def test_tool_vectors_mix_the_full_text_and_the_summary():
    import numpy as np

    from raygent.retrieval.embedders import Embedder, get_embedder, normalize_rows
    from raygent.retrieval.tool_retriever import embed_tools, tool_summary

    spec = ToolSpec(name="search_flights", description="Search available flights between two airports.",
                    parameters={"type": "object", "properties": {
                        "origin": {"type": "string", "description": "departure airport"}}})
    assert tool_summary(spec) == "search flights. Search available flights between two airports."
    emb = get_embedder()
    full, summary = await emb.embed([tool_text(spec), tool_summary(spec)])
    vec = (await embed_tools(emb, [spec]))[0]
    assert np.allclose(vec, normalize_rows(full + summary)[0], atol=1e-5)
    assert np.allclose((await embed_tools(emb, [spec], summary_weight=0))[0], full, atol=1e-5)
    assert (await embed_tools(emb, [])).shape == (0, emb.dim)

    # by default: summary vectors off for wordllama, on for contextual embedders such as MiniLM; the
    # lexical gate for both (tool_index_defaults)
    plain = ToolRetriever(emb)
    assert (plain.summary_weight, plain.index.lexical_gate) == (0.0, 3.0)

    class Contextual(Embedder):
        name, dim = "st:some-model", 8

        def _embed_sync(self, texts):
            return np.ones((len(texts), self.dim), dtype=np.float32)

    contextual = ToolRetriever(Contextual())
    assert (contextual.summary_weight, contextual.index.lexical_gate) == (1.0, 3.0)
    retriever = ToolRetriever(emb, summary_weight=1.0, lexical_gate=2)  # indexes the mixed vectors
    assert retriever.index.lexical_gate == 2
    await retriever.add([spec, ToolSpec(name="get_weather", description="Current weather for a city.")])
    query = "flights from Boston to Denver next Friday"
    qvec = (await emb.embed([query]))[0]
    scores = dict(await retriever.search_scored(query, 2, method="dense"))
    assert scores["search_flights"] == pytest.approx(float(qvec @ vec), abs=1e-4)
    assert ToolRetriever(emb, lexical_gate=0.0).index.lexical_gate == 0.0


async def test_a_saved_index_made_with_another_summary_weight_embeds_its_tools_again(tmp_path):
    import numpy as np

    from raygent.retrieval.embedders import get_embedder
    from raygent.retrieval.tool_retriever import embed_tools

    emb = get_embedder()
    spec = ToolSpec(name="search_flights", description="Search available flights between two airports.")
    first = ToolRetriever(emb, path=tmp_path / "idx", summary_weight=0.0)
    await first.add([spec])
    await first.save()
    same = ToolRetriever(emb, path=tmp_path / "idx", summary_weight=0.0)
    assert await same.add([spec]) == 0  # nothing changed: nothing embedded again
    other = ToolRetriever(emb, path=tmp_path / "idx", summary_weight=1.0)
    assert await other.add([spec]) == 1  # the saved vectors were made without the summary
    query = "any planes to Denver?"
    qvec = (await emb.embed([query]))[0]
    score = dict(await other.search_scored(query, 1, method="dense"))["search_flights"]
    assert score == pytest.approx(float(qvec @ (await embed_tools(emb, [spec], 1.0))[0]), abs=1e-4)
    assert not np.isclose(score, float(qvec @ (await embed_tools(emb, [spec], 0.0))[0]), atol=1e-4)
