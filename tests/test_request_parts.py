"""The part of a request each of several calls of one tool answers (raygent.llm_pool.request_parts),
and the options filled from it (raygent.llm_pool.stated_options)."""

from __future__ import annotations

from raygent.llm_pool.request_parts import call_parts
from raygent.llm_pool.stated_options import fill_stated_options
from raygent.schema import Message, ToolCall, ToolSpec

RESONANCE = ToolSpec(name="resonant_frequency", description="Resonant frequency of an LC circuit", parameters={
    "type": "object", "required": ["inductance", "capacitance"],
    "properties": {"inductance": {"type": "number"}, "capacitance": {"type": "number"},
                   "round_off": {"type": "integer", "description": "Decimal places to round to"}}})
ASK = ("Can you calculate the resonant frequency with an inductance of 0.005 henries and a capacitance of "
       "0.0000001 farads, and then round off the result to 3 decimal places? After that, can you calculate it "
       "again with an inductance of 0.007 henries and a capacitance of 0.0000002 farads, rounding off the "
       "result to 4 decimal places?")


def _calls() -> list[ToolCall]:
    return [ToolCall(name="resonant_frequency", arguments={"inductance": 0.005, "capacitance": 1e-07}),
            ToolCall(name="resonant_frequency", arguments={"inductance": 0.007, "capacitance": 2e-07})]


def test_each_call_gets_the_part_its_own_values_lie_in():
    parts = call_parts(_calls(), ASK.lower())
    assert "0.005" in parts[0] and "to 3 decimal" in parts[0] and "0.007" not in parts[0]
    assert parts[1].startswith("can you calculate it again") and "to 4 decimal" in parts[1]
    # a clause break ends a part: "large" stays with the bird it describes
    birds = ("the first one was a small bird with a blue color in a forest. the second one was a large bird "
             "with black colors near a lake.")
    two = [ToolCall(name="identify_bird", arguments={"color": "blue", "habitat": "forest"}),
           ToolCall(name="identify_bird", arguments={"color": "black", "habitat": "lake"})]
    assert "large" in call_parts(two, birds)[1] and "large" not in call_parts(two, birds)[0]


def test_no_parts_where_they_cannot_be_told():
    one = [ToolCall(name="resonant_frequency", arguments={"inductance": 0.005, "capacitance": 1e-07})]
    assert call_parts(one, ASK.lower()) == {}  # one call: the whole request is its part
    same = [ToolCall(name="integrate", arguments={"f": "x**3"}), ToolCall(name="integrate", arguments={"f": "x**3"})]
    assert call_parts(same, "integrate x**3 with trapezoid and with simpson") == {}
    backwards = list(reversed(_calls()))  # the calls' values not in the request's order
    assert call_parts(backwards, ASK.lower()) == {}


def test_each_call_takes_the_number_its_own_part_states():
    calls, notes = fill_stated_options(_calls(), [RESONANCE], [Message.user(ASK)])
    assert [c.arguments.get("round_off") for c in calls] == [3, 4]
    assert len(notes) == 2
