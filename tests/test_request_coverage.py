"""Parts of a request no call answers (raygent.llm_pool.request_coverage), and the further calls
the embedded model is asked for where a reply leaves one (`continue_left_parts`)."""

from __future__ import annotations

import asyncio

from raygent.llm_pool.request_coverage import answers_a_left_part, left_parts
from raygent.schema import Completion, Message, ToolCall, ToolSpec, Usage


def _tool(name: str, **properties: dict) -> ToolSpec:
    return ToolSpec(name=name, description=name, parameters={"type": "object", "properties": properties,
                                                             "required": list(properties)})


TOOLS = [_tool("get_defense_ranking", season={"type": "integer"}, top={"type": "integer"}),
         _tool("array_sort", list={"type": "array", "items": {"type": "number"}}, order={"type": "string"}),
         _tool("calculate_cagr", initial_value={"type": "number"}, final_value={"type": "number"},
               period_in_years={"type": "integer"})]
REQUEST = [Message.user("First, I would like the top 5 defence ranking NBA teams of the 2018 season. Second, I "
                        "have a list of numbers [23, 45, 12, 89] that I need sorted in descending order. Lastly, "
                        "the CAGR of an investment of $5000 that became $15000 in 7 years?")]
RANKING = ToolCall(name="get_defense_ranking", arguments={"season": 2018, "top": 5})


def test_the_tasks_no_call_answers_are_found_with_what_they_name():
    left = left_parts(REQUEST, [RANKING], TOOLS)
    assert [part.tools for part in left] == [("array_sort",), ("calculate_cagr",)]  # "sorted", "CAGR"
    assert left[0].items[:2] == ("23", "45") and "$15000" in left[1].items
    # every task answered: nothing left
    calls = [RANKING, ToolCall(name="array_sort", arguments={"list": [23, 45, 12, 89], "order": "descending"}),
             ToolCall(name="calculate_cagr", arguments={"initial_value": 5000, "final_value": 15000,
                                                        "period_in_years": 7})]
    assert left_parts(REQUEST, calls, TOOLS) == []


def test_a_request_whose_one_task_the_reply_missed_is_not_partly_answered():
    # no part answered: the reply is wrong, not short; asking for more calls would not help
    wrong = ToolCall(name="get_defense_ranking", arguments={"season": 1999, "top": 3})
    assert left_parts([Message.user("Sort [23, 45, 12] in descending order.")], [wrong], TOOLS) == []
    # a part naming a called tool and no other is answered ("the museum" of the museum's tools)
    museum = [_tool("museum.get_hours", museum_name={"type": "string"}),
              _tool("location.get_travel_time", destination={"type": "string"})]
    ask = [Message.user("Find the opening hours of the Louvre Museum, then tell me how long the travel to the "
                        "museum takes.")]
    hours = ToolCall(name="museum.get_hours", arguments={"museum_name": "Louvre Museum"})
    left = left_parts(ask, [hours], museum)
    assert [part.tools for part in left] == [("location.get_travel_time",)]


def test_a_word_that_names_a_called_tool_too_leaves_no_part():
    """"Can you find the pricing for me?" after a hotel room's pricing was called: "pricing" is a
    word of the car rental's and the flight's pricing tools too, so no part is left and no further
    call (`car_rental_pricing.get(rentalCompany="Hilton New York")`) is asked for."""
    tools = [_tool("hotel_room_pricing.get", hotelName={"type": "string"}, nights={"type": "integer"}),
             _tool("car_rental_pricing.get", rentalCompany={"type": "string"}, days={"type": "integer"}),
             _tool("flight_ticket_pricing.get", airline={"type": "string"}, passengers={"type": "integer"})]
    ask = [Message.user("I want to book a suite with queen size bed for 3 nights in Hilton New York. Can you find "
                        "the pricing for me?")]
    hotel = ToolCall(name="hotel_room_pricing.get", arguments={"hotelName": "Hilton New York", "nights": 3})
    assert left_parts(ask, [hotel], tools) == []
    # a word of the uncalled tool's own still names it
    both = [Message.user("Price 3 nights in Hilton New York. Then price a rental car for a week.")]
    assert [p.tools for p in left_parts(both, [hotel], tools)] == [("car_rental_pricing.get",)]


def test_a_further_call_must_call_a_named_tool_or_use_an_item_of_the_left_part():
    left = left_parts(REQUEST, [RANKING], TOOLS)
    assert answers_a_left_part(ToolCall(name="array_sort", arguments={"list": [1], "order": "up"}), left)
    assert answers_a_left_part(ToolCall(name="calculate_cagr", arguments={"initial_value": 5000}), left)
    assert not answers_a_left_part(RANKING, left)
    other = left_parts([Message.user("The top 5 teams of 2018. Also the growth of $5000 to $15000 in 7 years?")],
                       [RANKING], TOOLS)
    assert other[0].tools == ()
    assert answers_a_left_part(ToolCall(name="calculate_cagr", arguments={"initial_value": 5000}), other)
    assert not answers_a_left_part(ToolCall(name="calculate_cagr", arguments={"initial_value": 1}), other)


