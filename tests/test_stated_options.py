"""Optional arguments the request states but the model left out (raygent.llm_pool.stated_options):
what is filled, what is left alone, and what the user sees in the call."""

from __future__ import annotations

from raygent.llm_pool.stated_options import fill_stated_options
from raygent.schema import Message, ToolCall, ToolSpec

WEATHER = ToolSpec(name="get_current_weather", description="Current weather", parameters={
    "type": "object", "required": ["location"],
    "properties": {"location": {"type": "string"},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                   "include_humidity": {"type": "boolean"}}})
STARS = ToolSpec(name="github_star", description="Star history of repositories", parameters={
    "type": "object", "required": ["repos"],
    "properties": {"repos": {"type": "string"}, "aligned": {"type": "boolean"},
                   "include_details": {"type": "boolean"}, "verbose": {"type": "boolean"}}})


def _weather(**arguments) -> ToolCall:
    return ToolCall(name="get_current_weather", arguments={"location": "Mariposa, CA", **arguments})


def test_an_enum_member_the_request_names_is_filled_in():
    ask = [Message.user("Weather in Mariposa, CA? Make sure to give me the temperature in Celsius.")]
    calls, notes = fill_stated_options([_weather()], [WEATHER], ask)
    assert calls[0].arguments == {"location": "Mariposa, CA", "unit": "celsius"}
    assert notes == ["added unit='celsius' to the call to 'get_current_weather': the request states it"]


def test_what_the_model_wrote_and_ambiguous_requests_are_left_alone():
    both = [Message.user("Weather in Mariposa, CA, in celsius and in fahrenheit")]
    bare = _weather()
    assert fill_stated_options([bare], [WEATHER], both) == ([bare], [])
    chosen = _weather(unit="fahrenheit")  # the model's own value is never replaced
    assert fill_stated_options([chosen], [WEATHER], [Message.user("in celsius please")]) == ([chosen], [])
    unknown = ToolCall(name="not_offered", arguments={})
    assert fill_stated_options([unknown], [WEATHER], [Message.user("in celsius")]) == ([unknown], [])


def test_a_flag_is_set_where_the_request_uses_its_words_and_not_where_it_negates_them():
    call = ToolCall(name="github_star", arguments={"repos": "ShishirPatil/gorilla"})
    aligned = [Message.user("Show the star history of ShishirPatil/gorilla with the timelines aligned.")]
    assert fill_stated_options([call], [STARS], aligned)[0][0].arguments == {
        "repos": "ShishirPatil/gorilla", "aligned": True}
    details = [Message.user("Star history of ShishirPatil/gorilla, with details")]
    assert fill_stated_options([call], [STARS], details)[0][0].arguments["include_details"] is True
    negated = [Message.user("Star history of ShishirPatil/gorilla without any details, timelines not aligned")]
    assert fill_stated_options([call], [STARS], negated) == ([call], [])


def test_only_the_latest_request_counts():
    history = [Message.user("Weather in Paris in celsius"), Message.assistant("18 °C in Paris."),
               Message.user("And in Mariposa, CA?")]
    bare = _weather()
    assert fill_stated_options([bare], [WEATHER], history) == ([bare], [])
    tool_said = [Message.user("Weather in Mariposa, CA"),
                 Message(role="tool", tool_call_id="c1", content='{"unit": "celsius"}')]
    assert fill_stated_options([bare], [WEATHER], tool_said) == ([bare], [])
