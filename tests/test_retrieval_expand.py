"""Tool expansion: example requests written once by a chat model (scripted here), cached, and used as
extra vectors of their tool (raygent/retrieval/expand.py, SearchIndex.set_extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raygent.llm_pool.scripted import ScriptedChatModel, ScriptExhausted
from raygent.retrieval.expand import (ExampleCache, expand_tools, expansion_key, expansion_messages,
                                      load_examples, parse_examples)
from raygent.retrieval.synthetic import synthetic_tools
from raygent.retrieval.tool_retriever import ToolRetriever
from raygent.schema import ToolSpec

FLIGHTS = ToolSpec(name="search_flights", description="Search available flights between two airports on a date.",
                   parameters={"type": "object", "properties": {"origin": {"type": "string"}}})
TRAINS = ToolSpec(name="book_train_ticket", description="Book a seat on a train between two stations.",
                  parameters={"type": "object", "properties": {"route": {"type": "string"}}})


def test_parse_strips_bullets_dedupes_and_drops_name_copies():
    reply = ("Here are some requests:\n"
             "1. any planes from Boston to Denver next Friday?\n"
             "- \"Any planes from Boston to Denver next Friday\"\n"      # duplicate up to case/punctuation
             "2) please search flights to Rome for me\n"                 # copies the name as words
             "call search_flights for Lisbon tomorrow\n"                 # copies the identifier
             "ok\n"                                                      # too short
             "* what can I fly to Lisbon on March 3\n"
             "I'm sorry, but I can't assist with that request.\n"     # a refusal is no request
             "\n"
             "• cheapest way to get to Tokyo by air in May\n")
    assert parse_examples(reply, "search_flights") == [
        "any planes from Boston to Denver next Friday?", "what can I fly to Lisbon on March 3",
        "cheapest way to get to Tokyo by air in May"]
    assert parse_examples(reply, "search_flights", n=1) == ["any planes from Boston to Denver next Friday?"]


def test_prompt_holds_only_the_tool_and_invented_exemplars():
    messages = expansion_messages(FLIGHTS)
    assert "search_flights" in messages[-1].content and "origin" in messages[-1].content
    shown = " ".join(m.content for m in messages[:-1])
    assert "search_flights" not in shown and "reserve_study_room" in shown  # exemplars: invented tools only


async def test_expansion_is_cached_by_schema_and_model(tmp_path):
    path = tmp_path / "examples.json"
    model = ScriptedChatModel(["any planes from Boston to Denver next Friday?\nfly me to Rome in June please",
                               "need a seat on the 8:15 to Leeds tomorrow\ncan I get a rail pass for two"])
    cache = ExampleCache(path, note="test")
    first = await expand_tools([FLIGHTS, TRAINS], model, cache)
    assert first["search_flights"] == ["any planes from Boston to Denver next Friday?", "fly me to Rome in June please"]
    assert len(model.requests) == 2
    again = await expand_tools([FLIGHTS, TRAINS], model, ExampleCache(path))  # reloaded from the file
    assert again == first and len(model.requests) == 2  # no model call the second time
    with pytest.raises(ScriptExhausted):  # a changed tool is a new key: the model is asked again
        await expand_tools([FLIGHTS.model_copy(update={"description": "Find flights."})], model, ExampleCache(path))
    doc = json.loads(path.read_text())
    assert doc["note"] == "test" and doc["models"] == ["scripted"]
    assert expansion_key(FLIGHTS, "scripted") in doc["entries"]
    assert expansion_key(FLIGHTS, "scripted") != expansion_key(FLIGHTS, "other-model")
    assert load_examples(path) == first


def _catalogue() -> list[ToolSpec]:
    return [FLIGHTS, TRAINS] + list(synthetic_tools(60))


async def test_examples_lift_a_tool_on_a_request_only_they_match():
    request = "get me to Leeds before nine tomorrow, two of us"
    plain = ToolRetriever()
    await plain.add(_catalogue())
    before = [n for n, _ in await plain.search_scored(request, 5)]
    assert "book_train_ticket" not in before  # its description shares no word with the request
    examples = {"book_train_ticket": ["need a seat on the 8:15 to Leeds tomorrow", "two tickets to York on Friday"]}
    expanded = ToolRetriever(examples=examples)
    await expanded.add(_catalogue())
    after = [n for n, _ in await expanded.search_scored(request, 5)]
    assert after[0] == "book_train_ticket"


async def test_without_examples_the_ranking_is_unchanged():
    queries = ["find flights from Oslo to Rome", "book a train seat", "what is the weather in Paris",
               "convert 5000 EUR to USD, then find the weather in Paris"]
    plain, none, other = ToolRetriever(), ToolRetriever(examples={}), \
        ToolRetriever(examples={"not_registered": ["a request for a tool that is not in the set"]})
    for r in (plain, none, other):
        await r.add(_catalogue())
    assert len(other.index.extra) == 0
    for q in queries:
        expected = await plain.search_scored(q, 10)
        assert await none.search_scored(q, 10) == expected
        assert await other.search_scored(q, 10) == expected


async def test_index_with_examples_saves_loads_and_follows_changes(tmp_path):
    examples = {"book_train_ticket": ["need a seat on the 8:15 to Leeds tomorrow", "two tickets to York on Friday"]}
    retriever = ToolRetriever(path=tmp_path / "tools", examples=examples)
    await retriever.add(_catalogue())
    request = "get me to Leeds before nine tomorrow, two of us"
    ranked = await retriever.search_scored(request, 5)
    await retriever.save()
    again = ToolRetriever(path=tmp_path / "tools")  # the examples come back with the index
    assert len(again.index.extra) == 1  # their centroid: one extra vector for the tool
    assert await again.search_scored(request, 5) == ranked
    assert await again.add(_catalogue()) == 0  # nothing re-embedded
    assert await again.remove(["book_train_ticket"]) == 1
    assert len(again.index.extra) == 0  # the tool's extra vectors go with it
    assert "book_train_ticket" not in [n for n, _ in await again.search_scored(request, 5)]


async def test_expander_writes_examples_once_at_registration(tmp_path):
    model = ScriptedChatModel(["need a seat on the 8:15 to Leeds tomorrow\ntwo tickets to York on Friday"])
    cache = tmp_path / "examples.json"
    retriever = ToolRetriever(expander=model, examples=cache)
    await retriever.add([TRAINS])
    assert retriever.examples == {"book_train_ticket": ["need a seat on the 8:15 to Leeds tomorrow",
                                                        "two tickets to York on Friday"]}
    assert len(retriever.index.extra) == 1 and len(model.requests) == 1
    assert await retriever.add([TRAINS]) == 0 and len(model.requests) == 1
    fresh = ToolRetriever(expander=model, examples=cache)  # a new retriever reads the cache file
    await fresh.add([TRAINS])
    assert len(model.requests) == 1 and len(fresh.index.extra) == 1


async def test_example_pooling_centroid_or_each_request(tmp_path):
    from raygent.retrieval.tool_retriever import embed_examples

    examples = {"book_train_ticket": ["need a seat on the 8:15 to Leeds tomorrow", "two tickets to York on Friday",
                                      "a return to Bath on Sunday"], "search_flights": []}
    each = ToolRetriever(examples=examples, example_pooling="each")
    centroid = ToolRetriever(examples=examples)
    for r in (each, centroid):
        await r.add(_catalogue())
    assert len(each.index.extra) == 3 and len(centroid.index.extra) == 1
    rows = (await embed_examples(centroid.index.embedder, examples, "each"))["book_train_ticket"]
    mean = (await embed_examples(centroid.index.embedder, examples))["book_train_ticket"]
    assert mean.shape == (1, rows.shape[1]) and abs(float(np.linalg.norm(mean)) - 1) < 1e-5
    assert np.allclose(mean[0], rows.mean(axis=0) / np.linalg.norm(rows.mean(axis=0)), atol=1e-5)
    # the defaults differ by pooling: the consensus vector may outweigh the description, one request may not
    assert centroid.index.extra_weight == 1.5 and each.index.extra_weight == 0.5
    request = "get me to Leeds before nine tomorrow, two of us"
    assert [n for n, _ in await centroid.search_scored(request, 1)] == ["book_train_ticket"]
    with pytest.raises(ValueError, match="unknown example pooling 'sum'"):
        ToolRetriever(examples=examples, example_pooling="sum")
    # an index saved with one vector per request is embedded again when loaded for the centroid
    await each.save(tmp_path / "tools")
    again = ToolRetriever(path=tmp_path / "tools")
    assert await again.add(_catalogue()) == len(_catalogue()) and len(again.index.extra) == 1
    same = ToolRetriever(path=tmp_path / "tools", example_pooling="each")
    assert await same.add(_catalogue()) == 0 and len(same.index.extra) == 3


async def test_expand_command_fills_the_cache_and_eval_uses_it(tmp_path, monkeypatch, capsys):
    import raygent.llm_pool.llama_cpp as llama_cpp
    from raygent.retrieval.evaluate import eval_command
    from raygent.retrieval.expand import expand_command

    tools = tmp_path / "tools.jsonl"
    tools.write_text("\n".join(json.dumps(s.model_dump(include={"name", "description", "parameters"}))
                               for s in (FLIGHTS, TRAINS)))
    replies = ["any planes from Boston to Denver next Friday?\nfly me to Rome in June please",
               "need a seat on the 8:15 to Leeds tomorrow\ntwo tickets to York on Friday"]
    monkeypatch.setattr(llama_cpp, "LlamaCppChatModel",
                        lambda *a, **kw: ScriptedChatModel(replies, model_name="qwen-test"))
    out = tmp_path / "examples.json"
    assert await expand_command(str(tools), str(out)) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == {"tools": 2, "with_examples": 2, "requests": 4, "out": str(out)}
    assert json.loads(out.read_text())["models"] == ["qwen-test"]
    catalogue = tmp_path / "catalogue.jsonl"  # the two tools among 60 others
    catalogue.write_text("\n".join(json.dumps(s.model_dump(include={"name", "description", "parameters"}))
                                   for s in _catalogue()))
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "get me to Leeds before nine tomorrow, two of us",
                                   "gold": ["book_train_ticket"]}))
    assert await eval_command(str(catalogue), str(queries)) == 0
    assert json.loads(capsys.readouterr().out)["recall@5"] == 0.0
    assert await eval_command(str(catalogue), str(queries), examples=str(out)) == 0
    assert json.loads(capsys.readouterr().out)["recall@1"] == 1.0


async def test_dense_score_blends_own_and_best_extra_cosine(tmp_path):
    import numpy as np

    from raygent.retrieval.search import SearchIndex

    index = SearchIndex(extra_weight=1.0)
    dim = index.vectors.dim
    eye = np.eye(dim, dtype=np.float32)
    await index.add({"a": "alpha", "b": "beta", "c": "gamma"}, vectors=eye[:3])
    index.set_extra({"a": np.stack([eye[3], (eye[1] + eye[3]) / np.sqrt(2)])})
    q = ((eye[1] + eye[3]) / np.sqrt(2))[None, :]
    hits = {h.key: h.score for h in index.search_embedded("q", q, 3, "dense")}
    # a: own cosine 0, best example 1.0 -> (0 + 1) / 2; b: no examples, own cosine 0.707 kept as is
    assert hits["a"] == pytest.approx(0.5) and hits["b"] == pytest.approx(1 / np.sqrt(2), rel=1e-5)
    index.extra_mode = "max"
    assert index.search_embedded("q", q, 1, "dense")[0].key == "a"
    index.save(tmp_path / "ix")
    again = SearchIndex.load(tmp_path / "ix", extra_weight=1.0)
    assert len(again.extra) == 2 and {h.key: h.score for h in again.search_embedded("q", q, 3, "dense")} == hits
    index.set_extra({"a": np.zeros((0, dim), dtype=np.float32)})  # replaced by nothing: plain again
    assert len(index.extra) == 0 and index.search_embedded("q", q, 1, "dense")[0].key == "b"


async def test_several_replies_are_merged_and_cached_apart():
    model = ScriptedChatModel(["any planes from Boston to Denver next Friday?\nfly me to Rome in June please",
                               "Fly me to Rome in June, please!\nwhat can I fly to Lisbon on March 3"])
    cache = ExampleCache()
    found = await expand_tools([FLIGHTS], model, cache, samples=2)
    assert found["search_flights"] == ["any planes from Boston to Denver next Friday?", "fly me to Rome in June please",
                                       "what can I fly to Lisbon on March 3"]
    first, second = (r["params"] for r in model.requests)
    assert first.temperature == 0 and second.temperature > 0 and second.seed == 1
    assert cache.get(FLIGHTS, "scripted", samples=2) == found["search_flights"]
    assert cache.get(FLIGHTS, "scripted") is None  # one greedy reply is another entry
