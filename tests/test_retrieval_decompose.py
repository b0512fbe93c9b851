"""Multi-intent query decomposition: clause splitting, the merge rule, and a two-tool request whose
second tool the whole query alone leaves out of the top k (in-process and through a Ray actor)."""

from __future__ import annotations

import pytest

from raygent.retrieval.decompose import merge_rankings, split_intents
from raygent.retrieval.search import SearchIndex
from raygent.retrieval.tool_retriever import ToolRetriever
from raygent.schema import ToolSpec


def _tool(name: str, description: str, **params: str) -> ToolSpec:
    props = {k: {"type": "string", "description": v} for k, v in params.items()}
    return ToolSpec(name=name, description=description, parameters={"type": "object", "properties": props})


CATALOGUE = [
    _tool("convert_currency", "Convert an amount of money from one currency to another at today's rate.",
          amount="amount of money", from_currency="currency code to convert from, e.g. EUR",
          to_currency="currency code to convert to, e.g. USD"),
    _tool("get_exchange_rate", "Get the exchange rate between two currencies.",
          base="base currency code such as EUR", target="target currency code such as USD"),
    _tool("currency_history", "Historical exchange rates of a currency pair over a date range.",
          pair="currency pair like EUR/USD", start="start date", end="end date"),
    _tool("crypto_price", "Current price of a cryptocurrency in a fiat currency such as USD or EUR.",
          coin="coin symbol", currency="fiat currency code"),
    _tool("get_weather", "Current weather conditions for a city.", city="city name, e.g. Paris"),
    _tool("weather_forecast", "Weather forecast for the next days in a city.", city="city name, e.g. Paris",
          days="number of days"),
    _tool("air_quality", "Air quality index and pollution levels in a city.", city="city name"),
    _tool("book_flight", "Book a flight between two airports.", origin="departure airport",
          destination="arrival airport", date="travel date"),
    _tool("translate_text", "Translate text from one language into another.", text="the text",
          target_language="language code"),
    _tool("stock_quote", "Latest stock quote for a ticker symbol.", symbol="ticker symbol"),
]
TWO_TOOLS = "convert 5000 EUR to USD at the current exchange rate, then find the weather in Paris"


def test_split_intents_on_connectors_sentences_and_lines():
    assert split_intents(TWO_TOOLS) == ["convert 5000 EUR to USD at the current exchange rate",
                                        "find the weather in Paris"]
    assert split_intents("Book a flight to Tokyo. After that, translate 'thank you' into Japanese.") == [
        "Book a flight to Tokyo", "translate 'thank you' into Japanese"]
    assert split_intents("Get the stock quote for AAPL\nand the price of bitcoin in USD") == [
        "Get the stock quote for AAPL", "and the price of bitcoin in USD"]
    assert split_intents("Secondly, the area of a circle of radius 3.5 cm; finally compute 3.5 squared") == [
        "the area of a circle of radius 3.5 cm", "compute 3.5 squared"]  # a decimal point is no sentence end
    # one intent, or fragments too short to be requests: nothing to decompose
    assert split_intents("What is the weather in Paris?") == []
    assert split_intents("Find the weather in Paris, then Rome.") == []
    assert split_intents("") == []
    assert split_intents("查询杭州的天气。然后把结果翻译成英文的句子。") == ["查询杭州的天气", "把结果翻译成英文的句子"]


def test_merge_keeps_the_whole_top_hit_then_confident_clause_tops():
    whole = [("a", 1.0), ("b", 0.9), ("c", 0.8), ("d", 0.7)]
    parts = [[("c", 0.95), ("a", 0.5)], [("x", 0.9)], [("noise", 0.3)], [("a", 0.99)], []]
    merged = merge_rankings(whole, parts, min_ratio=0.85)
    # c keeps the whole query's score; x (unranked by the whole query) brings its clause score;
    # "noise" (0.3 < 0.85 * 1.0) is not confident enough; a is not repeated
    assert merged == [("a", 1.0), ("c", 0.8), ("x", 0.9), ("b", 0.9), ("d", 0.7)]
    assert merge_rankings(whole, []) == whole
    assert merge_rankings([], [[("x", 0.2)], [("y", 0.1)], [("x", 0.3)]]) == [("x", 0.2), ("y", 0.1)]


