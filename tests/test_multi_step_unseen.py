"""The unseen-tools multi-step dev set (benchmarks/multi_step_unseen.py) is well-formed; no model runs.

Every expected tool exists and runs through a ToolRegistry (schema checks included) on the expected
arguments; each linked argument of a later call resolves to a field of the earlier call's real result,
and that value is not written in the request (the model has to read it from the result); no tool is
named like a raygent built-in, a tool of the adapter's training data or a BFCL function; the scoring
tells a real chain from a stopped, invented or wrong-tool run.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from raygent.toolhub.registry import ToolRegistry

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "multi_step_unseen.py"
_spec = importlib.util.spec_from_file_location("multi_step_unseen", _PATH)
dev = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = dev  # dataclasses look their module up there
_spec.loader.exec_module(dev)

#: generic names BFCL and similar function-calling sets use (always checked, wheel or not)
BFCL_LIKE = {"send_email", "convert_currency", "get_weather", "get_current_weather", "get_weather_forecast",
             "find_flights", "book_flight", "get_flight_status", "get_stock_price", "get_stock_info",
             "get_customer_info", "get_order_details", "check_order_status", "get_product_info", "track_order",
             "schedule_meeting_with", "calculate", "calculator", "search", "lookup", "get_employee_info"}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", name.lower())


def test_shape():
    assert len(dev.TWO_STEP) >= 18 and all(len(c.steps) == 2 for c in dev.TWO_STEP)
    assert len(dev.THREE_STEP) >= 8 and all(len(c.steps) == 3 for c in dev.THREE_STEP)
    assert len(set(dev.TOOL_NAMES)) == len(dev.TOOL_NAMES) >= 12
    requests = [c.request for c in dev.CASES]
    assert len(set(requests)) == len(requests)
    for case in dev.CASES:
        assert set(case.tools) <= set(dev.TOOL_NAMES), case.request
        first_args = case.steps[0][1]
        assert first_args and not any(isinstance(v, dev.Ref) for v in first_args.values())
        for i, (_, arguments) in enumerate(case.steps[1:], start=1):
            refs = [v for v in arguments.values() if isinstance(v, dev.Ref)]
            assert refs, f"step {i + 1} of {case.request!r} uses no earlier result"
            assert all(0 <= r.step < i for r in refs)


@pytest.mark.parametrize("index", range(len(dev.CASES)))
async def test_case_runs_and_links_come_from_results(index):
    case = dev.CASES[index]
    offered = dev.offered_tools(case, index)
    assert set(case.tools) <= set(offered) and len(offered) == len(set(offered)) == dev.OFFERED
    registry = ToolRegistry(dev.make_tools(offered))
    results: list[dict] = []
    calls = []
    for name, arguments in case.steps:
        args = {}
        for arg, value in arguments.items():
            if isinstance(value, dev.Ref):
                assert value.field in results[value.step], f"{name}.{arg}: no field {value.field!r}"
                value = results[value.step][value.field]
                assert value not in (None, "")
                # the value must be read from the result, not copied from the request
                assert str(value).lower() not in case.request.lower(), f"{value!r} is in {case.request!r}"
            args[arg] = value
        args.update({"subject": "test"} if name == "mail_message" else
                    {"topic": "test"} if name == "schedule_meeting" else {})
        result = await registry.call(name, args)
        assert result.error is None, f"{name}({args}) failed: {result.error}"
        assert isinstance(result.output, dict) and json.dumps(result.output)
        results.append(result.output)
        calls.append(SimpleNamespace(name=name, arguments=args, result=result.output))
    assert dev.score(case, calls).chained
    # literal first-call values come from the request (a user wrote them)
    for value in case.steps[0][1].values():
        assert str(value).lower() in case.request.lower()


def test_tool_specs_do_not_give_away_values():
    """No value the model must carry between calls appears in any tool's description or schema (a model
    copying a schema's example would otherwise be scored as chaining)."""
    specs = json.dumps([t.spec.model_dump() for t in dev.make_tools()]).lower()
    for case in dev.CASES:
        results = dev.expected_results(case)
        for _, arguments in case.steps[1:]:
            for ref in arguments.values():
                if isinstance(ref, dev.Ref):
                    value = str(results[ref.step][ref.field]).lower()
                    assert value not in specs, f"{value!r} ({case.request!r}) is written in a tool spec"


