"""Teams: patterns over coordinators in one room of a MessageHub.

A Team owns (or is given) a hub, starts one Coordinator per member (in this process, or each a Ray
actor with the member's resources and replicas), and talks to them through its own mailbox, the
"driver". The patterns are plain async functions of messages: sequential pipeline, fan-out/fan-in,
group chat with a speaker policy, handoff, request/reply with a time-out, and a human participant.
The same team code runs in-process and distributed; only `remote=` changes.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from raygent import runtime
from raygent.actors.coordinator import AgentRole, Coordinator, _retry_hub
from raygent.actors.hub import MessageHub, RoomCancelledError
from raygent.schema import Envelope, Message, new_id


class HubShards:
    """Several hubs, each owning the rooms that hash to it: throughput grows with hubs (and nodes),
    and a room's traffic never crosses a shard."""

    def __init__(self, hubs: Sequence[Any]):
        if not hubs:
            raise ValueError("HubShards needs at least one hub")
        self.hubs = list(hubs)

    def for_room(self, room: str) -> Any:
        return self.hubs[zlib.crc32(room.encode()) % len(self.hubs)]


def default_hub_path(room: str) -> Path:
    """Where a team's hub keeps its log when none is given: <RAYGENT_HOME>/hubs/<room>.sqlite. A room
    name identifies one conversation: a team started again on the same room resumes it (what was
    not acknowledged is delivered again; a cancelled room stays cancelled)."""
    from raygent.llm_pool.embedded import raygent_home

    safe = re.sub(r"[^\w.-]", "_", room)
    return raygent_home() / "hubs" / f"{safe}.sqlite"


class TeamError(RuntimeError):
    """A pattern could not go on (an agent failed, or a reply did not come in time)."""


class TeamCancelledError(TeamError):
    """The team's room was cancelled (the message says why)."""


class Turn(BaseModel):
    """One entry of a team's transcript: who said what to whom."""

    speaker: str
    recipient: str | None = None
    text: str
    artifacts: list[Any] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


# -- speaker policies for group chat ----------------------------------------------------------------
class SpeakerPolicy:
    """Picks who speaks next in a group chat."""

    async def next_speaker(self, team: Team, members: Sequence[str], transcript: Sequence[Turn], round_no: int) -> str:
        raise NotImplementedError


class RoundRobin(SpeakerPolicy):
    async def next_speaker(self, team: Team, members: Sequence[str], transcript: Sequence[Turn], round_no: int) -> str:
        return members[round_no % len(members)]


def _pick_name(text: str, members: Sequence[str]) -> str | None:
    """The member named in a model's reply: the earliest whole-word mention wins."""
    best: tuple[int, str] | None = None
    for name in members:
        m = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, flags=re.IGNORECASE)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    return best[1] if best else None


def _pick_or_fallback(team: Team, chooser: str, answer: str, members: Sequence[str], round_no: int) -> str:
    """The member the chooser named; otherwise round robin, with a note in the team's transcript."""
    name = _pick_name(answer, members)
    if name is not None:
        return name
    name = members[round_no % len(members)]
    team.transcript.append(Turn(speaker="speaker-policy", text=f"{chooser} named no member ({answer.strip()[:80]!r}); "
                                f"round robin chose {name}", metadata={"fallback": True, "chooser": chooser}))
    return name


def _transcript_text(transcript: Sequence[Turn], limit: int = 12) -> str:
    return "\n".join(f"{t.speaker}: {t.text}" for t in transcript[-limit:])


class ModeratorChoice(SpeakerPolicy):
    """A moderator agent (a team member) names the next speaker; an unreadable answer falls back
    to round robin and is noted in the transcript."""

    def __init__(self, moderator: str):
        self.moderator = moderator

    async def next_speaker(self, team: Team, members: Sequence[str], transcript: Sequence[Turn], round_no: int) -> str:
        question = (f"Conversation so far:\n{_transcript_text(transcript)}\n\nWho should speak next? "
                    f"Answer with exactly one name from: {', '.join(members)}.")
        reply = await team.ask(self.moderator, question)
        return _pick_or_fallback(team, self.moderator, reply.content.content or "", members, round_no)


