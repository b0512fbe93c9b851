"""The agent with memory: every message stored as produced, resume by session id, token budget
with LLM summaries, tool results truncated with a pointer to the stored row."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from raygent.actors.agent import Agent
from raygent.llm_pool.base import ChatModel
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.memory import SQLiteMemoryStore
from raygent.memory.history import MEMORY_KEY, SUMMARY_PREFIX, HistoryBudget, choose_cut
from raygent.memory.session import INTERRUPTED, SessionMemory
from raygent.memory.tokens import fallback_counter
from raygent.schema import Completion, GenerationParams, Message, ToolCall, ToolSpec
from raygent.toolhub.base import tool


@tool
def lookup(key: str) -> dict:
    """Look a key up in the inventory."""
    return {"key": key, "count": len(key)}


@tool
def dump_log(lines: int) -> str:
    """Return the last lines of the server log."""
    return "\n".join(f"line {i}: " + "x" * 40 for i in range(lines))


def call(name: str, **args) -> str:
    import json

    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


async def test_messages_are_stored_as_produced_and_a_new_agent_resumes(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    llm = ScriptedChatModel([call("lookup", key="apples"), "There are 6 apples.", "You asked about apples."])
    agent = Agent(llm=llm, tools=[lookup], memory=store, session_id="shop-1")
    r1 = await agent.run("How many apples?")
    assert r1.answer == "There are 6 apples."
    stored = await store.load("shop-1")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1].tool_calls[0].name == "lookup" and stored[2].tool_call_id == stored[1].tool_calls[0].id
    assert stored == agent.history

    # a different agent object (as after a restart) with the same session id continues it
    llm2 = ScriptedChatModel(["You asked about apples."])
    resumed = Agent(llm=llm2, tools=[lookup], memory=SQLiteMemoryStore(tmp_path / "m.sqlite"), session_id="shop-1")
    r2 = await resumed.run("What did I ask before?")
    assert r2.answer == "You asked about apples."
    seen = llm2.requests[0]["messages"]
    assert [m.content for m in seen[1:5]] == [m.content for m in stored]  # the whole earlier turn, after the system
    assert seen[-1].content == "What did I ask before?"
    assert len(await store.load("shop-1")) == 6

    # reset starts a new session; the old one is kept
    assert await resumed.get_session_id() == "shop-1"
    resumed.reset()
    assert await resumed.get_session_id() != "shop-1" and len(await store.load("shop-1")) == 6
    assert await Agent(llm=llm2).get_session_id() is None


async def test_open_tool_call_from_a_crash_is_closed_on_resume(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    dangling = ToolCall(name="lookup", arguments={"key": "pears"})
    await store.append_many("s", [Message.user("pears?"), Message.assistant(tool_calls=[dangling])])
    llm = ScriptedChatModel(["Sorry, the lookup was interrupted."])
    agent = Agent(llm=llm, tools=[lookup], memory=store, session_id="s")
    await agent.run("Did it work?")
    msgs = await store.load("s")
    assert msgs[2].role == "tool" and msgs[2].tool_call_id == dangling.id and msgs[2].content == INTERRUPTED
    assert msgs[2].metadata[MEMORY_KEY] == "interrupted" and msgs[3].content == "Did it work?"
    assert [m.role for m in llm.requests[0]["messages"]] == ["system", "user", "assistant", "tool", "user"]


async def test_concurrent_agents_on_one_store_see_only_their_session(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    n = 12
    llms = [ScriptedChatModel([call("lookup", key=f"k{i}"), f"answer {i}", f"again {i}"]) for i in range(n)]
    agents = [Agent(llm=llms[i], tools=[lookup], memory=store, session_id=f"user-{i}") for i in range(n)]
    await asyncio.gather(*(a.run(f"question from <{i}>") for i, a in enumerate(agents)))
    await asyncio.gather(*(a.run(f"second question from <{i}>") for i, a in enumerate(agents)))
    for i in range(n):
        texts = [m.content or "" for m in await store.load(f"user-{i}")]
        assert texts[0] == f"question from <{i}>" and texts[-1] == f"again {i}" and len(texts) == 6
        for req in llms[i].requests:
            contents = " ".join(m.content or "" for m in req["messages"])
            assert all(f"from <{j}>" not in contents for j in range(n) if j != i)


class _SummarisingModel(ChatModel):
    """Answers every turn with a fixed text; asked for a summary, it lists the user lines it was given
    (so the test can see exactly which turns were summarised)."""

    model_name = "summariser"

    def __init__(self) -> None:
        self.requests: list[list[Message]] = []

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        self.requests.append(list(messages))
        if messages[0].content and messages[0].content.startswith("You condense conversations"):
            body = messages[-1].content or ""
            facts = [ln.removeprefix("user: ") for ln in body.splitlines() if ln.startswith("user: ")]
            earlier = [ln.removeprefix("(earlier summary) ") for ln in body.splitlines()
                       if ln.startswith("(earlier summary)")]
            return Completion(text="; ".join(earlier + facts))
        n = sum(1 for m in messages if m.role == "user")
        return Completion(text=f"Noted, turn {n} " + "ok " * 20)


async def test_budget_summarises_old_turns_and_keeps_the_full_history(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    llm = _SummarisingModel()
    memory = SessionMemory(store, "long", llm=llm, budget=HistoryBudget(max_tokens=220, keep_recent_tokens=100))
    agent = Agent(llm=llm, memory=memory)
    for i in range(8):
        await agent.run(f"fact {i}: the code for door {i} is {1000 + i}")
    stored = await store.load("long")
    summaries = [m for m in stored if m.metadata.get(MEMORY_KEY) == "summary"]
    assert summaries, "the budget was exceeded, so older turns must have been summarised"
    assert len([m for m in stored if m.role == "user"]) == 8  # nothing deleted from the store
    last = summaries[-1]
    assert last.content.startswith(SUMMARY_PREFIX) and "door 0 is 1000" in last.content  # folded forward
    # the last answering request: system, the summary, then only recent turns verbatim
    final_req = [r for r in llm.requests if not (r[0].content or "").startswith("You condense")][-1]
    assert final_req[1].content == last.content
    assert "door 0 is 1000" not in " ".join(m.content or "" for m in final_req[2:])
    assert final_req[-1].content == "fact 7: the code for door 7 is 1007"
    counter = fallback_counter()  # the counter memory used (the test model has no tokenizer)
    assert sum(counter([m]) for m in final_req[1:]) <= 220
    # a resumed session starts from the stored summary; its next summary folds the old one in
    llm2 = _SummarisingModel()
    resumed = Agent(llm=llm2, memory=SessionMemory(store, "long", llm=llm2, budget=HistoryBudget(max_tokens=220,
                                                                                                  keep_recent_tokens=100)))
    await resumed.run("what was the code for door 0?")
    answer_req = [r for r in llm2.requests if not (r[0].content or "").startswith("You condense")][0]
    assert answer_req[1].metadata[MEMORY_KEY] == "summary" and "door 0 is 1000" in answer_req[1].content
    assert answer_req[-1].content == "what was the code for door 0?"


async def test_summary_failure_falls_back_to_dropping_old_turns(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    # the summary request gets an empty reply, so summarising fails; the turn still completes
    llm = ScriptedChatModel(["first answer " + "x " * 60, "second answer"])
    memory = SessionMemory(store, "s", llm=llm, budget=HistoryBudget(max_tokens=60, keep_recent_tokens=40))
    agent = Agent(llm=llm, memory=memory)
    await agent.run("one " * 10)
    llm.replies.insert(1, Completion(text=""))  # the summary request gets an empty reply
    r = await agent.run("two")
    assert r.answer == "second answer" and "summary failed" in (memory.last_error or "")
    assert [m.content for m in llm.requests[-1]["messages"][1:]] == ["two"]
    assert len(await store.load("s")) == 4


async def test_long_tool_results_are_truncated_in_the_prompt_with_a_pointer(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    llm = ScriptedChatModel([call("dump_log", lines=300), "The log has 300 lines."])
    memory = SessionMemory(store, "logs", llm=llm, budget=HistoryBudget(max_tokens=100_000, tool_result_chars=500))
    agent = Agent(llm=llm, tools=[dump_log], memory=memory)
    await agent.run("show me the log")
    stored = await store.load("logs")
    full = stored[2].content
    assert stored[2].role == "tool" and len(full) > 10_000 and "line 299" in full  # the row has it all
    seen = llm.requests[1]["messages"][-1]
    assert seen.role == "tool" and len(seen.content) < 700
    assert seen.content.startswith(full[:500]) and "full result at memory://logs/2" in seen.content
    assert (await memory.resolve("memory://logs/2")).content == full


def test_cut_falls_on_turn_boundaries():
    roles = ["user", "assistant", "tool", "assistant", "user", "assistant", "user", "assistant"]
    tokens = [10, 10, 50, 10, 10, 10, 10, 10]
    assert choose_cut(roles, tokens, keep_tokens=40) == 4
    assert choose_cut(roles, tokens, keep_tokens=25) == 6
    assert choose_cut(roles, tokens, keep_tokens=5) == 6  # the current turn is never summarised
    assert choose_cut(roles, tokens, keep_tokens=10_000) == 0


@pytest.mark.model
async def test_embedded_model_counts_history_tokens_with_its_own_tokenizer(embedded_llm):
    from raygent.memory.tokens import count_each

    user, reply = Message.user("Wie spät ist es in 北京?"), Message.assistant("Es ist 15:00 Uhr.")
    text_tokens = len(embedded_llm.load().tokenize(user.content.encode(), add_bos=False, special=False))
    n_user = await embedded_llm.count_tokens([user])
    assert n_user == text_tokens + 5  # <|im_start|> user \n ... <|im_end|> \n, no default system prompt
    both = await embedded_llm.count_tokens([user, reply])
    assert both == n_user + await embedded_llm.count_tokens([reply])
    assert await count_each(embedded_llm, [user, reply]) == [n_user, both - n_user]
    assert await embedded_llm.count_tokens([]) == 0


async def test_a_huge_unsummarised_session_is_summarised_from_its_newest_turns(tmp_path):
    """A session imported without summaries: the summary request stays within its input budget."""
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    await store.append_many("big", [m for i in range(300) for m in (Message.user(f"note {i}: value {i * 7}"),
                                                                     Message.assistant(f"stored note {i}"))])
    llm = _SummarisingModel()
    budget = HistoryBudget(max_tokens=400, summary_input_tokens=300)
    agent = Agent(llm=llm, memory=SessionMemory(store, "big", llm=llm, budget=budget))
    await agent.run("what was note 299?")
    summary_req = next(r for r in llm.requests if (r[0].content or "").startswith("You condense"))
    counter = fallback_counter()
    text = summary_req[1].content  # the newest old turns (the newest ones stay verbatim), not the oldest
    assert "note 293:" in text and "note 3:" not in text and "note 299" not in text
    assert counter([summary_req[1]]) < 300 + 100  # the transcript of what fitted, plus the instructions
    summary = [m for m in await store.load("big") if m.metadata.get(MEMORY_KEY) == "summary"][-1]
    assert summary.metadata["covers_from"] == 0 and summary.metadata["read_from"] > 500
    answer_req = llm.requests[-1]
    assert answer_req[1].content == summary.content and answer_req[-1].content == "what was note 299?"


@pytest.mark.model
async def test_embedded_model_summarises_old_turns_within_the_budget(embedded_llm, tmp_path):
    store = SQLiteMemoryStore(tmp_path / "m.sqlite")
    budget = HistoryBudget(max_tokens=40, keep_recent_tokens=30, summary_max_tokens=40, summary_input_tokens=200)
    memory = SessionMemory(store, "real", llm=embedded_llm, budget=budget)
    agent = Agent(llm=embedded_llm, tools=[], memory=memory, params={"max_tokens": 24})
    for text in ("My name is Ada and my cat is called Miso.", "What is my cat's name?"):
        await agent.run(text)
    stored = await store.load("real")
    summaries = [m for m in stored if m.metadata.get(MEMORY_KEY) == "summary"]
    assert summaries and summaries[-1].content.removeprefix(SUMMARY_PREFIX).strip()
    assert summaries[0].metadata["covers_from"] == 0 and summaries[0].metadata["read_from"] == 0
    assert [m.content for m in stored if m.role == "user"][0] == "My name is Ada and my cat is called Miso."
    view = memory.view()
    assert view[0] == summaries[-1] and view[-1].role == "assistant"
    assert await embedded_llm.count_tokens(view[1:]) <= 40  # the verbatim part fits the budget
