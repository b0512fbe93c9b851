"""Which calls of a small model's reply are kept (raygent.llm_pool.call_filter: repeats, ungrounded
extra calls, made-up calls) and how an answer may begin (raygent.llm_pool.grammar)."""

from __future__ import annotations

from raygent.llm_pool.call_filter import grounded, keep_grounded_calls, named_in
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


def test_a_tool_called_again_with_only_another_tools_values_is_dropped():
    """The 0.5B follows three right calls with `gcd(440, 880)`, the note frequencies it just gave
    `note_duration`; a second `gcd` with a pair of its own is kept."""
    ask = [Message.user("Find the GCD of 48 and 36, then the duration between notes of 440 and 880 Hz at "
                        "tempo 100. And the GCD of 12 and 18.")]
    gcd, notes = _call("gcd", a=48, b=36), _call("note_duration", first=440, second=880, tempo=100)
    kept, dropped = keep_grounded_calls([gcd, notes, _call("gcd", a=440, b=880)], ask)
    assert kept == [gcd, notes] and "another tool's call" in dropped[0]
    again = _call("gcd", a=12, b=18)
    assert keep_grounded_calls([gcd, notes, again], ask)[0] == [gcd, notes, again]


def test_a_different_tool_may_share_the_values_of_the_first_call():
    messages = [Message.user("Get me the weather and the local time in Tokyo")]
    calls = [_call("get_weather", city="Tokyo"), _call("get_time", city="Tokyo")]
    assert keep_grounded_calls(calls, messages)[0] == calls


def test_a_different_tool_fed_made_up_values_is_dropped():
    # BFCL multiple_142: the 0.5B follows the right call with a neighbouring tool's call
    messages = [Message.user("What is the humidity forecast for Miami for the next 7 days?")]
    first = _call("weather.humidity_forecast", location="Miami", days=7)
    kept, dropped = keep_grounded_calls(
        [first, _call("get_team_score", team_name="Miami", league="NFL", include_player_stats=True)], messages)
    assert kept == [first]
    assert dropped == ["dropped an extra call to 'get_team_score': its values \"NFL\" appear nowhere in the conversation"]


def test_a_different_tool_must_be_asked_for_or_bring_a_value_of_its_own():
    # BFCL parallel_multiple_22: the interest coverage is asked for, the weather is not
    messages = [Message.user("Find me the sales growth rate for company XYZ for the last 3 years and also "
                             "the interest coverage ratio for the same duration.")]
    wanted = [_call("sales_growth.calculate", company="XYZ", years=3),
              _call("financial_ratios.interest_coverage", company_name="XYZ", years=3)]
    kept, dropped = keep_grounded_calls([*wanted, _call("weather_forecast", location="XYZ", days=3)], messages)
    assert kept == wanted
    assert dropped == ["dropped an extra call to 'weather_forecast': the conversation names no such tool and it "
                       "only repeats the earlier calls' values"]
    # not named, but fed a value of its own from the request: kept
    messages = [Message.user("Convert 24 inches to centimeters and tell me what 75 kg weighs on Mars.")]
    calls = [_call("unit_conversion.convert", value=24, from_unit="inches", to_unit="centimeters"),
             _call("planet_gravity", weight_earth_kg=75, planet="Mars")]
    assert keep_grounded_calls(calls, messages)[0] == calls
    # a value of its own must be the request's whole, not a text sharing a word with it (BFCL
    # multiple_181: "Liverpool F.C. data" after the last match of "Liverpool F.C.")
    messages = [Message.user("Get me the details of the last game played by Liverpool F.C. Include its statistics.")]
    match = _call("soccer.get_last_match", team_name="Liverpool F.C.")
    kept, dropped = keep_grounded_calls([match, _call("building.get_dimensions", building_name="Liverpool F.C. data")],
                                        messages)
    assert kept == [match] and "names no such tool" in dropped[0]


def test_enum_members_and_defaults_are_not_made_up_values():
    messages = [Message.user("Get me the weather and the local time in Tokyo")]
    parameters = {"get_time": {"type": "object", "properties": {
        "city": {"type": "string"}, "format": {"type": "string", "enum": ["12h", "24h"]},
        "zone": {"type": "string", "default": "local"}}}}
    calls = [_call("get_weather", city="Tokyo"), _call("get_time", city="Tokyo", format="24h", zone="local")]
    assert keep_grounded_calls(calls, messages, parameters)[0] == calls
    assert keep_grounded_calls(calls, messages)[0] == calls[:1]  # without the schema, "24h" is made up


