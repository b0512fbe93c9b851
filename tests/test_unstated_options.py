"""Optional text arguments the model made up are left out (raygent.llm_pool.unstated_options); the
user's own values, dates, enum members, defaults and required arguments stay."""

from __future__ import annotations

from raygent.llm_pool.unstated_options import drop_unstated_options, stated_somewhere
from raygent.schema import Message, ToolCall, ToolSpec

BOOKS = ToolSpec(name="library.search_books", description="Search books", parameters={
    "type": "object", "required": ["location", "genre"],
    "properties": {"location": {"type": "string"}, "genre": {"type": "string"},
                   "title": {"type": "string", "description": "Title of the book"},
                   "format": {"type": "string", "enum": ["paperback", "hardcover"]},
                   "sort": {"type": "string", "default": "relevance"},
                   "published_after": {"type": "string", "description": "YYYY-MM-DD"},
                   "max_results": {"type": "integer"}}})
ASK = [Message.system("You help readers in New York."),
       Message.user("Find historical fiction books at the library, published after March 3rd 2001.")]


def test_a_made_up_optional_text_is_left_out_with_a_note():
    call = ToolCall(name="library.search_books", arguments={
        "location": "New York", "genre": "historical fiction", "title": "The Great Gatsby"})
    calls, notes = drop_unstated_options([call], [BOOKS], ASK)
    assert calls[0].arguments == {"location": "New York", "genre": "historical fiction"}
    assert notes == ["left title='The Great Gatsby' out of the call to 'library.search_books': an optional value "
                     "found nowhere in the conversation"]
    null = call.model_copy(update={"arguments": {"location": "New York", "genre": "fiction", "title": "null"}})
    assert "title" not in drop_unstated_options([null], [BOOKS], ASK)[0][0].arguments


def test_stated_dates_constants_numbers_and_required_values_stay():
    call = ToolCall(name="library.search_books", arguments={
        "location": "Boston", "genre": "poetry",  # required: made up or not, the filter of whole calls judges them
        "format": "hardcover", "sort": "relevance", "published_after": "2001-03-03", "max_results": 7,
        "title": "Historical Fiction Classics"})  # its words are the user's
    assert drop_unstated_options([call], [BOOKS], ASK) == ([call], [])
    unknown = ToolCall(name="not_offered", arguments={"title": "The Great Gatsby"})
    assert drop_unstated_options([unknown], [BOOKS], ASK) == ([unknown], [])


def test_a_value_counts_as_stated_by_a_word_stem_or_a_number():
    text = "what is the shortest path from paris to rome by public transportation? in 24 hour format"
    assert stated_somewhere("transit", text)  # "tran" of "transportation"
    assert stated_somewhere("24h", text)
    assert not stated_somewhere("Level 1", "the rewards for fortnite on playstation")


def test_a_list_keeps_only_its_stated_items():
    members = ["Wi-Fi", "Reading Room", "Fiction", "Children Section", "Cafe"]
    library = ToolSpec(name="find_library", description="Find a library", parameters={
        "type": "object", "required": ["location", "facilities"],
        "properties": {"location": {"type": "string"},
                       "facilities": {"type": "array", "items": {"type": "string", "enum": members}}}})
    ask = [Message.user("Locate the nearest public library in Boston with English fiction section and free Wi-Fi.")]
    call = ToolCall(name="find_library", arguments={"location": "Boston", "facilities": members})
    calls, notes = drop_unstated_options([call], [library], ask)
    # an enum member stays by one word of it ("section"), a free text needs every word
    assert calls[0].arguments["facilities"] == ["Wi-Fi", "Fiction", "Children Section"] and len(notes) == 1
    free = library.model_copy(deep=True)
    del free.parameters["properties"]["facilities"]["items"]["enum"]
    assert drop_unstated_options([call], [free], ask)[0][0].arguments["facilities"] == ["Wi-Fi", "Fiction"]
    none_stated = call.model_copy(update={"arguments": {"location": "Boston", "facilities": ["Cafe", "Lounge"]}})
    assert drop_unstated_options([none_stated], [free], ask) == ([none_stated], [])  # nothing to keep: left
