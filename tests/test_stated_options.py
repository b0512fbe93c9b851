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


def _unit_tool(description: str, name: str = "unit") -> ToolSpec:
    return ToolSpec(name="measure", description="A measurement", parameters={
        "type": "object", "required": ["value"],
        "properties": {"value": {"type": "number"}, name: {"type": "string", "description": description}}})


def _filled(description: str, request: str, name: str = "unit") -> dict:
    call = ToolCall(name="measure", arguments={"value": 5})
    return fill_stated_options([call], [_unit_tool(description, name)], [Message.user(request)])[0][0].arguments


def test_a_free_text_unit_the_request_states_is_filled_in_as_the_user_or_the_schema_writes_it():
    assert _filled("The unit of measure used. Defaults to cm.", "A base of 12 meters and a height of 15 meters") == {
        "value": 5, "unit": "meters"}
    assert _filled("Units for the output. Default is 'cm'.", "radius of 5cm and 10cm", name="units")["units"] == "cm"
    assert _filled("Distance unit, 'km' or 'mi'.", "the distance in kilometers")["unit"] == "km"
    assert _filled("The temperature unit ('Celsius' or 'Fahrenheit')", "how warm, in celsius?",
                   name="temp_unit")["temp_unit"] == "Celsius"


def test_units_of_another_kind_compound_units_and_ambiguous_requests_are_left_alone():
    assert "unit" not in _filled("Temperature unit", "5 miles from here")  # a length is no temperature
    assert "unit" not in _filled("Default is km/h", "120 kilometers in 5 hours")  # a speed is not one unit
    assert "unit" not in _filled("The unit for the area", "a base of 12 meters")
    assert "unit" not in _filled("The unit of distance", "convert 5 miles to km")  # two stated
    assert "unit" not in _filled("The unit", "for the next 10 years")  # a duration: no unit kind named
    assert _filled("The unit of time", "how long, in minutes?")["unit"] == "minutes"
    assert "note" not in _filled("A note", "in miles", name="note")  # not a unit parameter


def test_a_rate_unit_the_request_writes_is_filled_in_where_the_default_is_one():
    """"the speed in km/h if it traveled 450 meters in 20 seconds": `to_unit`, whose description
    says "default is m/s", gets "km/h" as the user wrote it; not where the request writes two or
    none, nor for a description without a rate unit."""
    assert _filled("The unit for the speed, default is m/s.", "the speed in km/h of 450 meters in 20 s",
                   name="to_unit")["to_unit"] == "km/h"
    assert "unit" not in _filled("Default is m/s", "from km/h to mph and m/s")  # two written
    assert "unit" not in _filled("Default is m/s", "120 kilometers in 5 hours")
    assert "unit" not in _filled("The unit for the area", "stated in km/h")
    assert "unit" not in _filled("Default is m/s", "walk and/or run 5 km")


def test_a_member_written_with_spaces_or_inside_a_longer_stated_member_counts_once():
    movies = ToolSpec(name="find_movies", description="Movies", parameters={
        "type": "object", "required": ["city"],
        "properties": {"city": {"type": "string"},
                       "genre": {"type": "string", "enum": ["Comedy", "Comedy-drama", "Drama"]},
                       "show": {"type": "string", "enum": ["trial_date", "status"]}}})
    call = ToolCall(name="find_movies", arguments={"city": "Fremont"})
    filled = fill_stated_options([call], [movies], [Message.user("A comedy-drama in Fremont, by trial date")])
    assert filled[0][0].arguments == {"city": "Fremont", "genre": "Comedy-drama", "show": "trial_date"}


def test_a_flag_is_set_where_the_request_asks_for_what_its_description_says_true_brings():
    air = ToolSpec(name="get_air_quality", description="Air quality", parameters={
        "type": "object", "required": ["location"],
        "properties": {"location": {"type": "string"}, "detail": {"type": "boolean", "description": (
            "If true, additional data like PM2.5, PM10, ozone levels, and pollution sources will be retrieved.")}}})
    call = ToolCall(name="get_air_quality", arguments={"location": "New York City"})
    asked = [Message.user("Air quality in New York City, including additional data like PM2.5, PM10 and ozone levels")]
    assert fill_stated_options([call], [air], asked)[0][0].arguments["detail"] is True
    for request in ("Air quality in New York City", "Air quality in New York City, but no PM2.5, PM10 or ozone levels"):
        assert fill_stated_options([call], [air], [Message.user(request)]) == ([call], [])