def test_an_extra_call_giving_two_arguments_the_same_text_is_dropped():
    messages = [Message.user("Fastest route from San Francisco to Palo Alto, then on to San Jose.")]
    calls = [_call("fastest_route", start="San Francisco", end="Palo Alto"),
             _call("fastest_route", start="Palo Alto", end="San Jose"),
             _call("fastest_route", start="San Jose", end="San Jose")]
    kept, dropped = keep_grounded_calls(calls, messages)
    assert kept == calls[:2]
    assert dropped == ["dropped an extra call to 'fastest_route': two of its arguments carry the same text"]


def test_an_extra_call_swapping_the_values_of_an_earlier_one_is_dropped():
    messages = [Message.user("Calculate the greatest common divisor of 12 and 15.")]
    calls = [_call("math.gcd", num1=12, num2=15), _call("math.gcd", num1=15, num2=12)]
    kept, dropped = keep_grounded_calls(calls, messages)
    assert kept == calls[:1]
    assert dropped == ["dropped an extra call to 'math.gcd': it swaps the values of an earlier call"]


def test_a_tool_is_named_by_a_word_of_its_name_but_not_by_a_generic_verb():
    assert named_in("calculate.weight_in_space", "how much would i weigh on mars?")
    assert named_in("unit_conversion.convert", "convert 24 inches to cm")
    assert named_in("getStockPrice", "the stock of apple")
    assert not named_in("weather_forecast", "sales growth of xyz")
    assert not named_in("get_details", "get me the details")  # only generic words


def test_numbers_and_tool_results_ground_values():
    text = "find the area of circles with radius 5 and 7.5; the rate is 3%; earlier result: 1,200 units"
    assert grounded(5, text) and grounded(7.5, text) and grounded(0.03, text) and grounded(1200, text)
    assert not grounded(6, text) and not grounded(True, text) and not grounded(None, text)
    # written with other digits: trailing zeros, thousands separators and decimals
    assert grounded(-74.006, "the point [40.7128, -74.0060]") and grounded(1e6, "pay 1,000,000.00 now")
    assert not grounded(123, "the list [1,2,3]")
    # a longer text needs half its words in the conversation, not just one
    ask = "what's the weather like in the two cities of boston and san francisco? translate 'what is your name?'"
    assert not grounded("http://api.openweathermap.org/data/2.5/weather?q=Boston&appid=YOUR_API_KEY", ask)
    assert not grounded("Wie ist dein Name?", ask)
    assert grounded("San Francisco, CA", ask) and grounded("the weather in Boston", ask)
    # currency codes for currencies named in words
    assert grounded("GBP", "from british pounds to japanese yen") and grounded("JPY", "from british pounds to japanese yen")
    assert grounded("CNY", "100美元换成人民币") and not grounded("EUR", "from british pounds to japanese yen")
    assert grounded("浙江省", "地址：浙江杭州市江干区") and not grounded("北京", "地址：浙江杭州市江干区")
    # an identifier is found whole or by its number, never by a word beginning like it: a schema's
    # example id "SUP-99" is made up for "which supplier makes SKU-3302?"
    ask = "which supplier makes product sku-3302? it came with order a 1042"
    assert not grounded("SUP-99", ask) and not grounded("SUP-3302", ask) and not grounded("B-1042", ask)
    assert grounded("SKU-3302", ask) and grounded("sku3302", ask) and grounded("A-1042", ask)
    assert grounded("supplier", ask) and grounded("2023-05-05", "on 2023-05-05")
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


def _schema(**properties) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties)}


BMI = _schema(weight_kg={"type": "number"}, height_cm={"type": "number"},
              unit={"type": "string", "enum": ["metric", "imperial"], "default": "metric"})


def test_a_call_whose_every_value_is_made_up_is_invented():
    from raygent.llm_pool.call_filter import invented_call

    chit_chat = [Message.user("What's the capital of France?")]
    assert invented_call(_call("calculate_bmi", weight_kg=70, height_cm=175), BMI, chit_chat)
    fits = [Message.user("I weigh 70 kg and I'm 1.75 m tall, what's my BMI?")]
    assert not invented_call(_call("calculate_bmi", weight_kg=70, height_cm=175), BMI, fits)  # 70 is there


