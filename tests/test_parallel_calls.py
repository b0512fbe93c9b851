"""The missing call of a grid of parallel calls (raygent.llm_pool.parallel_calls): added where the
request lists both arguments' values together, left alone where it does not."""

from __future__ import annotations

from raygent.llm_pool.parallel_calls import complete_grids, listed_together
from raygent.schema import Message, ToolCall


def _wins(team: str, season: int) -> ToolCall:
    return ToolCall(name="calculate_winning_percentage", arguments={"team": team, "season": season})


def test_the_one_missing_combination_of_two_listed_arguments_is_added():
    ask = [Message.user("Find the winning percentage of Lakers and Bulls in NBA seasons 2018 and 2020.")]
    calls = [_wins("Lakers", 2018), _wins("Bulls", 2020), _wins("Lakers", 2020)]
    out, notes = complete_grids(calls, ask)
    assert [(c.arguments["team"], c.arguments["season"]) for c in out] == [
        ("Lakers", 2018), ("Bulls", 2020), ("Lakers", 2020), ("Bulls", 2018)]
    assert out[3].id not in {c.id for c in calls}  # a call of its own
    assert len(notes) == 1 and "Bulls" in notes[0]
    # at most max_calls calls
    assert complete_grids(calls, ask, max_calls=3) == (calls, [])


def test_values_not_listed_together_or_a_full_grid_are_left_alone():
    # a payout of 5 then 6 million, shares of 2 then 2.5 million: scenarios, not a grid
    dividend = [Message.user("We paid 5000000 with 2000000 shares. What if we paid 6000000 with the same shares? "
                             "And what if we also had 2500000 shares?")]
    calls = [ToolCall(name="dividend", arguments={"payout": p, "shares": s})
             for p, s in ((5000000, 2000000), (6000000, 2000000), (6000000, 2500000))]
    assert complete_grids(calls, dividend) == (calls, [])
    ask = [Message.user("Find the winning percentage of Lakers and Bulls in NBA seasons 2018 and 2020.")]
    full = [_wins(t, s) for t in ("Lakers", "Bulls") for s in (2018, 2020)]
    assert complete_grids(full, ask) == (full, [])
    # other arguments differ: not one grid
    mixed = [_wins("Lakers", 2018), _wins("Bulls", 2020),
             ToolCall(name="calculate_winning_percentage", arguments={"team": "Lakers", "season": 2020, "x": 1})]
    assert complete_grids(mixed, ask) == (mixed, [])


def test_listed_together_reads_commas_and_or_and_one_word_between():
    assert listed_together(["lakers", "bulls"], "lakers and bulls")
    assert listed_together([2018, 2020], "in seasons 2020 and 2018")
    assert listed_together(["a1", "b2", "c3"], "a1, b2, and c3")
    assert not listed_together(["lakers", "bulls"], "lakers won. later the bulls lost")
    assert not listed_together(["lakers", "celtics"], "lakers and bulls")


def test_a_call_another_call_of_its_tool_holds_whole_is_dropped():
    from raygent.llm_pool.parallel_calls import drop_subsumed_calls

    email = [ToolCall(name="send_email", arguments={"to": "andy@gorilla.ai", "subject": "Forecast"}),
             ToolCall(name="send_email", arguments={"to": "andy@gorilla.ai", "subject": "Forecast",
                                                    "body": "where is the forecast?"})]
    ask = [Message.user("Draft an email to andy@gorilla.ai with the subject 'Forecast' and the message "
                        "'where is the forecast?'")]
    kept, notes = drop_subsumed_calls(email, ask)
    assert kept == email[1:] and len(notes) == 1
    # asked for again with a change, or the added value listed with another: both calls stay
    again = [Message.user("Fetch the DNA sequence XYZ123, then fetch the same sequence in 'genbank' format.")]
    dna = [ToolCall(name="fetch_dna", arguments={"id": "XYZ123"}),
           ToolCall(name="fetch_dna", arguments={"id": "XYZ123", "format": "genbank"})]
    assert drop_subsumed_calls(dna, again) == (dna, [])
    listed = [Message.user("The resistance of a 5m wire with resistivity of copper and aluminum")]
    wires = [ToolCall(name="resistance", arguments={"length": 5}),
             ToolCall(name="resistance", arguments={"length": 5, "resistivity": "aluminum"})]
    assert drop_subsumed_calls(wires, listed) == (wires, [])
    other_tool = [ToolCall(name="a", arguments={"x": 1}), ToolCall(name="b", arguments={"x": 1, "y": 2})]
    assert drop_subsumed_calls(other_tool, [Message.user("x is 1, y is 2")]) == (other_tool, [])


def _tool(name: str, **properties: dict) -> "ToolSpec":
    from raygent.schema import ToolSpec

    return ToolSpec(name=name, description=name, parameters={"type": "object", "properties": properties,
                                                             "required": list(properties)})