class ModelChoice(SpeakerPolicy):
    """A chat model (any ChatModel or its proxy) picks the next speaker from their descriptions."""

    def __init__(self, llm: Any, descriptions: dict[str, str] | None = None):
        self.llm = llm
        self.descriptions = descriptions or {}

    async def next_speaker(self, team: Team, members: Sequence[str], transcript: Sequence[Turn], round_no: int) -> str:
        roster = "\n".join(f"- {m}: {self.descriptions.get(m, '')}" for m in members)
        prompt = (f"Participants:\n{roster}\n\nConversation so far:\n{_transcript_text(transcript)}\n\n"
                  f"Name the participant who should speak next. Answer with the name only.")
        completion = await self.llm.chat([Message.user(prompt)], None, {"max_tokens": 16})
        return _pick_or_fallback(team, "speaker model", completion.text, members, round_no)


# -- the human participant ----------------------------------------------------------------------------
class HumanInput:
    """A person in the team: messages to them wait for `answer()` (fed from the CLI, or later HTTP).
    The question is emitted as a live room event so a UI can show it."""

    def __init__(self) -> None:
        self._answers: asyncio.Queue[str] = asyncio.Queue()

    async def answer(self, text: str) -> None:
        await self._answers.put(text)

    async def __call__(self, env: Envelope, ctx: Any) -> str:
        await ctx.emit({"type": "question", "text": env.content.content, "to": ctx.name})
        return await self._answers.get()


def console_input(prompt: str = "you> ") -> Callable[[Envelope, Any], Any]:
    """A human participant at this terminal (raygent's CLI): shows the message, reads one line."""

    async def ask(env: Envelope, ctx: Any) -> str:
        print(f"\n[{env.sender} -> {ctx.name}] {env.content.content}")
        return await asyncio.get_running_loop().run_in_executor(None, input, prompt)
    return ask