def test_unknown_values_fail_cleanly():
    async def go():
        registry = ToolRegistry(dev.make_tools())
        bad = await registry.call("lookup_order", {"order_id": "Z-0000"})
        assert bad.error and "Z-0000" in bad.error
        assert (await registry.call("mail_message", {"to": "Maria", "subject": "x"})).error

    import asyncio

    asyncio.run(go())


def test_no_name_collisions():
    from raygent.toolhub.builtin import BUILTIN_TOOLS
    from raygent.training.chains import BUILTIN_GROUP, EXTRA_TOOLS

    taken = {_norm(n) for n in [*BUILTIN_TOOLS, *BUILTIN_GROUP, *EXTRA_TOOLS, *BFCL_LIKE]}
    assert not {_norm(n) for n in dev.TOOL_NAMES} & taken


def test_no_bfcl_function_names():
    """Against every function name in the bfcl-eval wheel's data, when the wheel is on this machine."""
    from raygent.evaluation.bfcl import BFCLDataMissing, wheel_path

    try:
        wheel = wheel_path()
    except BFCLDataMissing:
        pytest.skip("the bfcl-eval wheel is not on this machine")
    names: set[str] = set()
    pattern = re.compile(r'"name":\s*"([^"]+)"')
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if member.startswith("bfcl_eval/data/") and member.endswith(".json") and "possible_answer" not in member:
                names.update(pattern.findall(z.read(member).decode("utf-8", "replace")))
    assert len(names) > 500
    bfcl = {_norm(n) for n in names} | {_norm(n.rsplit(".", 1)[-1]) for n in names}
    assert not {_norm(n) for n in dev.TOOL_NAMES} & bfcl


def test_scoring():
    case = dev.THREE_STEP[0]  # lookup_order -> customer_profile -> city_forecast
    good = dev.expected_results(case)

    def call(name, result=None, **arguments):
        return SimpleNamespace(name=name, arguments=arguments, result=result)

    order, customer = good[0], good[1]
    chain = [call("lookup_order", order, order_id="A-2077"),
             call("customer_profile", customer, customer_id=order["customer_id"]),
             call("city_forecast", good[2], city=customer["city"])]
    s = dev.score(case, chain)
    assert (s.first_call, s.sequence, s.chained, s.verdict) == (True, True, True, "chained")
    invented = chain[:2] + [call("city_forecast", None, city="London")]
    s = dev.score(case, invented)
    assert s.sequence and not s.chained and s.links == ["ok", "invented"]
    other = chain[:2] + [call("city_forecast", None, city=customer["tier"])]
    assert dev.score(case, other).links == ["ok", "other field"]
    two = dev.TWO_STEP[0]  # lookup_order(A-1042) -> customer_profile
    copied = [call("lookup_order", dev.expected_results(two)[0], order_id="A-1042"),
              call("customer_profile", None, customer_id="A-1042")]  # the order id where the customer id goes
    assert dev.score(two, copied).links == ["from request"]
    s = dev.score(case, chain[:1])
    assert s.first_call and not s.sequence and s.verdict == "stopped after 1"
    s = dev.score(case, [call("customer_profile", None, customer_id="A-2077")])
    assert not s.first_call and s.verdict.startswith("wrong tool at step 1")
    assert dev.score(case, []).verdict == "no call"
    assert not dev.score(case, [call("lookup_order", order, order_id="A-2078")]).first_call
    assert dev.same_value("142.30", 142.3) and dev.same_value(" Oslo", "oslo") and not dev.same_value("E-20", "E-020")
