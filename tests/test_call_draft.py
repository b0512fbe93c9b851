"""Drafts inside a tool call from the tools' schemas and the conversation (raygent.llm_pool.call_draft).

The drafter only guesses; the decoder keeps what the model chooses. So the unit tests check the
guesses themselves (with a tokenizer of one token per character, `<tool_call>` and `</tool_call>`
being one token each, as in Qwen's vocabulary), and the model test checks that the embedded
model writes the same calls with and without these guesses, in fewer decode calls.
"""

from __future__ import annotations

import re

import pytest

from raygent.llm_pool.call_draft import CallDrafter
from raygent.schema import ToolSpec

_SPECIAL = {"<tool_call>": 1_000_001, "</tool_call>": 1_000_002}
_NAMES = {v: k for k, v in _SPECIAL.items()}


def tokenize(text: str) -> list[int]:
    """One token per character; the call tags are one token each."""
    tokens = []
    for piece in re.split(r"(</?tool_call>)", text):
        tokens += [_SPECIAL[piece]] if piece in _SPECIAL else [ord(c) for c in piece]
    return tokens


def detokenize(tokens: list[int]) -> bytes:
    return "".join(_NAMES.get(t) or chr(t) for t in tokens).encode("utf-8")


def text(tokens: list[int]) -> str:
    return detokenize(tokens).decode("utf-8")


FLIGHT = ToolSpec(name="book_flight", parameters={
    "type": "object",
    "properties": {"seat": {"type": "string"}, "origin": {"type": "string"}, "passengers": {"type": "integer"},
                   "destination": {"type": "string"}},
    "required": ["origin", "destination", "passengers"]})
