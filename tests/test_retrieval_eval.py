"""`raygent retrieval eval`: metrics on JSONL files (each gold tool counted), progress on stderr, bad input."""

from __future__ import annotations

import json

import pytest

from raygent.cli import main as cli_main
from raygent.retrieval.evaluate import EvalQuery, evaluate, load_tools
from raygent.retrieval.synthetic import synthetic_query, synthetic_tools

TOOLS = [
    {"name": "get_weather", "description": "Current weather and forecast for a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "city name"}}}},
    {"name": "book_flight", "description": "Book a flight between two airports.", "parameters": {}},
    {"name": "triangle_area", "description": "Area of a triangle from base and height."},
    {"name": "stock_price", "description": "Latest stock price for a ticker symbol.", "parameters": None},
    {"name": "translate", "description": "Translate text into another language."},
    {"name": "address_parse", "description": "识别中文地址中的省、市、区。"},
]
QUERIES = [
    {"query": "Is it going to rain in Paris tomorrow?", "gold": ["get_weather"]},
    {"query": "Book me a flight from SFO to JFK", "gold": ["book_flight"]},
    {"query": "triangle with base 3 and height 4: area?", "gold": ["triangle_area"]},
    {"query": "translate 'hello' into French and book a flight to Paris", "gold": ["translate", "book_flight"]},
    {"query": "这个地址属于哪个省市区：浙江杭州市江干区", "gold": ["address_parse"]},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("method", ["bm25", "tfidf", "dense", "hybrid"])
def test_eval_cli_prints_the_metrics(method, tmp_path, capsys):
    tools, queries = _write(tmp_path / "t.jsonl", TOOLS), _write(tmp_path / "q.jsonl", QUERIES)
    assert cli_main(["retrieval", "eval", "--tools", tools, "--queries", queries, "--method", method,
                     "--k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["recall@1", "recall@5", "mrr", "queries", "tools", "seconds"]
    assert out["queries"] == 5 and out["tools"] == 6
    # six tools: dense ranks all of them, so every gold tool is in its top 5; lexical methods rank only
    # tools sharing a word with the query ("rain" is not "weather")
    assert out["recall@5"] == 1.0 if method in ("dense", "hybrid") else out["recall@5"] >= 0.8
    # a query with two gold tools counts twice: 6 trials, so recall@1 is a multiple of 1/6
    assert round(out["recall@1"] * 6, 3) == round(out["recall@1"] * 6)
    assert 0.5 <= out["mrr"] <= 1.0


async def test_metrics_count_each_gold_tool_and_mrr():
    tools = load_tools_from(TOOLS)
    q = [EvalQuery(query="translate 'hello' into French and book a flight to Paris", gold=["translate", "book_flight"]),
         EvalQuery(query="zzz qqq", gold=["stock_price"])]
    out = await evaluate(tools, q, method="bm25", k=3, progress=False)
    # query 1: top-1 holds one of its two gold tools -> 1 of 2; query 2 matches nothing lexically -> 0
    assert out["recall@1"] == pytest.approx(1 / 3, abs=1e-3) and out["recall@3"] == pytest.approx(2 / 3, abs=1e-3)
    assert out["mrr"] == pytest.approx(0.5)


def load_tools_from(rows):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return load_tools(_write(Path(d) / "t.jsonl", rows))


def test_progress_bar_on_stderr_for_large_sets(tmp_path, capsys):
    tools = [{"name": s.name, "description": s.description, "parameters": s.parameters}
             for s in synthetic_tools(400)]
    queries = [{"query": synthetic_query(i), "gold": [f"{s.name}"]} for i, s in enumerate(synthetic_tools(250))]
    assert cli_main(["retrieval", "eval", "--tools", _write(tmp_path / "t.jsonl", tools), "--queries",
                     _write(tmp_path / "q.jsonl", queries), "--method", "bm25", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["queries"] == 250
    assert "indexing tools" in captured.err and "bm25 queries" in captured.err and "250/250" in captured.err


def test_bad_input_says_which_line(tmp_path, capsys):
    tools = _write(tmp_path / "t.jsonl", TOOLS)
    (tmp_path / "q.jsonl").write_text('{"query": "x", "gold": ["a"]}\n{"query": "y"}\n')
    assert cli_main(["retrieval", "eval", "--tools", tools, "--queries", str(tmp_path / "q.jsonl")]) == 1
    assert "q.jsonl:2: not a valid query line (gold: Field required)" in capsys.readouterr().err
    assert cli_main(["retrieval", "eval", "--tools", str(tmp_path / "missing.jsonl"), "--queries", tools]) == 1
    assert "tool file not found" in capsys.readouterr().err


def test_unseen_style_dev_set_is_well_formed():
    """benchmarks/data/unseen_*.jsonl: 200 tools, 10 requests each, tools split 30 % dev / 70 % test."""
    from pathlib import Path

    from raygent.retrieval.evaluate import load_queries

    data = Path(__file__).resolve().parent.parent / "benchmarks" / "data"
    tools = [json.loads(line) for line in (data / "unseen_tools.jsonl").read_text().splitlines()]
    assert len(tools) == 200 == len({t["name"] for t in tools}) == len(load_tools(data / "unseen_tools.jsonl"))
    split = {t["name"]: t["split"] for t in tools}
    queries = load_queries(data / "unseen_queries.jsonl")
    assert len(queries) == 2000 and len({q.query.lower() for q in queries}) == 2000
    assert all(len(q.gold) == 1 and q.category == split[q.gold[0]] for q in queries)
    assert sum(s == "dev" for s in split.values()) == 60
