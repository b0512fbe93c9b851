"""BFCL evaluation: the AST checker's rules, loading from a (fake) bfcl-eval wheel, the runner, the CLI.

No network and no real wheel: the loading tests write a small BFCL-format fixture into a zip laid out
like the wheel, so the real loading code runs on it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from raygent.evaluation import bfcl
from raygent.evaluation.ast_checker import check_call, check_case, normalize_string
from raygent.schema import GenerationParams

# -- the checker --------------------------------------------------------------------------------------
AREA = {"name": "geometry.area", "description": "Area of a rectangle.",
        "parameters": {"type": "dict", "properties": {
            "width": {"type": "float", "description": "width"},
            "height": {"type": "integer", "description": "height"},
            "unit": {"type": "string", "description": "unit, default 'm'"},
            "round": {"type": "boolean", "description": "round the result"}},
            "required": ["width", "height"]}}
AREA_GT = [{"geometry.area": {"width": [2.5], "height": [4], "unit": ["m", "meters", ""], "round": [""]}}]


def area_call(**args):
    return [{"name": "geometry.area", "arguments": args}]


def simple(calls, gt=AREA_GT, functions=(AREA,)):
    return check_case("simple_python", list(functions), calls, gt)


def test_right_call_with_reason():
    v = simple(area_call(width=2.5, height=4, unit="m"))
    assert v.valid and v.reason == "ok"


def test_wrong_type():
    v = simple(area_call(width=2.5, height="4"))
    assert not v.valid and v.error_type == "type_error" and "height" in v.reason
    assert not simple(area_call(width=2.5, height=True)).valid  # a bool is not an integer


def test_int_accepted_for_float():
    assert simple(area_call(width=2.5, height=4)).valid
    gt = [{"geometry.area": {"width": [3.0], "height": [4]}}]
    assert simple(area_call(width=3, height=4), gt).valid


def test_missing_required():
    v = simple(area_call(width=2.5))
    assert not v.valid and v.error_type == "missing_required" and "'height'" in v.reason


def test_extra_argument():
    v = simple(area_call(width=2.5, height=4, depth=1))
    assert not v.valid and v.error_type == "unexpected_param" and "depth" in v.reason
    # in the doc but not in the answer: unexpected too (BFCL's rule)
    gt = [{"geometry.area": {"width": [2.5], "height": [4]}}]
    assert simple(area_call(width=2.5, height=4, unit="m"), gt).error_type == "unexpected_param"


def test_wrong_value():
    v = simple(area_call(width=2.5, height=5))
    assert not v.valid and v.error_type == "value_error:others" and "[4]" in v.reason
    assert not simple(area_call(width=2.5, height=4, unit="feet")).valid


def test_optional_parameters():
    assert simple(area_call(width=2.5, height=4)).valid  # unit and round may be left out ("" allowed)
    gt = [{"geometry.area": {"width": [2.5], "height": [4], "unit": ["m"]}}]  # unit needed here
    v = simple(area_call(width=2.5, height=4), gt)
    assert not v.valid and v.error_type == "missing_optional"


def test_string_normalisation():
    assert normalize_string("New York, NY") == normalize_string("new york ny") == "newyorkny"
    assert simple(area_call(width=2.5, height=4, unit="Meters")).valid
    assert simple(area_call(width=2.5, height=4, unit=" M.")).valid
    assert not simple(area_call(width=2.5, height=4, unit="metres")).valid


def test_wrong_function_name():
    v = check_case("simple_python", [AREA], [{"name": "area", "arguments": {"width": 2.5, "height": 4}}], AREA_GT)
    assert not v.valid and v.error_type == "wrong_function"


ORDER = {"name": "order", "parameters": {"type": "dict", "properties": {
    "item": {"type": "string"},
    "options": {"type": "dict", "properties": {"size": {"type": "string"}, "milk": {"type": "string"}}},
    "extras": {"type": "array", "items": {"type": "dict"}},
    "sizes": {"type": "array", "items": {"type": "float"}}}, "required": ["item"]}}


def test_nested_dict():
    gt = [{"order": {"item": ["latte"], "options": [{"size": ["large"], "milk": ["oat", ""]}]}}]
    assert check_case("simple_python", [ORDER], [{"order": {"item": "latte", "options": {"size": "Large"}}}], gt).valid
    wrong = check_case("simple_python", [ORDER], [{"order": {"item": "latte", "options": {"size": "small"}}}], gt)
    assert not wrong.valid and wrong.error_type == "value_error:dict" and "size" in wrong.reason
    extra = check_case("simple_python", [ORDER], [{"order": {"item": "latte", "options": {"size": "large",
                                                                                          "sugar": "no"}}}], gt)
    assert not extra.valid and "sugar" in extra.reason
    missing = check_case("simple_python", [ORDER], [{"order": {"item": "latte", "options": {"milk": "oat"}}}], gt)
    assert not missing.valid and "size" in missing.reason


def test_lists_and_lists_of_dicts():
    gt = [{"order": {"item": ["tea"], "extras": [[{"name": ["honey"]}, {"name": ["lemon"]}]],
                     "sizes": [[1.0, 2.5], ""]}}]
    ok = {"item": "tea", "extras": [{"name": "Honey"}, {"name": "lemon"}], "sizes": [1, 2.5]}
    assert check_case("simple_python", [ORDER], [{"order": ok}], gt).valid
    swapped = {**ok, "extras": [{"name": "lemon"}, {"name": "honey"}]}  # lists of dicts are ordered
    assert not check_case("simple_python", [ORDER], [{"order": swapped}], gt).valid
    assert not check_case("simple_python", [ORDER], [{"order": {**ok, "sizes": [2.5, 1.0]}}], gt).valid
    assert not check_case("simple_python", [ORDER], [{"order": {**ok, "sizes": ["1", "2.5"]}}], gt).valid


SPOTIFY = {"name": "spotify.play", "parameters": {"type": "dict", "properties": {
    "artist": {"type": "string"}, "duration": {"type": "integer"}}, "required": ["artist", "duration"]}}
PAR_GT = [{"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}},
          {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]


def test_parallel_calls_in_another_order():
    calls = [{"spotify.play": {"artist": "Maroon 5", "duration": 15}},
             {"spotify.play": {"artist": "taylor swift", "duration": 20}}]
    assert check_case("parallel", [SPOTIFY], calls, PAR_GT).valid


def test_parallel_one_call_missing_or_duplicated():
    v = check_case("parallel", [SPOTIFY], [{"spotify.play": {"artist": "Maroon 5", "duration": 15}}], PAR_GT)
    assert not v.valid and v.error_type == "wrong_count"
    twice = [{"spotify.play": {"artist": "Maroon 5", "duration": 15}}] * 2  # each expected call needs its own
    v = check_case("parallel", [SPOTIFY], twice, PAR_GT)
    assert not v.valid and v.error_type == "no_match" and "artist" in v.reason


def test_parallel_matching_is_not_greedy():
    gt = [{"spotify.play": {"artist": ["Adele", "Muse"], "duration": [10]}},
          {"spotify.play": {"artist": ["Adele"], "duration": [10]}}]
    calls = [{"spotify.play": {"artist": "Adele", "duration": 10}}, {"spotify.play": {"artist": "Muse", "duration": 10}}]
    assert check_case("parallel", [SPOTIFY], calls, gt).valid  # a greedy first match would pair 1 with "Adele"


def test_multiple_picks_the_expected_function():
    fns = [SPOTIFY, AREA]
    assert check_case("multiple", fns, area_call(width=2.5, height=4), AREA_GT).valid
    v = check_case("multiple", fns, [{"spotify.play": {"artist": "x", "duration": 1}}], AREA_GT)
    assert not v.valid and v.error_type == "wrong_function"


def test_irrelevance():
    assert check_case("irrelevance", [AREA], [], None).valid
    v = check_case("live_irrelevance", [AREA], area_call(width=1, height=1), None)
    assert not v.valid and "geometry.area" in v.reason
    assert check_case("live_relevance", [AREA], area_call(width=1, height=1), None).valid
    assert not check_case("live_relevance", [AREA], [], None).valid


def test_no_call_where_one_was_expected():
    v = simple([])
    assert not v.valid and v.error_type == "no_call"


def test_check_call_accepts_toolcalls():
    from raygent.schema import ToolCall

    assert check_call(AREA, ToolCall(name="geometry.area", arguments={"width": 2.5, "height": 4}), AREA_GT[0]).valid


# -- loading from a fake wheel ------------------------------------------------------------------------
WEATHER = {"name": "get_weather", "description": "Current weather of a city.",
           "parameters": {"type": "dict", "properties": {
               "city": {"type": "string", "description": "city name, e.g. Paris"},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "unit",
                        "default": "celsius"}}, "required": ["city"]}}
ODD = {"name": "odd.types", "description": "Every BFCL type.",
       "parameters": {"type": "dict", "properties": {
           "ratio": {"type": "float", "description": "a float"},
           "point": {"type": "tuple", "items": {"type": "integer"}, "description": "x, y"},
           "anything": {"type": "any", "description": "any value"},
           "config": {"type": "dict", "description": "nested", "properties": {
               "depth": {"type": "integer"}, "scale": {"type": "float", "optional": True}}, "required": ["depth"]},
           "rows": {"type": "array", "items": {"type": "dict", "properties": {"k": {"type": "string"}}}}},
           "required": ["ratio", "ghost"]}}

FIXTURE = {
    "simple_python": (
        [{"id": "simple_python_0", "question": [[{"role": "user", "content": "What is the weather in Paris?"}]],
          "function": [WEATHER]},
         {"id": "simple_python_1", "question": [[{"role": "user", "content": "Weather in Tokyo in fahrenheit?"}]],
          "function": [WEATHER]},
         {"id": "simple_python_2", "question": [[{"role": "user", "content": "odd"}]], "function": [ODD]}],
        [{"id": "simple_python_0", "ground_truth": [{"get_weather": {"city": ["Paris", "Paris, France"],
                                                                      "unit": ["", "celsius"]}}]},
         {"id": "simple_python_1", "ground_truth": [{"get_weather": {"city": ["Tokyo", "Tokyo, Japan"],
                                                                      "unit": ["fahrenheit"]}}]},
         {"id": "simple_python_2", "ground_truth": [{"odd.types": {"ratio": [0.5]}}]}]),
    "parallel": (
        [{"id": "parallel_0", "question": [[{"role": "user", "content": "Weather in Paris and in Rome?"}]],
          "function": [WEATHER]}],
        [{"id": "parallel_0", "ground_truth": [{"get_weather": {"city": ["Paris"], "unit": [""]}},
                                               {"get_weather": {"city": ["Rome"], "unit": [""]}}]}]),
    "irrelevance": (
        [{"id": "irrelevance_0", "question": [[{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Who wrote Hamlet?"}]],
          "function": [WEATHER]}],
        None),
}


def write_fake_wheel(folder: Path) -> Path:
    wheel = folder / "bfcl_eval-2099.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for category, (entries, answers) in FIXTURE.items():
            z.writestr(f"bfcl_eval/data/BFCL_v4_{category}.json", "".join(json.dumps(e) + "\n" for e in entries))
            if answers is not None:
                z.writestr(f"bfcl_eval/data/possible_answer/BFCL_v4_{category}.json",
                           "".join(json.dumps(a) + "\n" for a in answers))
        z.writestr("bfcl_eval/__init__.py", "raise ImportError('never imported')\n")
    return wheel


@pytest.fixture(scope="module")
def fake_wheel(tmp_path_factory) -> Path:
    return write_fake_wheel(tmp_path_factory.mktemp("bfcl"))


@pytest.fixture
def use_fake_wheel(fake_wheel, monkeypatch) -> Path:
    monkeypatch.delenv("RAYGENT_BFCL_WHEEL", raising=False)
    monkeypatch.setenv("RAYGENT_BFCL_CACHE", str(fake_wheel.parent))  # found as the cache's newest wheel
    return fake_wheel


def test_load_cases_and_schema_conversion(use_fake_wheel):
    cases = bfcl.load_cases("simple_python,irrelevance")
    assert [c.id for c in cases] == ["simple_python_0", "simple_python_1", "simple_python_2", "irrelevance_0"]
    first = cases[0]
    assert [(m.role, m.content) for m in first.messages] == [("user", "What is the weather in Paris?")]
    assert first.ground_truth[0]["get_weather"]["city"] == ["Paris", "Paris, France"]
    weather = first.tools[0]
    assert weather.name == "get_weather" and weather.description.startswith("Current weather")
    assert weather.parameters == {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "city name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "unit", "default": "celsius"}}}
    odd = cases[2].tools[0].parameters
    props = odd["properties"]
    assert odd["type"] == "object" and odd["required"] == ["ratio"]  # a required name with no property is dropped
    assert props["ratio"]["type"] == "number"
    assert props["point"] == {"type": "array", "items": {"type": "integer"}, "description": "x, y"}
    assert props["anything"]["type"] == "string"  # BFCL's own mapping of "any"
    assert props["config"]["type"] == "object" and props["config"]["required"] == ["depth"]
    assert props["config"]["properties"]["scale"] == {"type": "number"}  # BFCL's "optional" key dropped
    assert props["rows"]["items"]["type"] == "object"
    assert props["rows"]["items"]["properties"]["k"]["type"] == "string"
    assert cases[3].category == "irrelevance" and cases[3].ground_truth is None
    assert [m.role for m in cases[3].messages] == ["system", "user"]
    from raygent.llm_pool.grammar import tool_call_grammar

    for case in cases:  # every converted schema can constrain the embedded model
        assert "root ::=" in tool_call_grammar(case.tools)


def test_limit_is_a_seeded_sample(use_fake_wheel):
    all_cases = bfcl.load_cases("simple_python")
    one = bfcl.load_cases("simple_python", limit=2, seed=0)
    again = bfcl.load_cases("simple_python", limit=2, seed=0)
    assert [c.id for c in one] == [c.id for c in again] and len(one) == 2
    assert {c.id for c in one} <= {c.id for c in all_cases}
    samples = {tuple(c.id for c in bfcl.select(all_cases, 1, seed)) for seed in range(20)}
    assert len(samples) > 1  # the seed matters
    assert len(bfcl.load_cases("simple_python,parallel", limit=1)) == 2  # per category


def test_missing_wheel_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.delenv("RAYGENT_BFCL_WHEEL", raising=False)
    monkeypatch.setenv("RAYGENT_BFCL_CACHE", str(tmp_path / "empty"))
    with pytest.raises(bfcl.BFCLDataMissing, match=r"pip download bfcl-eval==\S+ --no-deps -d "):
        bfcl.load_cases("simple_python")
    assert not (tmp_path / "empty").exists()  # nothing created, nothing downloaded
    monkeypatch.setenv("RAYGENT_BFCL_WHEEL", str(tmp_path / "nope.whl"))
    with pytest.raises(bfcl.BFCLDataMissing, match="RAYGENT_BFCL_WHEEL"):
        bfcl.wheel_path()


def test_category_names(use_fake_wheel):
    assert bfcl.parse_categories("simple_python, irrelevance") == ["simple_python", "irrelevance"]
    with pytest.raises(ValueError, match="multi-turn"):
        bfcl.parse_categories("multi_turn_base")
    with pytest.raises(ValueError, match="unknown BFCL category"):
        bfcl.parse_categories("simple")
    with pytest.raises(KeyError, match="no BFCL category 'multiple'"):
        bfcl.load_cases("multiple")  # not in the fake wheel


def test_benchmark_dev_set_reads_through_the_library(use_fake_wheel):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bfcl_data", Path(__file__).parents[1] / "benchmarks" / "bfcl_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tools, queries = module.build_dev_set()
    assert {t["name"] for t in tools} == {"get_weather", "odd.types"}
    assert {"query": "Weather in Paris and in Rome?", "gold": ["get_weather"], "category": "parallel"} in queries


# -- the runner with a scripted model -----------------------------------------------------------------
async def test_runner_records_and_summary(use_fake_wheel, tmp_path):
    from raygent.evaluation.runner import format_summary, run_cases, summarize
    from raygent.llm_pool.scripted import ScriptedChatModel

    cases = bfcl.load_cases("simple_python,irrelevance")
    replies = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "paris"}}\n</tool_call>',
               '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>',
               "I cannot do that.",
               '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Elsinore", "unit": "cel']  # cut off
    llm = ScriptedChatModel(replies)
    out = tmp_path / "run.jsonl"
    records = await run_cases(cases, llm=llm, out=out, progress=False)
    assert [r["verdict"] for r in records] == ["correct", "wrong", "wrong", "correct"]
    assert "unit" in records[1]["reason"] and records[2]["error_type"] == "no_call"
    assert "could not be parsed" in records[3]["reason"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [c.id for c in cases]
    assert set(lines[0]) >= {"id", "category", "tools", "output", "calls", "verdict", "reason"}
    assert lines[0]["calls"] == [{"name": "get_weather", "arguments": {"city": "paris"}}]
    assert lines[0]["tools"] == ["get_weather"] and lines[0]["output"].startswith("<tool_call>")
    summary = summarize(records)
    assert summary["categories"]["simple_python"] == {"correct": 1, "total": 3, "model_errors": 0, "accuracy": 0.3333}
    assert summary["overall"]["correct"] == 2 and "irrelevance" in format_summary(summary)
    assert llm.requests[0]["tools"] == ["get_weather"]


async def test_model_errors_are_wrong_answers(use_fake_wheel):
    from raygent.evaluation.runner import run_cases
    from raygent.llm_pool.scripted import ScriptedChatModel

    records = await run_cases(bfcl.load_cases("simple_python", limit=2), llm=ScriptedChatModel([]), progress=False)
    assert all(r["error_type"] == "model_error" and "ScriptExhausted" in r["reason"] for r in records)


def test_progress_without_tqdm(monkeypatch):
    import io
    import sys

    from raygent.evaluation.runner import Progress

    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    out = io.StringIO()
    bar = Progress(2, out=out)
    bar.update({"valid": True})
    bar.update({"valid": False})
    bar.close()
    assert out.getvalue().endswith("\rbfcl: 2/2 cases, 1 correct\n")


def test_cli_parses_eval_bfcl():
    from raygent.cli import build_parser

    args = build_parser().parse_args(["eval", "bfcl", "--category", "simple_python,irrelevance", "--limit", "5",
                                      "--seed", "3", "--model", "embedded-plain", "--workers", "2", "--out", "x.jsonl",
                                      "--json"])
    assert (args.category, args.limit, args.seed, args.model, args.workers, args.out, args.json) == (
        "simple_python,irrelevance", 5, 3, "embedded-plain", 2, "x.jsonl", True)
    assert callable(args.handler)


def test_cli_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from raygent.cli import main

    monkeypatch.delenv("RAYGENT_BFCL_WHEEL", raising=False)
    monkeypatch.setenv("RAYGENT_BFCL_CACHE", str(tmp_path))
    assert main(["eval", "bfcl", "--category", "simple_python"]) == 1
    assert "pip download bfcl-eval==" in capsys.readouterr().err


def test_model_choices():
    from raygent.evaluation.runner import model_choice

    assert model_choice(None).kwargs == {} and model_choice("embedded-plain").kwargs == {"lora": None}
    cfg = model_choice("qwen2.5-coder-0.5b")  # a name from the bundled model config template
    assert cfg.kwargs.get("n_ctx") == 4096 and cfg.params is not None and cfg.params.temperature == 0.0
    with pytest.raises(ValueError, match="unknown model"):
        model_choice("no-such-model")


# -- the embedded model, in-process and on Ray workers ------------------------------------------------
E2E_PARAMS = GenerationParams(max_tokens=96)  # bounds a rambling reply; calls here take ~40 tokens


@pytest.fixture(scope="module")
def e2e_cases(fake_wheel):
    cases = bfcl.load_cases("simple_python,parallel,irrelevance", wheel=fake_wheel)
    return [c for c in cases if c.id != "simple_python_2"]  # 4 cases: 2 simple, 1 parallel, 1 irrelevance


@pytest.fixture(scope="module")
def one_worker_records(e2e_cases, embedded_llm):
    import asyncio

    from raygent.evaluation.runner import run_cases

    return asyncio.run(run_cases(e2e_cases, llm=embedded_llm, params=E2E_PARAMS, progress=False))


@pytest.mark.model
def test_end_to_end_on_the_embedded_model(one_worker_records, e2e_cases):
    assert [r["id"] for r in one_worker_records] == [c.id for c in e2e_cases]
    for r in one_worker_records:
        assert r["verdict"] in ("correct", "wrong") and r["reason"] and r["error_type"] != "model_error"
        assert r["model"].startswith("qwen2.5-coder-0.5b-instruct")
    weather = one_worker_records[0]
    assert weather["calls"] and weather["calls"][0]["name"] == "get_weather"  # the grammar-constrained call
    assert weather["verdict"] == "correct", weather


@pytest.mark.ray
@pytest.mark.model
def test_two_ray_workers_give_the_same_verdicts(ray_cluster, one_worker_records, e2e_cases):
    import asyncio

    from raygent.evaluation.runner import run_cases

    records = asyncio.run(run_cases(e2e_cases, model="embedded", workers=2, params=E2E_PARAMS, progress=False))
    assert [(r["id"], r["verdict"], r["reason"]) for r in records] == [
        (r["id"], r["verdict"], r["reason"]) for r in one_worker_records]
    assert [r["calls"] for r in records] == [r["calls"] for r in one_worker_records]