def test_a_count_of_what_an_integer_parameter_counts_is_filled_in():
    tickets = ToolSpec(name="book_ticket", parameters={
        "type": "object", "required": ["artist"],
        "properties": {"artist": {"type": "string"}, "num_tickets": {"type": "integer"},
                       "nights": {"type": "integer"}, "year": {"type": "integer"}}})
    call = ToolCall(name="book_ticket", arguments={"artist": "Eminem"})

    def filled(request: str) -> dict:
        return fill_stated_options([call], [tickets], [Message.user(request)])[0][0].arguments

    assert filled("Get me two tickets for the next Eminem concert.") == {"artist": "Eminem", "num_tickets": 2}
    assert filled("Book 3 VIP tickets and a room for 2 nights") == {"artist": "Eminem", "num_tickets": 3, "nights": 2}
    # left alone: two different counts, a count on top of someone ("one other ticket"), a time ago
    assert filled("two tickets for me and 4 tickets for my friends") == {"artist": "Eminem"}
    assert filled("a ticket for me and one other ticket") == {"artist": "Eminem"}
    assert filled("the album from seven years ago") == {"artist": "Eminem"}


def test_a_number_the_parameters_words_stand_next_to_or_a_unit_of_its_kind_follows_is_filled_in():
    stores = ToolSpec(name="find_store", parameters={
        "type": "object", "required": ["location"],
        "properties": {"location": {"type": "string"}, "rating": {"type": "number"},
                       "max_distance": {"type": "integer", "description": "Distance to search within."},
                       "efficiency_reduction": {"type": "integer"}}})

    def filled(request: str, calls: int = 1) -> list[dict]:
        call = ToolCall(name="find_store", arguments={"location": "Berkeley"})
        return [c.arguments for c in fill_stated_options([call] * calls, [stores], [Message.user(request)])[0]]

    assert filled("Stores near Berkeley with at least a 4.5 star rating within 10 miles") == [
        {"location": "Berkeley", "rating": 4.5, "max_distance": 10}]
    assert filled("a rating of 4,000 or more") == [{"location": "Berkeley", "rating": 4000}]
    # left alone: a percentage (a rate's business), a name only half stated ("efficiency" without
    # "reduction"), two numbers by the words, and calls of one tool (each takes its own number)
    assert filled("a 25 MPG efficiency, a rating of 95%") == [{"location": "Berkeley"}]
    assert filled("rating 4 or rating 5") == [{"location": "Berkeley"}]
    assert filled("a 4.5 star rating", calls=2) == [{"location": "Berkeley"}] * 2


def test_a_language_code_is_stated_by_the_language_s_name():
    speech = ToolSpec(name="text_to_speech", description="Speak a text", parameters={
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string"},
                       "language": {"type": "string", "enum": ["en-US", "es-ES", "zh-CN"], "default": "en-US"}}})
    call = ToolCall(name="text_to_speech", arguments={"text": "I am a pretty girl"})
    ask = [Message.user("Convert 'I am a pretty girl' into spoken audio in Spanish with a female voice.")]
    calls, _ = fill_stated_options([call], [speech], ask)
    assert calls[0].arguments["language"] == "es-ES"
    both = [Message.user("Say it in Spanish and in Chinese")]  # two languages: which one is not known
    assert "language" not in fill_stated_options([call], [speech], both)[0][0].arguments


def test_a_short_member_is_stated_by_the_word_the_description_spells_it_out_with():
    listing = ToolSpec(name="list_directory_contents", description="List a directory", parameters={
        "type": "object", "required": ["dir_path"],
        "properties": {"dir_path": {"type": "string"},
                       "sort_order": {"type": "string", "enum": ["asc", "desc"], "default": "asc",
                                      "description": "Ascending or descending by name."}}})
    call = ToolCall(name="list_directory_contents", arguments={"dir_path": "/out/programs"})
    ask = [Message.user("list the files in '/out/programs', in descending order by name")]
    assert fill_stated_options([call], [listing], ask)[0][0].arguments["sort_order"] == "desc"
    # the word must be the description's too: "ascii" states no order
    assert "sort_order" not in fill_stated_options([call], [listing], [Message.user("list it as ascii")])[0][0].arguments


def test_a_made_up_option_gives_way_to_the_one_the_request_states():
    """The 0.5B wrote `to_unit="m/s"`, the description's default, for "the speed in km/h": the
    made-up value is dropped and the stated one takes its place."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import Completion

    speed = ToolSpec(name="calculate_speed", description="Speed of an object", parameters={
        "type": "object", "required": ["distance", "time"],
        "properties": {"distance": {"type": "integer"}, "time": {"type": "integer"},
                       "to_unit": {"type": "string", "description": "The unit of the speed, default is m/s."}}})
    ask = [Message.user("Calculate the speed of an object in km/h if it traveled 450 meters in 20 seconds.")]
    made = Completion(tool_calls=[ToolCall(name="calculate_speed",
                                           arguments={"distance": 450, "time": 20, "to_unit": "m/s"})])
    kept = LlamaCppChatModel()._without_unstated(made, [speed], ask)
    assert kept.tool_calls[0].arguments == {"distance": 450, "time": 20, "to_unit": "km/h"}
