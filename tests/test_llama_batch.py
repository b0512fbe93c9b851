"""Continuous batching on the embedded model (`LlamaCppChatModel(parallel=N)`, raygent.llm_pool.llama_batch)."""

from __future__ import annotations

import asyncio

import pytest

from raygent import Agent
from raygent.schema import GenerationParams, Message
from raygent.toolhub.builtin import default_tools

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def batched_llm():
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    llm = LlamaCppChatModel(parallel=4, n_ctx=2048)
    llm.load()
    yield llm
    llm._engine.close()


async def test_concurrent_agents_decode_together_and_share_the_prompt_prefix(batched_llm):
    questions = {"What is 17*23?": 391, "What is 99*99?": 9801, "What is 2**10?": 1024, "What is 365*24?": 8760}
    before = dict(batched_llm._engine.generating_per_decode)
    results = await asyncio.gather(*(Agent(llm=batched_llm, tools=default_tools()).run(q) for q in questions))
    after = batched_llm._engine.generating_per_decode
    shared = {k: after[k] - before.get(k, 0) for k in after if k >= 2 and after[k] > before.get(k, 0)}
    # the runs really decoded together: many llama_decode calls carried a token of two or more
    # sequences (a one-at-a-time engine with prefix reuse gives the same answers and cache shares,
    # and no such call)
    assert sum(shared.values()) >= 10 and max(shared) >= 3, (before, dict(after))
    for (question, value), result in zip(questions.items(), results):
        assert [c.name for c in result.tool_calls] == ["calculator"], question
        assert result.tool_calls[0].result["result"] == value and str(value) in result.answer.replace(",", "")
    # the system prompt, tools and exemplars (~750 tokens) were evaluated once (by the conversation
    # admitted first), then copied between sequences: the other runs' two steps together evaluated
    # a small part of what they prompted
    shares = sorted(r.usage.cached_prompt_tokens / r.usage.prompt_tokens for r in results)
    assert shares[0] < 0.8 and all(share > 0.8 for share in shares[1:]), shares


async def test_a_conversation_keeps_its_slot_for_the_next_step(batched_llm):
    tools = [t.spec for t in default_tools()]
    first = await batched_llm.chat([Message.user("What is 120/8?")], tools)
    call = first.tool_calls[0]
    follow = [Message.user("What is 120/8?"), Message.assistant(tool_calls=[call]),
              Message(role="tool", tool_call_id=call.id, name=call.name, content='{"result": 15}')]
    second = await batched_llm.chat(follow, tools)
    # only the tool turn and the new generation prompt are evaluated
    assert second.usage.prompt_tokens - second.usage.cached_prompt_tokens < 40
    assert "15" in second.text


async def test_streaming_through_the_engine_matches_the_answer(batched_llm):
    agent = Agent(llm=batched_llm, tools=default_tools())
    events = [e async for e in agent.stream("What is 23*47+12?")]
    assert events[-1].type == "done" and "1093" in events[-1].result.answer
    streamed = "".join(e.text for e in events if e.type == "answer_delta")
    assert streamed.strip() == events[-1].result.answer


async def test_sampled_requests_sample_and_keep_to_the_grammar(batched_llm):
    """temperature > 0 samples (different seeds give different lines; a token evaluated alone or in
    a batch differs in the last bits, so equal seeds are not promised equal text); under a grammar
    every sampled token is one the grammar allows, so a required call is a valid call."""
    question = [Message.user("Write a short line about the sea.")]
    lines = await asyncio.gather(*(batched_llm.chat(question, None, GenerationParams(temperature=1.0, seed=seed,
                                                                                     max_tokens=12))
                                   for seed in (1, 2, 3)))
    assert all(line.text for line in lines) and len({line.text for line in lines}) >= 2
    tools = [t.spec for t in default_tools()]
    sampled = await batched_llm.chat([Message.user("What is 6 times 7?")], tools,
                                     GenerationParams(temperature=1.0, seed=5, tool_choice="calculator"))
    assert sampled.tool_calls[0].name == "calculator" and sampled.parse_errors == []


async def test_oversized_request_is_a_clear_error_and_the_engine_keeps_serving(batched_llm):
    with pytest.raises(ValueError, match="exceeds the context window n_ctx=2048"):
        await batched_llm.chat([Message.user("word " * 3000)], None)
    ok = await batched_llm.chat([Message.user("Say OK.")], None, GenerationParams(max_tokens=4))
    assert ok.text


def test_parallel_must_be_positive():
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    with pytest.raises(ValueError, match="parallel must be at least 1"):
        LlamaCppChatModel(parallel=0)


async def test_a_failed_decode_fails_the_requests_in_flight_not_the_engine(batched_llm):
    """What the user sees when llama.cpp refuses a batch (e.g. a full KV cache): a RuntimeError that
    says so for the requests in flight; the next request is served as usual."""
    engine = batched_llm._engine
    real = engine._lib

    class RefuseOnce:
        refused = False

        def __getattr__(self, name):
            return getattr(real, name)

        def llama_decode(self, ctx, batch):
            if not RefuseOnce.refused:
                RefuseOnce.refused = True
                return 1  # llama.cpp: no KV slot for the batch
            return real.llama_decode(ctx, batch)

    engine._lib = RefuseOnce()
    try:
        with pytest.raises(RuntimeError, match="llama_decode failed .*KV cache is full"):
            await batched_llm.chat([Message.user("Say OK.")], None, GenerationParams(max_tokens=4))
    finally:
        engine._lib = real
    ok = await batched_llm.chat([Message.user("Say OK.")], None, GenerationParams(max_tokens=4))
    assert ok.text