def test_the_items_of_a_list_the_reply_left_out_get_their_own_call():
    from raygent.llm_pool.parallel_calls import complete_lists

    search = _tool("search_cases", location={"type": "string"}, query={"type": "string"}, year={"type": "integer"})
    ask = [Message.user("Find cases about 'Theft' from court records in 'New York' and from 'San Francisco', "
                        "filed in 2021.")]
    calls = [ToolCall(name="search_cases", arguments={"location": "New York", "query": "Theft", "year": 2021})]
    out, notes = complete_lists(calls, [search], ask, max_calls=4)
    assert [c.arguments for c in out] == [calls[0].arguments, {**calls[0].arguments, "location": "San Francisco"}]
    assert len(notes) == 1 and "'San Francisco' after 'New York'" in notes[0]
    # a name after a name, joined by "and ... in"; a state code stays with its city
    weather = _tool("get_current_weather", location={"type": "string"})
    ask = [Message.user("Could you tell me the weather in Boston, MA and also in San Francisco in fahr?")]
    out, _ = complete_lists([ToolCall(name="get_current_weather", arguments={"location": "Boston, MA"})],
                            [weather], ask, max_calls=4)
    assert [c.arguments["location"] for c in out] == ["Boston, MA", "San Francisco"]
    # a member of the parameter's enum after another; numbers after a number, up to max_calls
    events = _tool("find_events", event_type={"type": "string", "enum": ["Music", "Theater"]}, city={"type": "string"})
    ask = [Message.user("Find any music or theater events happening in San Diego, CA")]
    out, _ = complete_lists([ToolCall(name="find_events", arguments={"event_type": "Music", "city": "San Diego, CA"})],
                            [events], ask, max_calls=4)
    assert [c.arguments["event_type"] for c in out] == ["Music", "Theater"]
    loan = _tool("mortgage", loan_term={"type": "integer"}, amount={"type": "number"})
    ask = [Message.user("The monthly payment on 400000 for loan terms of 15, 20 and 30 years?")]
    out, _ = complete_lists([ToolCall(name="mortgage", arguments={"loan_term": 15, "amount": 400000})],
                            [loan], ask, max_calls=2)
    assert [c.arguments["loan_term"] for c in out] == [15, 20]


def test_a_place_and_its_country_a_used_item_or_a_parameter_taking_several_add_nothing():
    from raygent.llm_pool.parallel_calls import complete_lists

    hotel = _tool("find_hotel", location={"type": "string"})
    one = [ToolCall(name="find_hotel", arguments={"location": "Rome"})]
    alone = [Message.user("Find hotels in Rome, Italy. I'm travelling alone.")]
    assert complete_lists(one, [hotel], alone, 4) == (one, [])
    # the second item is already called, in its own words
    two = [ToolCall(name="find_hotel", arguments={"location": "Paris"}),
           ToolCall(name="find_hotel", arguments={"location": "Los Angeles"})]
    assert complete_lists(two, [hotel], [Message.user("Hotels in Paris and Los Angeles, CA")], 4) == (two, [])
    # a sentence that begins after the name is not another item; nor a number inside "$10,000"
    assert complete_lists(one, [hotel], [Message.user("A hotel in Rome, and I'd like a pool")], 4) == (one, [])
    interest = _tool("interest", years={"type": "integer"})
    calls = [ToolCall(name="interest", arguments={"years": 10})]
    assert complete_lists(calls, [interest], [Message.user("Interest on $10,000 at 5% for 10 years")], 4) == (calls, [])
    # a parameter whose description takes a list keeps one call
    cities = _tool("weather", location={"type": "string", "description": "comma-separated list of cities"})
    calls = [ToolCall(name="weather", arguments={"location": "Paris"})]
    assert complete_lists(calls, [cities], [Message.user("Weather in Paris and Rome")], 4) == (calls, [])


def test_the_embedded_model_adds_the_listed_items_its_reply_left_out():
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import Usage

    weather = _tool("get_weather", city={"type": "string"})
    raw = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Boston"}}\n</tool_call>'
    ask = [Message.user("What is the weather in Boston and in Tokyo?")]
    several = LlamaCppChatModel(max_calls=4)._finish(raw, "stop", Usage(), [weather], "auto", ask)
    assert [c.arguments["city"] for c in several.tool_calls] == ["Boston", "Tokyo"]
    assert len({c.id for c in several.tool_calls}) == 2
    one = LlamaCppChatModel(max_calls=1)._finish(raw, "stop", Usage(), [weather], "auto", ask)
    assert [c.arguments["city"] for c in one.tool_calls] == ["Boston"]  # one call allowed: nothing added


def test_an_item_called_in_an_earlier_step_of_the_request_is_not_called_again():
    from raygent.llm_pool.parallel_calls import complete_lists

    weather = _tool("get_weather", city={"type": "string"})
    tokyo = ToolCall(name="get_weather", arguments={"city": "Tokyo"})
    history = [Message.user("What is the weather in Boston and in Tokyo?"), Message.assistant(tool_calls=[tokyo]),
               Message(role="tool", name="get_weather", tool_call_id=tokyo.id, content="rain")]
    boston = [ToolCall(name="get_weather", arguments={"city": "Boston"})]
    assert complete_lists(boston, [weather], history, 4) == (boston, [])


def test_a_call_whose_one_differing_text_is_a_piece_of_another_s_is_dropped():
    from raygent.llm_pool.parallel_calls import drop_fragment_calls

    def run(command: str) -> ToolCall:
        return ToolCall(name="cmd_controller.execute", arguments={"command": command})

    ask = [Message.user("start Docker on window using docker start.")]
    calls = [run("start"), run("docker start"), run("docker")]
    kept, notes = drop_fragment_calls(calls, ask)
    assert kept == [calls[1]] and len(notes) == 2 and "a piece of the call" in notes[0]
    # listed as an item of its own; or differing in more than the one text: both stay
    pizza = [ToolCall(name="search", arguments={"q": "pizza"}), ToolCall(name="search", arguments={"q": "pizza hut"})]
    assert drop_fragment_calls(pizza, [Message.user("search for pizza and pizza hut")]) == (pizza, [])
    two = [ToolCall(name="route", arguments={"to": "San Jose", "avoid": "tolls"}),
           ToolCall(name="route", arguments={"to": "San Jose airport", "avoid": "highways"})]
    assert drop_fragment_calls(two, [Message.user("routes")]) == (two, [])
