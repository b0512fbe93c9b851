"""Team patterns over coordinators: the same team code gives the same transcript in-process and
with every agent a Ray actor (scripted models, so the transcript is exact)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from raygent.actors.coordinator import AgentRole
from raygent.actors.team import HumanInput, ModelChoice, ModeratorChoice, RoundRobin, Team, TeamError
from raygent.llm_pool.scripted import ScriptedChatModel


def role(name: str, *replies: str, tools=None) -> AgentRole:
    return AgentRole(name=name, system=f"You are {name}.", llm=ScriptedChatModel(list(replies)), tools=tools)


async def run_all_patterns(remote: bool) -> list[tuple[str, str | None, str]]:
    team = Team(room=f"patterns-{uuid.uuid4().hex[:6]}", remote=remote, timeout_s=60)
    await team.add(role("planner", "Outline: a fox learns to count."))
    await team.add(role("writer",
                        '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>',
                        "The fox counted 42 stars.",
                        "Page two: the owl agrees."),
                   )
    await team.add(role("w1", "Page A text."))
    await team.add(role("w2", "Page B text."))
    await team.add(role("editor", "Book: A then B."))
    await team.add(role("alice", "Hello Bob.", "Let us finish. TERMINATE", "One more from Alice."))
    await team.add(role("bob", "Hi Alice.", "I like the fox."))
    await team.add(role("moderator", "bob should speak next.", "The writer, please."))
    await team.add(role("triage", "This is about a refund.\nHANDOFF: billing"))
    await team.add(role("billing", "Refund issued."))
    human = HumanInput()
    await team.add("human", human, local=True)
    # the writer's tools: a real calculator, run inside the writer's process
    team_writer_tools = team.members["writer"]
    assert team_writer_tools

    await team.sequential(["planner", "writer"], "a story about counting")
    await team.fan_out({"w1": "write page A", "w2": "write page B"}, combine="editor")
    await team.group_chat(["alice", "bob"], "greet each other", speaker=RoundRobin(), max_rounds=4)
    await team.group_chat(["writer", "bob"], "continue", speaker=ModeratorChoice("moderator"), max_rounds=2)
    await team.handoff("triage", "I want my money back")
    picker = ScriptedChatModel(["I pick alice."])
    await team.group_chat(["alice", "bob"], "one more", speaker=ModelChoice(picker), max_rounds=1)

    async def person():
        await asyncio.sleep(0.2)
        await human.answer("yes, go on")
    asyncio.ensure_future(person())
    reply = await team.ask("human", "Shall we print the book?", timeout_s=10, record=True)
    assert reply.content.content == "yes, go on"

    transcript = [(t.speaker, t.recipient, t.text) for t in team.transcript]
    stats = await team.stats()
    writer_stats = stats["members"]["writer"][0]
    assert writer_stats["handled"] == 2 and writer_stats["failed"] == 0
    assert stats["hub"]["log"]["unacked"] == 0
    await team.close()
    return transcript


@pytest.mark.ray
async def test_same_transcript_in_process_and_as_ray_actors(ray_cluster):
    local = await run_all_patterns(remote=False)
    distributed = await run_all_patterns(remote=True)
    assert local == distributed
    texts = [t for _, _, t in local]
    assert "The fox counted 42 stars." in texts  # the writer called the calculator, then answered
    assert "Book: A then B." in texts  # fan-in
    assert texts.count("Hello Bob.") == 1 and "Hi Alice." in texts and "Let us finish. TERMINATE" in texts
    assert ("billing", "driver", "Refund issued.") in local  # the handoff reached billing
    speakers = [s for s, _, _ in local]
    assert speakers.index("bob") < speakers.index("billing")
    # the moderator chose bob, then the writer; the model's choice was alice
    assert texts.index("I like the fox.") < texts.index("Page two: the owl agrees.") < texts.index("One more from Alice.")


async def test_team_errors_are_clear():
    team = Team(room=f"errors-{uuid.uuid4().hex[:6]}", timeout_s=5)

    async def broken(env, ctx):
        raise RuntimeError("model crashed")

    async def sleepy(env, ctx):
        await asyncio.sleep(30)

    await team.add("broken", broken)
    await team.add("sleepy", sleepy)
    await team.add(role("rogue", "HANDOFF: nobody"))
    with pytest.raises(TeamError, match="'broken' failed: RuntimeError: model crashed"):
        await team.ask("broken", "hi")
    with pytest.raises(TeamError, match=r"'sleepy' did not reply within 0 s|'sleepy' did not reply"):
        await team.ask("sleepy", "hi", timeout_s=0.3)
    with pytest.raises(TeamError, match="no member 'ghost'"):
        await team.ask("ghost", "hi")
    with pytest.raises(TeamError, match="handed off to 'nobody', who is not in the team"):
        await team.handoff("rogue", "help")
    with pytest.raises(ValueError, match="already in team"):
        await team.add("broken", broken)
    await team.close()


async def test_cancel_reaches_every_member_and_pending_asks():
    team = Team(room=f"cancel-{uuid.uuid4().hex[:6]}", timeout_s=30)
    started = asyncio.Event()

    async def slow(env, ctx):
        started.set()
        await asyncio.sleep(3600)

    await team.add("a", slow, poll_s=0.5)
    await team.add("b", slow, poll_s=0.5)
    pending = asyncio.ensure_future(team.ask("a", "work"))
    await asyncio.wait_for(started.wait(), 3)
    await team.cancel("stop the story")
    with pytest.raises(TeamError, match="cancelled"):
        await asyncio.wait_for(pending, 15)
    for _ in range(40):
        stats = await team.stats()
        if all(not s["running"] for ss in stats["members"].values() for s in ss):
            break
        await asyncio.sleep(0.1)
    assert all(s["cancelled"] and s["in_flight"] == 0 for ss in stats["members"].values() for s in ss)
    await team.close()


async def test_replicas_share_a_burst_and_replies_name_the_replica():
    team = Team(room=f"replicas-{uuid.uuid4().hex[:6]}", log=":memory:", timeout_s=30)
    writer = AgentRole(name="writer", llm=ScriptedChatModel(["draft"] * 8, delay_s=0.4), replicas=2)
    await team.add(writer)
    turns = await team.fan_out([("writer", f"task {i}") for i in range(4)])
    assert [t.text for t in turns] == ["draft"] * 4
    assert sorted(t.metadata["consumer"] for t in turns) == ["writer#0", "writer#0", "writer#1", "writer#1"]
    stats = (await team.stats())["members"]["writer"]
    assert [(s["consumer"], s["handled"]) for s in stats] == [("writer#0", 2), ("writer#1", 2)]
    await team.close()


async def test_a_speaker_choice_naming_no_member_falls_back_with_a_note():
    team = Team(room=f"fallback-{uuid.uuid4().hex[:6]}", log=":memory:", timeout_s=30)
    await team.add(role("alice", "A."))
    await team.add(role("bob", "B."))
    chat = await team.group_chat(["alice", "bob"], "talk", speaker=ModelChoice(ScriptedChatModel(["Inspector Vale"])),
                                 max_rounds=1)
    assert [t.speaker for t in chat] == ["alice"]
    notes = [t for t in team.transcript if t.speaker == "speaker-policy"]
    assert len(notes) == 1 and "'Inspector Vale'" in notes[0].text and "round robin chose alice" in notes[0].text
    await team.close()


def test_a_role_names_its_model_from_the_model_config():
    llm = AgentRole(name="w", llm="qwen2.5-coder-0.5b").build_llm()
    assert type(llm).__name__ == "LlamaCppChatModel"  # built, not loaded
    with pytest.raises(ValueError, match=r"role 'w': no model named 'nope' in the model config \(configured: .*qwen"):
        AgentRole(name="w", llm="nope").build_llm()
