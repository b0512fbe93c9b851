"""Speculative greedy decoding with drafts looked up in the prompt (raygent.llm_pool.prompt_lookup).

The lookup's guesses must follow the latest earlier match of the sequence's tail; the decoder
must give the same tool calls with and without guesses while making fewer decode calls.
"""

from __future__ import annotations

import pytest

from raygent.llm_pool.prompt_lookup import PromptLookup


def test_draft_continues_the_latest_longest_match():
    #                 0  1  2  3  4  5  6  7  8  9
    lookup = PromptLookup([1, 2, 3, 4, 9, 1, 2, 3, 5, 6], min_match=2, max_draft=12)
    for token in (7, 1, 2):
        lookup.append(token)
    # the tail (1, 2) last occurred at 5-6 and was followed by 3, 5, 6 (a 2-token match: 3 guesses)
    assert lookup.draft() == [3, 5, 6]
    lookup.append(3)
    # the tail (1, 2, 3) matches at 5-7 (latest): 4 guesses from position 8
    assert lookup.draft() == [5, 6, 7, 1]


def test_draft_needs_a_long_enough_match_and_respects_limits():
    lookup = PromptLookup([5, 6, 7, 8, 9, 10, 11, 12], min_match=2, max_draft=3)
    lookup.append(42)
    assert lookup.draft() == []  # 42 never occurred: nothing to guess
    lookup.append(5)
    assert lookup.draft() == []  # a 1-token match is too weak a signal
    lookup.append(6)
    assert lookup.draft() == [7, 8, 9]  # capped at max_draft
    assert lookup.draft(limit=1) == [7]  # and at what the reply may still generate
    assert lookup.draft(limit=0) == []
    with pytest.raises(ValueError, match="min_match"):
        PromptLookup([1, 2], min_match=0)


@pytest.mark.model
async def test_speculation_keeps_the_calls_and_saves_decode_calls(embedded_llm):
    """The same tool calls and answer with guesses on and off; at least a third fewer decode calls
    for a tool call that copies the user's value."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import GenerationParams, Message
    from raygent.toolhub.builtin import default_tools

    plain = LlamaCppChatModel(speculate=False)
    plain._llama, plain._template = embedded_llm._llama, embedded_llm._template  # one set of weights
    fast = LlamaCppChatModel(speculate=True)
    fast._llama, fast._template = embedded_llm._llama, embedded_llm._template
    specs = [t.spec for t in default_tools()]
    params = GenerationParams(max_tokens=96)
    request = [Message.user("Parse this address: 上海市浦东新区张江镇祖冲之路100号")]

    before = fast.decode_stats()
    a = await plain.chat(request, specs, params)
    b = await fast.chat(request, specs, params)
    after = fast.decode_stats()
    assert [(c.name, c.arguments) for c in b.tool_calls] == [(c.name, c.arguments) for c in a.tool_calls]
    assert b.tool_calls and b.tool_calls[0].name == "address_parse"
    assert "祖冲之路100号" in b.tool_calls[0].arguments["address"]
    generated = after["generated"] - before["generated"]
    calls = after["decode_calls"] - before["decode_calls"]
    assert after["drafted"] > before["drafted"]
    assert calls <= (2 * generated) // 3, (calls, generated)

    # the step after the real tool's result: the same reply either way
    from raygent.toolhub.registry import ToolRegistry

    call = b.tool_calls[0]
    result = await ToolRegistry(default_tools()).call(call.name, call.arguments, call.id)
    follow = [*request, Message.assistant(b.text, tool_calls=b.tool_calls),
              Message(role="tool", content=result.content_for_model(), tool_call_id=call.id, name=call.name)]
    a2 = await plain.chat(follow, specs, params)
    b2 = await fast.chat(follow, specs, params)
    assert [(c.name, c.arguments) for c in b2.tool_calls] == [(c.name, c.arguments) for c in a2.tool_calls]
    assert not b2.tool_calls and "浦东新区" in b2.text, b2.raw