# -- the team ---------------------------------------------------------------------------------------
class Team:
    """Agents in one room. `add` members, then use a pattern; `transcript` records every turn.

    remote=False: the hub and every coordinator live in this process (asyncio). remote=True: the
    hub is a Ray actor (restarted by Ray, reloading its log) and each member a Ray actor with its
    role's resources (`num_cpus`, `num_gpus`, custom `resources`) and `replicas` (sharing one
    mailbox). A member added with `local=True` (e.g. a human) stays in this process either way.
    """

    def __init__(self, room: str = "team", *, hub: Any = None, remote: bool = False, log: Any = None,
                 driver: str = "driver", timeout_s: float = 600.0, mailbox_size: int = 1000, lease_s: float = 60.0,
                 max_restarts: int = 3):
        self.room = room
        self.remote = remote
        self.driver = driver
        self.timeout_s = timeout_s
        self.max_restarts = max_restarts  # of each member's actor (-1: restarted without limit)
        if isinstance(hub, HubShards):
            hub = hub.for_room(room)
        if hub is None:
            hub_kwargs = {"log": log if log is not None else str(default_hub_path(room)), "name": f"hub-{room}", "mailbox_size": mailbox_size, "lease_s": lease_s}
            hub = runtime.deploy(MessageHub, remote=remote, init_kwargs=hub_kwargs, max_restarts=-1,
                                 max_concurrency=10_000, **({"name": f"hub-{room}"} if remote else {}))
        self.hub = hub
        self.members: dict[str, list[Any]] = {}
        self.transcript: list[Turn] = []
        self._replies: dict[str, asyncio.Future] = {}
        self._pump: asyncio.Task | None = None
        self._counter = 0

    # -- membership ------------------------------------------------------------------------------
    async def add(self, member: AgentRole | str, handler: Any = None, *, local: bool = False,
                  **coordinator_options: Any) -> None:
        """Add an AgentRole, or a name plus a handler (async (envelope, ctx) -> reply, an Agent, a
        HumanInput). Its coordinators start at once."""
        await self._ensure_driver()
        if isinstance(member, AgentRole):
            name, spec, replicas = member.name, member, member.replicas
            ray_options = dict(member.resources)
            coordinator_options.setdefault("concurrency", member.concurrency)
        else:  # a handler: `replicas` and `ray_options` (Ray actor options) may be given here
            name, spec = member, handler
            replicas = coordinator_options.pop("replicas", 1)
            ray_options = dict(coordinator_options.pop("ray_options", None) or {})
        if name in self.members or name == self.driver:
            raise ValueError(f"{name!r} is already in team {self.room!r}")
        coordinators = []
        for i in range(replicas):
            consumer = f"{name}#{i}"
            kwargs = dict(room=self.room, consumer=consumer, **coordinator_options)
            if self.remote and not local:
                c = runtime.deploy(Coordinator, name, spec, self.hub, remote=True, init_kwargs=kwargs,
                                   name=f"{self.room}.{consumer}", **{"max_restarts": self.max_restarts,
                                                                       **ray_options})
            else:
                c = Coordinator(name, spec, self.hub, **kwargs)
            coordinators.append(c)
        await asyncio.gather(*(c.start() for c in coordinators))
        self.members[name] = coordinators

    async def _ensure_driver(self) -> None:
        if self._pump is None:
            await self.hub.register(self.driver, room=self.room, consumer=self.driver)
            self._pump = asyncio.ensure_future(self._pump_replies())

    async def _pump_replies(self) -> None:
        """Receive the driver's mail (replies to the team's requests) and settle the waiting calls."""
        while True:
            try:
                batch = await self.hub.receive(self.driver, max_items=64, timeout_s=10.0, consumer=self.driver)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, RoomCancelledError):
                    for f in self._replies.values():
                        if not f.done():
                            f.set_exception(TeamCancelledError(str(exc)))  # "room 'r' was cancelled (reason)"
                    return
                await asyncio.sleep(0.2)
                continue
            for env in batch:
                future = self._replies.get(env.correlation_id or "")
                if future is not None and not future.done():
                    future.set_result(env)
            if batch:
                await _retry_hub(lambda b=batch: self.hub.ack(self.driver, [e.id for e in b]))

    # -- request/reply -----------------------------------------------------------------------------
    async def ask(self, agent: str, text: str | Message, *, timeout_s: float | None = None,
                  record: bool = False, **fields: Any) -> Envelope:
        """Send `text` to `agent` and wait for its reply (TeamError after `timeout_s`, naming it)."""
        await self._ensure_driver()
        if agent not in self.members:
            raise TeamError(f"no member {agent!r} in team {self.room!r} (members: {', '.join(self.members)})")
        self._counter += 1
        message = Message.user(text) if isinstance(text, str) else text
        env = Envelope(id=new_id(f"{self.room}.{self.driver}.{self._counter}"), sender=self.driver,
                       recipient=agent, room=self.room, content=message, reply_to=self.driver, **fields)
        env.correlation_id = env.id
        future = asyncio.get_running_loop().create_future()
        self._replies[env.id] = future
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            await _retry_hub(lambda: self.hub.send(env))  # a retry after a hub restart is stored once
            reply = await asyncio.wait_for(future, limit)
        except RoomCancelledError as exc:
            raise TeamCancelledError(str(exc)) from None
        except asyncio.TimeoutError:
            raise TeamError(f"{agent!r} did not reply within {limit:.0f} s (request {env.id})") from None
        finally:
            self._replies.pop(env.id, None)
        if reply.headers.get("error"):
            raise TeamError(f"{agent!r} failed: {reply.headers['error']}")
        if record:
            self._record(reply)
        return reply

    def _record(self, env: Envelope) -> Turn:
        turn = Turn(speaker=env.sender, recipient=env.recipient, text=env.content.content or "",
                    artifacts=list(env.content.artifacts or env.artifacts), metadata=dict(env.headers))
        self.transcript.append(turn)
        return turn

    # -- patterns ----------------------------------------------------------------------------------
    async def sequential(self, agents: Sequence[str], text: str) -> list[Turn]:
        """A pipeline: each agent gets the previous agent's output (the first gets `text`)."""
        self.transcript.append(Turn(speaker=self.driver, recipient=agents[0], text=text))
        out = []
        for agent in agents:
            reply = await self.ask(agent, text)
            out.append(self._record(reply))
            text = reply.content.content or ""
        return out

    async def fan_out(self, tasks: dict[str, str] | Sequence[tuple[str, str]], *,
                      combine: str | None = None) -> list[Turn]:
        """Concurrent fan-out: each (agent, text) runs at once; with `combine`, that agent gets all
        the answers (fan-in) and its reply ends the list."""
        pairs = list(tasks.items()) if isinstance(tasks, dict) else list(tasks)
        for agent, text in pairs:
            self.transcript.append(Turn(speaker=self.driver, recipient=agent, text=text))
        replies = await asyncio.gather(*(self.ask(agent, text) for agent, text in pairs))
        out = [self._record(r) for r in replies]
        if combine is not None:
            joined = "\n\n".join(f"[{t.speaker}] {t.text}" for t in out)
            out.append(self._record(await self.ask(combine, joined)))
        return out

    async def group_chat(self, agents: Sequence[str], task: str, *, speaker: SpeakerPolicy | None = None,
                         max_rounds: int = 6, terminate: str = "TERMINATE") -> list[Turn]:
        """Agents take turns on a shared conversation; `speaker` picks who talks (round robin by
        default). Ends after `max_rounds` or when a reply contains `terminate`."""
        policy = speaker or RoundRobin()
        chat = [Turn(speaker=self.driver, text=task)]
        self.transcript.append(chat[0])
        for round_no in range(max_rounds):
            name = await policy.next_speaker(self, list(agents), chat, round_no)
            prompt = (f"Conversation so far:\n{_transcript_text(chat)}\n\nYou are {name}. Write your next message.")
            turn = self._record(await self.ask(name, prompt))
            chat.append(turn)
            if terminate and terminate in turn.text:
                break
        return chat[1:]

    async def handoff(self, agent: str, text: str, *, max_handoffs: int = 5) -> list[Turn]:
        """The conversation goes to `agent`; a reply that hands off (header `handoff`, or a line
        `HANDOFF: name`) passes it, with the conversation so far, to that member."""
        chat = [Turn(speaker=self.driver, recipient=agent, text=text)]
        self.transcript.append(chat[0])
        for _ in range(max_handoffs + 1):
            reply = await self.ask(agent, text if len(chat) == 1 else
                                   f"Conversation so far:\n{_transcript_text(chat)}\n\nYou are {agent}; continue.")
            turn = self._record(reply)
            chat.append(turn)
            target = reply.headers.get("handoff") or _handoff_target(turn.text)
            if not target:
                return chat[1:]
            if target not in self.members:
                raise TeamError(f"{agent!r} handed off to {target!r}, who is not in the team "
                                f"(members: {', '.join(self.members)})")
            agent = target
        raise TeamError(f"more than {max_handoffs} handoffs; last to {agent!r}")

    # -- room-wide -----------------------------------------------------------------------------------
    def events(self, *, until_idle_s: float | None = None) -> AsyncIterator[Envelope]:
        """Live view of the room: messages and every agent's step events."""
        return self.hub.events(self.room, until_idle_s=until_idle_s)

    async def cancel(self, reason: str = "cancelled by the user") -> None:
        """Stop every agent in the room, in whatever process it runs."""
        await self.hub.cancel_room(self.room, reason)

    async def stats(self) -> dict[str, Any]:
        members = {n: [s.model_dump() for s in await asyncio.gather(*(c.stats() for c in cs))]
                   for n, cs in self.members.items()}
        return {"room": self.room, "hub": await self.hub.stats(), "members": members}

    async def close(self) -> None:
        """Stop the coordinators (and kill their actors) and the driver's pump."""
        if self._pump is not None:
            self._pump.cancel()
        for coordinators in self.members.values():
            for c in coordinators:
                try:
                    await c.stop()
                except Exception:
                    pass
                if runtime.is_remote(c):
                    runtime.kill(c)


_HANDOFF = re.compile(r"^\s*HANDOFF\s*[:：]\s*([\w.-]+)", re.IGNORECASE | re.MULTILINE)


def _handoff_target(text: str) -> str | None:
    m = _HANDOFF.search(text)
    return m.group(1) if m else None


__all__ = ["HubShards", "HumanInput", "ModelChoice", "ModeratorChoice", "RoundRobin", "SpeakerPolicy", "Team",
           "TeamCancelledError", "TeamError", "Turn", "console_input"]
