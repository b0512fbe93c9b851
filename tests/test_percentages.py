"""A rate given in percent, written as the fraction a rate parameter takes (raygent.llm_pool.percentages):
what is rewritten, what is left alone, and the note the log gets."""

from __future__ import annotations

from raygent.llm_pool.percentages import rates_as_fractions
from raygent.schema import Message, ToolCall, ToolSpec


def _tool(name: str, prop: dict) -> ToolSpec:
    return ToolSpec(name="future_value", description="Future value of an investment", parameters={
        "type": "object", "required": ["principal", name],
        "properties": {"principal": {"type": "number"}, name: prop}})


def _rewritten(name: str, prop: dict, value: float, request: str) -> float:
    call = ToolCall(name="future_value", arguments={"principal": 1000, name: value})
    return rates_as_fractions([call], [_tool(name, prop)], [Message.user(request)])[0][0].arguments[name]


ASK = "What will $1000 be worth in 10 years at an annual interest rate of 3%?"


def test_a_rate_given_in_percent_becomes_a_fraction():
    call = ToolCall(name="future_value", arguments={"principal": 1000, "annual_interest_rate": 3.0})
    tools = [_tool("annual_interest_rate", {"type": "number", "description": "The annual interest rate."})]
    calls, notes = rates_as_fractions([call], tools, [Message.user(ASK)])
    assert calls[0].arguments == {"principal": 1000, "annual_interest_rate": 0.03}
    assert notes == ["wrote annual_interest_rate=3.0 of 'future_value' as 0.03: the request gives it in percent"]
    # the description asks for a decimal, or its default is a fraction: the name need not say rate
    assert _rewritten("confidence", {"type": "number", "description": "Default is 0.9."}, 95, "at 95% confidence") == 0.95
    assert _rewritten("x", {"type": "number", "description": "as a decimal, e.g. 5% is 0.05"}, 5, "x is 5 percent") == 0.05


def test_percent_scales_integers_fractions_and_unstated_values_are_left_alone():
    assert _rewritten("rate", {"type": "number", "description": "Interest rate in percentage."}, 3.0, ASK) == 3.0
    assert _rewritten("volume", {"type": "number", "description": "from 0 to 100"}, 3.0, ASK) == 3.0
    assert _rewritten("rate", {"type": "integer", "description": "The rate."}, 3, ASK) == 3
    assert _rewritten("rate", {"type": "number", "description": "The rate."}, 0.03, ASK) == 0.03  # already one
    assert _rewritten("rate", {"type": "number", "description": "The rate."}, 10, ASK) == 10  # "10 years", no %
    assert _rewritten("amount", {"type": "number", "description": "Amount."}, 3.0, ASK) == 3.0  # not a rate