def test_enum_members_defaults_booleans_and_no_arguments_are_no_evidence():
    from raygent.llm_pool.call_filter import invented_call

    messages = [Message.user("What time is it?")]
    assert not invented_call(_call("current_datetime"), None, messages)
    assert not invented_call(_call("calculate_bmi", unit="imperial"), BMI, messages)  # nothing to judge by
    flags = _schema(verbose={"type": "boolean"}, city={"type": "string"})
    assert not invented_call(_call("t", verbose=True), flags, messages)
    assert invented_call(_call("t", verbose=True, city="Paris"), flags, messages)  # Paris came from nowhere


def test_values_may_come_from_numbers_inside_a_string_tool_results_and_earlier_answers():
    from raygent.llm_pool.call_filter import invented_call

    expression = _schema(expression={"type": "string"})
    assert grounded("3.5*4-2", "计算 3.5 乘以 4 再减去 2")
    assert not invented_call(_call("calculator", expression="3.5*4-2"), expression,
                             [Message.user("计算 3.5 乘以 4 再减去 2")])
    history = [Message.user("What is 120/8?"), Message(role="tool", tool_call_id="c1", name="calculator",
                                                        content='{"result": 15}'),
               Message.assistant("It is 15."), Message.user("Now double that.")]
    assert not invented_call(_call("calculator", expression="15*2"), expression, history)
    assert invented_call(_call("calculator", expression="2*2"), expression, [Message.user("Tell me a joke")])


def test_a_call_with_mostly_made_up_values_is_invented():
    from raygent.llm_pool.call_filter import invented_call

    hotels = _schema(city={"type": "string"}, check_in={"type": "string"}, check_out={"type": "string"})
    ask = [Message.user("Find me a hotel in Lisbon")]
    assert invented_call(_call("search_hotels", city="Lisbon", check_in="2024-06-01", check_out="2024-06-03"),
                         hotels, ask)  # one value of three from the user: the dates were made up
    weather = _schema(city={"type": "string"}, unit={"type": "string"})
    assert not invented_call(_call("get_weather", city="Lisbon", unit="celsius"), weather,
                             [Message.user("Weather in Lisbon?")])  # half of them: kept


def test_an_answer_may_not_begin_like_a_call_or_with_an_underscore():
    """The adapter writes `_Pods` where it means `<tool_call>`, then the call's JSON as text."""
    from llama_cpp import LlamaGrammar

    from raygent.llm_pool.grammar import answer_grammar, tool_call_grammar
    from raygent.schema import ToolSpec

    spec = ToolSpec(name="calculator", description="Evaluate arithmetic",
                    parameters=_schema(expression={"type": "string"}))
    # the last is the grammar of the answer that replaces made-up calls (asked without tools)
    for grammar in (tool_call_grammar([spec], "auto"), tool_call_grammar([spec], "none"), answer_grammar()):
        LlamaGrammar.from_string(grammar, verbose=False)  # valid GBNF
        first = next(line for line in grammar.splitlines() if line.startswith("answer ::="))
        assert first.startswith("answer ::= [^{`<( \\t\\n_]"), first


def test_the_next_call_bias_applies_right_after_a_closed_call():
    from raygent.llm_pool.lazy_decode import bias_following

    rule = ("</tool_call>", {198: 1.5})
    assert bias_following('<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', rule) == {198: 1.5}
    assert bias_following('<tool_call>\n{"name": "f"', rule) is None
    assert bias_following("</tool_call>", None) is None



def test_a_made_up_first_call_gives_way_to_the_grounded_call_after_it():
    """The 0.5B opens with a tool's schema example (`city_forecast("Paris")`) and then makes the call
    the request needs; the made-up one is dropped. A first call with some value of the request
    stays first."""
    ask = [Message.user("What will the weather be like tomorrow in the office city of employee E-233?")]
    paris = ToolCall(id="a", name="city_forecast", arguments={"city": "Paris"})
    employee = ToolCall(id="b", name="get_employee", arguments={"employee_id": "E-233"})
    kept, dropped = keep_grounded_calls([paris, employee], ask)
    assert [c.name for c in kept] == ["get_employee"] and "none of its values" in dropped[0]
    # nothing grounded after it: the first call stays (answer_invented judges it)
    kept, _ = keep_grounded_calls([paris, ToolCall(id="c", name="city_forecast", arguments={"city": "Rome"})], ask)
    assert kept[0] is paris
    tomorrow = ToolCall(id="d", name="city_forecast", arguments={"city": "E-233", "day": "tomorrow"})
    kept, _ = keep_grounded_calls([tomorrow, employee], ask)
    assert kept[0] is tomorrow


