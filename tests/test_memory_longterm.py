"""Long-term memory: facts stored as WordLlama vectors in SQLite, recalled by similarity in any session."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raygent.actors.agent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.memory import SQLiteMemoryStore
from raygent.memory.longterm import LongTermMemory, memory_tools

FACTS = ["The user's dog is called Rex.", "The user prefers green tea over coffee.",
         "The user's office is in Lyon, France.", "The project deadline is March 3rd.",
         "The user is allergic to peanuts.", "The user's daughter plays the violin."]
QUERIES = {"what is the name of my dog?": 0, "which drink do I like?": 1, "where do I work?": 2,
           "when is the deadline?": 3, "food allergies": 4, "what instrument does my kid play?": 5}


def call(tool_name: str, **args) -> str:
    return f'<tool_call>\n{json.dumps({"name": tool_name, "arguments": args})}\n</tool_call>'


async def test_recall_ranks_the_right_fact_first(tmp_path):
    ltm = LongTermMemory(tmp_path / "m.sqlite")
    stored = [await ltm.remember(f, session_id="a") for f in FACTS]
    assert [f.id for f in stored] == sorted(f.id for f in stored)
    for query, want in QUERIES.items():
        hits = await ltm.recall(query, k=3)
        assert hits[0].fact.text == FACTS[want], query
        assert hits[0].score > hits[1].score and -1.0 <= hits[-1].score <= 1.0
    again = await ltm.remember("  The user's dog is called Rex. ")  # a duplicate is not stored twice
    assert again.id == stored[0].id and len(await ltm.list_facts()) == len(FACTS)
    assert await ltm.forget(stored[0].id) is True and await ltm.forget(stored[0].id) is False
    assert (await ltm.recall("what is the name of my dog?", k=1))[0].fact.text != FACTS[0]
    other = LongTermMemory(tmp_path / "m.sqlite", namespace="someone-else")  # namespaces never mix
    assert await other.recall("dog") == [] and len(await other.list_facts()) == 0
    with pytest.raises(ValueError, match="non-empty"):
        await ltm.remember("  ")
    await ltm.close()


async def test_changing_the_embedder_needs_a_reindex(tmp_path):
    ltm = LongTermMemory(tmp_path / "m.sqlite")
    await ltm.remember(FACTS[0])
    # any callable texts -> (n, d) array is an embedder: here a character-count one of another size
    counts = lambda texts: np.array([[t.count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], float)
    swapped = LongTermMemory(tmp_path / "m.sqlite", embed=counts)
    with pytest.raises(ValueError, match="call reindex"):
        await swapped.recall("dog")
    assert await swapped.reindex() == 1
    assert (await swapped.recall("dog"))[0].fact.text == FACTS[0]


async def test_fact_remembered_in_session_a_is_recalled_in_session_b(tmp_path):
    path = tmp_path / "m.sqlite"
    store = SQLiteMemoryStore(path)
    ltm_a = LongTermMemory(path)
    for f in FACTS[1:]:
        await ltm_a.remember(f, session_id="earlier")
    llm_a = ScriptedChatModel([call("remember", fact="The user's dog is called Rex."), "Noted: your dog is Rex."])
    agent_a = Agent(llm=llm_a, tools=memory_tools(ltm_a, "session-a"), memory=store, session_id="session-a")
    assert (await agent_a.run("Please remember that my dog is called Rex.")).tool_calls[0].error is None

    # session B: another agent, another session, another LongTermMemory object on the same file
    ltm_b = LongTermMemory(path)
    llm_b = ScriptedChatModel([call("recall", query="the name of the user's dog"), "Your dog is called Rex."])
    agent_b = Agent(llm=llm_b, tools=memory_tools(ltm_b, "session-b"), memory=store, session_id="session-b")
    result = await agent_b.run("What's my dog's name?")
    facts = result.tool_calls[0].result["facts"]
    assert facts[0]["text"] == "The user's dog is called Rex." and facts[0]["score"] > facts[1]["score"]
    seen = llm_b.requests[1]["messages"]
    assert "Rex" in seen[-1].content and not any("Rex" in (m.content or "") for m in seen[:-1])  # not via history
    assert (await ltm_b.list_facts(limit=1))[0].session_id == "session-a"
    assert [m.role for m in await store.load("session-b")] == ["user", "assistant", "tool", "assistant"]


@pytest.mark.ray
async def test_long_term_memory_as_an_actor(ray_cluster, tmp_path):
    from raygent import runtime

    ltm = runtime.deploy(LongTermMemory, remote=True, init_kwargs={"path": str(tmp_path / "m.sqlite")})
    try:
        for f in FACTS:
            await ltm.remember(f, session_id="x")
        tools = memory_tools(ltm)
        llm = ScriptedChatModel([call("recall", query="what instrument does my kid play?"), "The violin."])
        result = await Agent(llm=llm, tools=tools).run("What does my daughter play?")
        assert result.tool_calls[0].result["facts"][0]["text"] == FACTS[5]
    finally:
        runtime.kill(ltm)