def _text(spec: ToolSpec) -> str:
    from raygent.retrieval.tool_retriever import tool_text

    return tool_text(spec)


@pytest.mark.parametrize("method", ["hybrid", "bm25", "dense"])
async def test_decomposed_search_finds_both_tools_where_the_whole_query_misses_one(method):
    index = SearchIndex()
    await index.add({s.name: _text(s) for s in CATALOGUE})
    whole = [h.key for h in await index.search(TWO_TOOLS, 2, method, decompose=False)]
    split = [h.key for h in await index.search(TWO_TOOLS, 2, method, decompose=True)]
    if method == "hybrid":  # the default method: the whole query's top 2 are both currency tools
        assert whole == ["convert_currency", "get_exchange_rate"]
    assert "get_weather" in split and split[0] == whole[0]
    assert [h.rank for h in await index.search(TWO_TOOLS, 2, method, decompose=True)] == [0, 1]
    # a one-intent query is unaffected
    one = "what is the weather in Paris right now?"
    assert await index.search(one, 3, method, decompose=True) == await index.search(one, 3, method, decompose=False)


async def test_tool_retriever_decomposes_by_default():
    on, off = ToolRetriever(), ToolRetriever(decompose=False)
    for r in (on, off):
        await r.add(CATALOGUE)
    assert [s.name for s in await on.search(TWO_TOOLS, 2)] == ["convert_currency", "get_weather"]
    assert [s.name for s in await off.search(TWO_TOOLS, 2)] == ["convert_currency", "get_exchange_rate"]


@pytest.mark.ray
async def test_decomposition_through_a_ray_actor(ray_cluster):
    from raygent import runtime

    retriever = runtime.deploy(ToolRetriever, remote=True, name="test-decompose-retriever")
    try:
        assert await retriever.sync(CATALOGUE) == {"added": len(CATALOGUE), "removed": 0, "total": len(CATALOGUE)}
        assert [n for n, _ in await retriever.search_scored(TWO_TOOLS, 2)] == ["convert_currency", "get_weather"]
    finally:
        runtime.kill(retriever)


def test_eval_cli_decomposition_flags_and_per_category_recall(tmp_path, capsys):
    import json

    from raygent.cli import main as cli_main

    tools = tmp_path / "t.jsonl"
    tools.write_text("".join(json.dumps({"name": s.name, "description": s.description,
                                         "parameters": s.parameters}) + "\n" for s in CATALOGUE))
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in [
        {"query": TWO_TOOLS, "gold": ["convert_currency", "get_weather"], "category": "multi"},
        {"query": "book a flight from Rome to Oslo", "gold": ["book_flight"], "category": "single"}]))
    base = ["retrieval", "eval", "--tools", str(tools), "--queries", str(queries), "--json", "--k", "2"]
    runs = {}
    for name, extra in {"default": [], "off": ["--no-decompose"],
                        "rrf": ["--fusion", "rrf", "--min-ratio", "0.5"], "alpha": ["--alpha", "0.3"]}.items():
        assert cli_main(base + extra) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    # k=2: decomposition finds both gold tools of the two-intent query, the whole query alone one
    assert runs["default"]["recall@2"] == 1.0 and runs["default"]["recall@5_by_category"] == {"multi": 1.0,
                                                                                             "single": 1.0}
    assert runs["off"]["recall@2"] == pytest.approx(2 / 3, abs=1e-3)
    assert all(r["queries"] == 2 for r in runs.values())
    with pytest.raises(SystemExit):
        cli_main(base + ["--fusion", "max"])
    assert "invalid choice: 'max'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown fusion 'max'.*normalized"):
        SearchIndex(fusion="max")