HOTEL = ToolSpec(name="book_hotel", parameters={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = ToolSpec(name="clock", parameters={
    "type": "object", "properties": {"timezone": {"type": "string"}}})
PING = ToolSpec(name="ping")
REQUEST = "Book a flight from San Francisco, CA to Boston for 3 people, and compute 1234 * 5678."


def drafter(tools=(FLIGHT, HOTEL), sources=(REQUEST,)) -> CallDrafter:
    return CallDrafter(tokenize("system prompt"), tokenize, detokenize, list(tools), list(sources),
                       max_draft=200, max_value_draft=200)


def write(d: CallDrafter, reply: str) -> CallDrafter:
    for token in tokenize(reply):
        d.append(token)
    return d


def test_after_the_tag_comes_the_call_opening_and_with_one_tool_its_name_and_first_key():
    assert text(write(drafter(), "<tool_call>").draft()) == '\n{"name": "book_'  # two tools share "book_"
    assert text(write(drafter([HOTEL]), "<tool_call>").draft()) == (
        '\n{"name": "book_hotel", "arguments": {"city": "')


def test_a_name_that_leaves_one_tool_goes_on_to_the_first_required_key():
    # required keys come first in the grammar's order (the schema's order among them): origin
    d = write(drafter(), '<tool_call>\n{"name": "book_f')
    assert text(d.draft()) == 'light", "arguments": {"origin": "'
    # a key the model began is finished, with its opening quote where the value is a string
    d = write(drafter(), '<tool_call>\n{"name": "book_flight", "arguments": {"origin": "SF", "passengers": 3, "de')
    assert text(d.draft()) == 'stination": "'


def test_a_value_goes_on_as_the_request_spells_it_then_the_next_required_key():
    # the grammar's order: the required keys in the schema's order (origin, passengers, destination)
    d = write(drafter(), '<tool_call>\n{"name": "book_flight", "arguments": {"origin": "San')
    # up to the comma, where the request's value most likely ends; then the next required key
    assert text(d.draft()) == ' Francisco", "passengers": '
    # a number: its digits, then the next required key
    d = write(drafter(), '<tool_call>\n{"name": "book_flight", "arguments": {"origin": "SF", "passengers": 3')
    assert text(d.draft()) == ', "destination": "'
    # the last required value: then the end of the call (the optional seat is not guessed)
    d = write(drafter(), '<tool_call>\n{"name": "book_flight", "arguments": {"origin": "SF", "passengers": 3, '
                         '"destination": "Bos')
    assert text(d.draft()) == 'ton"}}\n</tool_call>'


def test_white_space_the_model_drops_is_ignored_when_a_value_is_looked_up():
    calc = ToolSpec(name="calculator", parameters={
        "type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]})
    d = write(drafter([calc]), '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1234*')
    assert text(d.draft()) == '5678"}}\n</tool_call>'


def test_no_guess_where_only_the_model_knows():
    # a value's first character: which part of the request it copies is unknown
    d = write(drafter(), '<tool_call>\n{"name": "book_flight", "arguments": {"origin": "')
    assert d.draft() == []
    # a value the conversation does not hold
    d = write(drafter(), '<tool_call>\n{"name": "book_flight", "arguments": {"origin": "Zqx')
    assert d.draft() == []
    # after a closed call: another call or the end
    d = write(drafter(), '<tool_call>\n{"name": "book_hotel", "arguments": {"city": "Boston"}}\n</tool_call>')
    assert d.draft() == []
    # only optional keys: `{}` or a key, the model's choice
    d = write(drafter([CLOCK, HOTEL]), '<tool_call>\n{"name": "cl')
    assert text(d.draft()) == 'ock", "arguments":'


def test_a_closed_object_is_followed_by_the_closing_tag_and_a_tool_without_parameters_by_empty_arguments():
    d = write(drafter([CLOCK, HOTEL]), '<tool_call>\n{"name": "clock", "arguments": {}')
    assert text(d.draft()) == "}\n</tool_call>"
    d = write(drafter(), '<tool_call>\n{"name": "book_hotel", "arguments": {"city": "Boston"}}')
    assert text(d.draft()) == "\n</tool_call>"
    d = write(drafter([PING, HOTEL]), '<tool_call>\n{"name": "pi')
    assert text(d.draft()) == 'ng", "arguments": {}}\n</tool_call>'


def test_outside_a_call_the_prompt_lookup_drafts_and_limits_hold():
    d = CallDrafter(tokenize("the quick brown fox"), tokenize, detokenize, [HOTEL], [REQUEST])
    write(d, "the qu")
    assert text(d.draft()) == "ick bro"  # the lookup's own policy: a 6-token match, 7 guesses
    d = write(drafter([HOTEL]), "<tool_call>")
    assert text(d.draft(limit=3)) == '\n{"'
    assert d.draft(limit=0) == []


def test_a_value_inside_a_list_copies_the_request_too():
    tool = ToolSpec(name="quotes", parameters={
        "type": "object", "properties": {"cities": {"type": "array", "items": {"type": "string"}}},
        "required": ["cities"]})
    d = write(drafter([tool]), '<tool_call>\n{"name": "quotes", "arguments": {"cities": ["San')
    assert text(d.draft()) == " Francisco"


@pytest.mark.model
async def test_schema_drafts_keep_the_calls_and_save_decode_calls(embedded_llm):
    """An unseen tool with three required keys: the same call with schema drafts as with prompt
    n-grams only, in fewer decode calls (each call costs a decode; drafts ride along)."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import GenerationParams, Message

    models = {}
    for draft_calls in (False, True):
        llm = LlamaCppChatModel(draft_calls=draft_calls)
        llm._llama, llm._template = embedded_llm._llama, embedded_llm._template  # one set of weights
        models[draft_calls] = llm
    request = [Message.user("Book a flight from Lisbon to Oslo for 2 passengers.")]
    params = GenerationParams(max_tokens=96)
    calls, used = {}, {}
    for draft_calls, llm in models.items():
        before = llm.decode_stats()["decode_calls"]
        reply = await llm.chat(request, [FLIGHT, HOTEL], params)
        used[draft_calls] = llm.decode_stats()["decode_calls"] - before
        calls[draft_calls] = [(c.name, c.arguments) for c in reply.tool_calls]
    assert calls[True] == calls[False]
    assert calls[True] == [("book_flight", {"origin": "Lisbon", "destination": "Oslo", "passengers": 2})]
    assert used[True] < used[False], used
