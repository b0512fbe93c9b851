"""Tool layer: schemas from functions, seed-style parameters, validation, timeouts, errors."""

from __future__ import annotations

import asyncio

import pytest

from raygent import Tool, ToolRegistry, tool
from raygent.schema import ToolCall
from raygent.toolhub.base import seed_parameters_to_schema
from raygent.toolhub.builtin import calculate, default_tools, parse_address
from raygent.toolhub.builtin.calculator import CalculatorError


@tool
def convert(amount: float, currency: str = "EUR", round_to: int | None = None) -> dict:
    """Convert an amount of US dollars.

    Args:
        amount: how many dollars
        currency: target currency code
        round_to: decimals to keep
    """
    return {"amount": amount * 0.9, "currency": currency}


def test_tool_decorator_derives_schema_from_signature_and_docstring():
    spec = convert.spec
    assert spec.name == "convert"
    assert spec.description == "Convert an amount of US dollars."
    props = spec.parameters["properties"]
    assert props["amount"] == {"type": "number", "description": "how many dollars"}
    assert props["currency"]["default"] == "EUR" and props["currency"]["type"] == "string"
    assert spec.parameters["required"] == ["amount"]


def test_seed_parameter_list_becomes_json_schema():
    schema = seed_parameters_to_schema([
        {"name": "text", "description": "text to speak", "required": True},
        {"name": "gender", "description": "man or woman", "required": False},
    ])
    assert schema == {"type": "object", "properties": {"text": {"type": "string", "description": "text to speak"},
                                                       "gender": {"type": "string", "description": "man or woman"}},
                      "required": ["text"]}

    class Speech(Tool):
        name = "speech"
        description = "tts"
        parameters = [{"name": "text", "description": "t", "required": True}]

    assert Speech().spec.parameters["required"] == ["text"]


async def test_registry_reports_every_failure_as_a_result():
    class Slow(Tool):
        name = "slow"
        timeout_s = 0.2

        async def call(self) -> str:
            await asyncio.sleep(5)
            return "never"

    class Broken(Tool):
        name = "broken"

        async def call(self) -> str:
            raise RuntimeError("disk on fire")

    reg = ToolRegistry([convert, Slow(), Broken()])
    ok = await reg.call("convert", {"amount": 10})
    assert ok.ok and ok.output == {"amount": 9.0, "currency": "EUR"}
    unknown = await reg.call("teleport", {})
    assert unknown.error == "unknown tool 'teleport'; available tools: broken, convert, slow"
    bad = await reg.call("convert", {"amount": "ten"})
    assert "'amount': 'ten' is not of type 'number'" in bad.error
    extra = await reg.call("convert", {"amount": 1, "colour": "red"})
    assert "Additional properties are not allowed" in extra.error
    missing = await reg.call("convert", {})
    assert "'amount' is a required property" in missing.error
    slow = await reg.call("slow", {})
    assert slow.error == "tool 'slow' timed out after 0.2 s"
    broken = await reg.call("broken", {})
    assert broken.error == "tool 'broken' failed: RuntimeError: disk on fire"
    assert broken.content_for_model().startswith("ERROR: ")


async def test_independent_calls_run_concurrently():
    # each call waits until both have started: run one after the other, they would time out
    started: list[str] = []
    both = asyncio.Event()

    @tool(timeout_s=5)
    async def rendezvous(who: str) -> str:
        started.append(who)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), timeout=2)
        return who

    reg = ToolRegistry([rendezvous])
    results = await reg.call_many([ToolCall(name="rendezvous", arguments={"who": "a"}),
                                   ToolCall(name="rendezvous", arguments={"who": "b"})])
    assert [r.output for r in results] == ["a", "b"]
    assert all(r.ok for r in results)


def test_duplicate_registration_is_refused():
    reg = ToolRegistry([convert])
    with pytest.raises(ValueError, match="already registered"):
        reg.register(convert)


@pytest.mark.parametrize("expr,value", [("23*47+12", 1093), ("(12+8)/5", 4), ("2**10", 1024), ("7/2", 3.5),
                                        ("3.5 × 4 − 2", 12), ("sqrt(16)+pi*0", 4), ("10 % 3", 1)])
def test_calculator_is_exact(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os').system('true')", "open('/etc/passwd')", "9**9**9", "1/0",
                                  "a+b", "x" * 600, "lambda: 1"])
def test_calculator_refuses_anything_but_arithmetic(expr):
    with pytest.raises(CalculatorError):
        calculate(expr)


def test_address_parsing_finds_province_city_district_and_finer_elements():
    parsed = parse_address("浙江杭州市江干区九堡镇三村村一区")
    assert parsed == {"province": "浙江省", "city": "杭州市", "district": "江干区", "town": "九堡镇",
                      "village": "三村村", "detail": "一区", "adcode": "330104"}
    beijing = parse_address("北京市海淀区中关村大街27号")
    assert beijing["city"] == "北京市" and beijing["district"] == "海淀区"
    assert beijing["road"] == "中关村大街" and beijing["number"] == "27号"


async def test_builtin_datetime_and_bad_timezone():
    reg = ToolRegistry(default_tools())
    now = await reg.call("current_datetime", {"timezone": "Asia/Shanghai"})
    assert now.ok and now.output["timezone"] == "Asia/Shanghai" and now.output["weekday_zh"].startswith("星期")
    bad = await reg.call("current_datetime", {"timezone": "Mars/Olympus"})
    assert "unknown time zone 'Mars/Olympus'" in bad.error