def test_the_model_is_asked_for_one_call_after_its_own_for_each_left_part():
    """The plumbing of `continue_left_parts`, with the model's replies scripted: the prompt goes on
    from the reply's own calls, the grammar takes only the tools the left parts name, a call that
    answers a part is kept, and the asking stops where a further call answers none."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import GenerationParams

    llm = LlamaCppChatModel()
    asked: list[dict] = []
    replies = [ToolCall(name="array_sort", arguments={"list": [23, 45, 12, 89], "order": "descending"}),
               ToolCall(name="calculate_cagr", arguments={"initial_value": 1, "final_value": 2})]

    async def scripted_chat(messages, tools, p, **kwargs):
        asked.append({"tool_choice": p.tool_choice, "max_tokens": p.max_tokens, **kwargs})
        return Completion(tool_calls=[replies[len(asked) - 1]], usage=Usage(prompt_tokens=10, total_tokens=10),
                          finish_reason="tool_calls")

    llm._chat = scripted_chat
    first = Completion(tool_calls=[RANKING], usage=Usage(prompt_tokens=100, total_tokens=100),
                       finish_reason="tool_calls")
    out = asyncio.run(llm._continue_left_parts(first, REQUEST, TOOLS, GenerationParams()))
    # the CAGR call's values are made up (1, 2): not kept, and no more is asked for
    assert [c.name for c in out.tool_calls] == ["get_defense_ranking", "array_sort"] and len(asked) == 2
    assert out.usage.prompt_tokens == 120  # what the further asks cost
    assert asked[0]["prefix"] == llm.format.render_call(RANKING) + "\n"
    assert asked[1]["prefix"].count("<tool_call>") == 2
    assert asked[0]["tool_choice"] == "required" and asked[0]["max_tokens"] <= 192
    assert asked[0]["one_call"] == frozenset({"get_defense_ranking"})  # the tools the left parts name are open
    assert asked[1]["one_call"] == frozenset({"get_defense_ranking", "array_sort"})
    # switched off, or a streamed/one-call setting: the reply as it was
    llm.continue_left_parts = False
    assert asyncio.run(llm._continue_left_parts(first, REQUEST, TOOLS, GenerationParams())) is first


def test_a_further_call_that_needs_an_earlier_result_is_left_to_the_next_step():
    """"Find out the current year, then calculate how old someone born in 1990 turns": the further
    call `calculator("2023-1990")` makes the year up before `current_datetime` returned it; it is
    not made with the first call (the agent makes the step once the year is in)."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import GenerationParams

    tools = [_tool("current_datetime"), _tool("calculator", expression={"type": "string"})]
    ask = [Message.user("Find out the current year, then calculate how old someone born in 1990 turns this year.")]
    llm = LlamaCppChatModel()

    async def scripted_chat(messages, tools, p, **kwargs):
        return Completion(tool_calls=[ToolCall(name="calculator", arguments={"expression": "2023-1990"})],
                          finish_reason="tool_calls")

    llm._chat = scripted_chat
    first = Completion(tool_calls=[ToolCall(name="current_datetime", arguments={})], finish_reason="tool_calls")
    assert left_parts(ask, first.tool_calls, tools)  # the calculation is a task no call answers yet
    out = asyncio.run(llm._continue_left_parts(first, ask, tools, GenerationParams()))
    assert [c.name for c in out.tool_calls] == ["current_datetime"]


def test_a_further_call_taking_a_piece_of_an_earlier_call_s_text_anticipates_its_result():
    from raygent.llm_pool.request_coverage import anticipates_a_result

    ask = [Message.user("Parse the address 浙江杭州市江干区九堡镇三村村一区, then read the district name aloud.")]
    parse = [ToolCall(name="address_parse", arguments={"address": "浙江杭州市江干区九堡镇三村村一区"})]
    assert anticipates_a_result(ToolCall(name="text_to_speech", arguments={"text": "三村村一区"}), parse, ask)
    # the earlier call's whole value, or a piece the request also writes on its own, is no guess
    museum = [Message.user("The hours of the Louvre Museum, then the travel time to the museum from Louvre Museum")]
    hours = [ToolCall(name="museum.get_hours", arguments={"museum_name": "Louvre Museum"})]
    assert not anticipates_a_result(ToolCall(name="travel", arguments={"destination": "Louvre Museum"}), hours, museum)
    boston = [Message.user("The weather in Boston, MA, and then the time in Boston")]
    weather = [ToolCall(name="weather", arguments={"location": "Boston, MA"})]
    assert not anticipates_a_result(ToolCall(name="time", arguments={"city": "Boston"}), weather, boston)