def test_an_identifier_found_nowhere_makes_the_call_invented_even_where_other_values_are_the_users():
    from raygent.llm_pool.call_filter import invented_call

    cases = _schema(case_id={"type": "string"}, case_year={"type": "string"})
    ask = [Message.user("What were the most impactful cases handled by law firm ABC in the year 2020?")]
    # half the values are the user's (the year), but no case id was given: the call is made up
    assert invented_call(_call("case_info.get", case_id="20200101", case_year="2020"), cases, ask)
    # an id the user gave, or a tool returned, is fine; so is a short code (under four characters)
    given = [Message.user("Get case CR-2020-77 from 2020")]
    assert not invented_call(_call("case_info.get", case_id="CR-2020-77", case_year="2020"), cases, given)
    returned = [*ask, Message(role="tool", tool_call_id="c1", name="search_cases", content='{"ids": ["A7781"]}')]
    assert not invented_call(_call("case_info.get", case_id="A7781", case_year="2020"), cases, returned)
    assert not invented_call(_call("case_info.get", case_id="7", case_year="2020"), cases, ask)


def test_a_key_passed_as_another_kind_s_key_than_the_request_says_is_dropped():
    """`customer_profile(customer_id="B-5190")` beside `lookup_order(order_id="B-5190")` for "order
    B-5190": the order id under the customer id's name, a step written before the result it needs;
    the agent makes it once the order's customer_id is in."""
    messages = [Message.user("Email the customer who placed order B-5190 that it has shipped.")]
    calls = [_call("lookup_order", order_id="B-5190"), _call("customer_profile", customer_id="B-5190")]
    kept, dropped = keep_grounded_calls(calls, messages)
    assert kept == calls[:1]
    assert dropped == ["dropped the call to 'customer_profile': the request's order B-5190 is no customer_id"]
    # whichever call comes first: the one whose key the request's word names is kept
    employee = [Message.user("Book a meeting about hiring with the manager of employee E-233.")]
    tries = [_call("track_package", tracking_no="E-233"), _call("customer_profile", customer_id="E-233"),
             _call("get_employee", employee_id="E-233")]
    assert keep_grounded_calls(tries, employee)[0] == tries[2:]
    # the same value under the same name, or under names that are no keys ("Boston" twice), stays
    both = [_call("get_weather", location="Boston"), _call("get_time", city="Boston")]
    assert keep_grounded_calls(both, [Message.user("the weather and the time in Boston")])[0] == both


def test_a_tool_named_only_through_a_word_a_called_tool_shares_is_dropped_when_it_adds_nothing():
    """"Find a Theater event in Chicago on 2023-5-2?": the 0.5B searched, then bought tickets for an
    event it named "Chicago, State". `Events_3_BuyEventTickets` has words of its own ("buy",
    "tickets") the request does not use, and "event" names the search too; what the user sees is
    the search alone. A tool whose own words the request uses ("open library" for
    `openlibrary.books_search`) or whose words are all shared (`painting.display` beside
    `painting.create` and `display.set_screen_brightness`) is kept."""
    ask = [Message.user("Find a Theater event in Chicago on 2023-5-2?")]
    find = _call("Events_3_FindEvents", event_type="Theater", city="Chicago, IL", date="2023-05-02")
    buy = _call("Events_3_BuyEventTickets", event_name="Chicago, State", number_of_tickets=1, date="2023-05-02",
                city="Chicago, IL")
    kept, dropped = keep_grounded_calls([find, buy], ask)
    assert kept == [find] and "Events_3_BuyEventTickets" in dropped[0]
    books = [Message.user("A mystery novel: search the library in New York City first, then Google Books and "
                          "Open Library.")]
    calls = [_call("library.search_books", location="New York City", genre="mystery"),
             _call("google.books_search", genre="mystery"), _call("openlibrary.books_search", genre="mystery")]
    assert keep_grounded_calls(calls, books)[0] == calls
    paint = [Message.user("Create a square painting with blue background, then display it for 30 seconds with 70% "
                          "screen brightness")]
    calls = [_call("painting.create", shape="square", background_color="blue"),
             _call("display.set_screen_brightness", percentage=70, duration=30), _call("painting.display", time=30)]
    assert keep_grounded_calls(calls, paint)[0] == calls
