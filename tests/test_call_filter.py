"""Which of several calls in one reply a small model's output keeps (raygent.llm_pool.call_filter)."""

from __future__ import annotations

from raygent.llm_pool.call_filter import grounded, keep_grounded_calls
from raygent.schema import Message, ToolCall


def _call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def test_real_parallel_calls_are_kept():
    messages = [Message.user("What's the weather like in Boston, MA and San Francisco, in fahrenheit?")]
    calls = [_call("get_weather", location="Boston, MA", unit="fahrenheit"),
             _call("get_weather", location="San Francisco, CA", unit="fahrenheit")]
    assert keep_grounded_calls(calls, messages) == (calls, [])


def test_repeats_and_ungrounded_extra_calls_are_dropped_with_a_reason():
    messages = [Message.user("What's the weather like in Boston?")]
    first = _call("get_weather", location="Boston, MA")
    kept, dropped = keep_grounded_calls(
        [first, _call("get_weather", location="Boston, MA"), _call("get_weather", location="Paris, France"),
         _call("calculator", expression="2*21")], messages)
    assert kept == [first]
    assert dropped[0] == "dropped a repeat of the call to 'get_weather'"
    assert "'get_weather'" in dropped[1] and '"Paris, France"' in dropped[1]  # an exemplar's city
    assert "'calculator'" in dropped[2]


def test_a_new_combination_of_values_already_used_is_kept():
    messages = [Message.user("Find the winning percentage of Lakers and Bulls in NBA seasons 2018 and 2020.")]
    calls = [_call("win_pct", team=team, season=season) for team in ("Lakers", "Bulls") for season in (2018, 2020)]
    assert keep_grounded_calls(calls, messages)[0] == calls


def test_a_different_tool_may_share_the_values_of_the_first_call():
    messages = [Message.user("Get me the weather and the local time in Tokyo")]
    calls = [_call("get_weather", city="Tokyo"), _call("get_time", city="Tokyo")]
    assert keep_grounded_calls(calls, messages)[0] == calls


def test_numbers_and_tool_results_ground_values():
    text = "find the area of circles with radius 5 and 7.5; the rate is 3%; earlier result: 1,200 units"
    assert grounded(5, text) and grounded(7.5, text) and grounded(0.03, text) and grounded(1200, text)
    assert not grounded(6, text) and not grounded(True, text) and not grounded(None, text)
    assert grounded("浙江省", "地址：浙江杭州市江干区") and not grounded("北京", "地址：浙江杭州市江干区")
    messages = [Message.user("Compute the areas of both shapes."), Message(role="tool", content="sides: 12 and 14", tool_call_id="call_1")]
    calls = [_call("area", side=12), _call("area", side=14)]
    assert keep_grounded_calls(calls, messages)[0] == calls


def test_one_call_is_never_filtered():
    call = _call("anything", value="not in the text")
    assert keep_grounded_calls([call], [Message.user("hello")]) == ([call], [])


def test_a_llama_model_allowed_several_calls_keeps_only_the_grounded_ones():
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import ToolSpec, Usage

    weather = ToolSpec(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    raw = "\n".join('<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n</tool_call>' % city
                    for city in ("Boston", "Paris", "Boston", "Tokyo"))
    messages = [Message.user("Weather in Boston and in Tokyo, please")]
    several = LlamaCppChatModel(max_calls=4)._finish(raw, "stop", Usage(), [weather], "auto", messages)
    assert [c.arguments["city"] for c in several.tool_calls] == ["Boston", "Tokyo"]
    assert several.finish_reason == "tool_calls" and several.parse_errors == []  # dropping is no error
    one = LlamaCppChatModel(max_calls=1)._finish(raw, "stop", Usage(), [weather], "auto", messages)
    assert len(one.tool_calls) == 4  # the grammar caps a max_calls=1 reply; the parser reads what is there


def test_eval_set_options_parse_as_json_where_they_can():
    import pytest

    from raygent.evaluation.cli import parse_options

    assert parse_options(["call_bias=4", "relevance_bias=null", "format=hermes", "max_calls=4"]) == {
        "call_bias": 4, "relevance_bias": None, "format": "hermes", "max_calls": 4}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["call_bias"])
