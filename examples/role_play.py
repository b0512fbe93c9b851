"""A role-play room: personas and a human user in one group chat, with the room's live events.

Three personas (a narrator, a detective, a nervous witness) are AgentRoles with their own system
prompts, all on ONE embedded model (one LlamaCppChatModel instance in this process, or one Ray actor
hosting it with `--remote`, where each persona is a Ray actor too). The user is a member like the
others: a HumanInput fed from the terminal (`console_input()`), or from `--auto-user` lines. Who
speaks next is round robin, or chosen by the same model (`--speaker model`, ModelChoice). Everything
that happens in the room (requests, replies, the agents' step events, questions to the user) is
printed live from `team.events()`; the transcript is printed at the end.

Run:
  .venv/bin/python examples/role_play.py                                   # you play along (type TERMINATE to end)
  .venv/bin/python examples/role_play.py --auto-user "I saw a red coat.;Who had the key?" --rounds 8
  .venv/bin/python examples/role_play.py --speaker model --remote --auto-user "Tell us the truth."
  .venv/bin/python examples/role_play.py --scripted --auto-user "hello"     # deterministic replies (tests)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from raygent import runtime
from raygent.actors.coordinator import AgentRole
from raygent.actors.team import (HumanInput, ModelChoice, RoundRobin, SpeakerPolicy, Team, TeamError, Turn,
                                 console_input)

SCENE = ("The Harbor Hotel, 2 a.m. The Duchess's pearl necklace vanished from the hotel safe at midnight. "
         "Inspector Vale questions the night porter, Mr. Pell, in the empty lobby.")

# name -> (what ModelChoice reads about them, system prompt). The descriptions avoid the characters'
# names: given "Inspector Vale, ..." the 1.5B answered "Inspector Vale", which names no member, and
# ModelChoice then silently falls back to round robin
PERSONAS: dict[str, tuple[str, str]] = {
    # an example line in each prompt keeps a small model in its role (measured with the 1.5B: without
    # one, the witness narrated what the inspector did instead of answering him)
    "narrator": ("describes the scene; never speaks for the characters",
                 "You are the narrator of a 1940s noir mystery. You describe, in one short sentence in present "
                 "tense, the lobby or a character's gesture; you never write dialogue. Example reply: Rain streaks "
                 "the windows as Pell twists his cap in his hands."),
    "detective": ("the detective, asks pointed questions",
                  "You are Inspector Vale, a calm, sharp detective, and you question the night porter out loud in "
                  "the first person about the stolen pearl necklace: one pointed question at a time. Example "
                  "reply: Where were you standing when the clock struck twelve, Mr. Pell? Reply with one such "
                  "line only."),
    "witness": ("the nervous night porter, hides what he saw",
                "You are Mr. Pell, the nervous night porter, and you answer the inspector's questions out loud in "
                "the first person. At midnight you saw a woman in a red coat near the safe, but you are afraid "
                "to say so. Example reply: I-I was at the desk all night, Inspector, I swear. Reply with one "
                "such line only."),
}
USER = "user"
USER_DESCRIPTION = "the player, a junior detective"

# --scripted: deterministic lines per persona, and the order ModelChoice "picks" in
SCRIPT_LINES = {
    "narrator": ["Rain taps on the lobby windows; the porter wipes his palms on his coat.",
                 "The clock strikes three. Somewhere upstairs a door closes softly.",
                 "A silence settles over the lobby, heavy as the velvet curtains."],
    "detective": ["Mr. Pell, where exactly were you standing when the clock struck twelve?",
                  "You are trembling, Mr. Pell. Who did you see near the safe?",
                  "A red coat. Did she carry anything when she left?"],
    "witness": ["I-I was at the desk, Inspector, sorting the post, nothing more.",
                "Well... there was a lady, in a red coat, by the office door.",
                "She... she had a small velvet bag. I swear that is all I saw."],
}
SCRIPT_PICKS = ["narrator", "witness", "detective", "user", "witness", "narrator", "detective", "user"]


def scripted_replies(members: Sequence[str], rounds: int, speaker: str) -> list[str]:
    """The shared scripted model's replies in the order the room will ask for them: with
    `--speaker model` each round starts with the model's pick, then the picked persona's line."""
    used = {name: 0 for name in SCRIPT_LINES}
    replies: list[str] = []
    for r in range(rounds):
        if speaker == "model":
            name = SCRIPT_PICKS[r % len(SCRIPT_PICKS)]
            replies.append(f"{name}")
        else:
            name = members[r % len(members)]
        if name in SCRIPT_LINES:
            lines = SCRIPT_LINES[name]
            replies.append(lines[used[name] % len(lines)])
            used[name] += 1
    return replies


def pick_model(name: str) -> str:
    if name != "auto":
        return name
    from raygent.llm_pool.embedded import DEFAULT_MODEL, EmbeddedModelError, resolve_model_path

    try:
        resolve_model_path("qwen2.5-coder-1.5b-instruct")  # assembled once from its wheels, if installed
        return "qwen2.5-coder-1.5b-instruct"
    except EmbeddedModelError:
        return DEFAULT_MODEL


class Heard:
    """The model as ModelChoice sees it, keeping its last answer (to show what it said)."""

    def __init__(self, llm: Any):
        self.llm, self.last = llm, None

    async def chat(self, messages: Any, tools: Any = None, params: Any = None) -> Any:
        completion = await self.llm.chat(messages, tools, params)
        self.last = completion.text
        return completion


class Announced(SpeakerPolicy):
    """Any speaker policy, printing whom it chose (ModelChoice asks the model directly, not through
    the room, so its choices are not room events)."""

    def __init__(self, inner: SpeakerPolicy, label: str, heard: Heard | None = None):
        self.inner, self.label, self.heard = inner, label, heard

    async def next_speaker(self, team: Team, members: Sequence[str], transcript: Sequence[Turn], round_no: int) -> str:
        name = await self.inner.next_speaker(team, members, transcript, round_no)
        said = ""
        if self.heard is not None and self.heard.last is not None:
            answer, self.heard.last = self.heard.last.strip(), None
            named = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", answer, flags=re.IGNORECASE)
            said = f" (it said {answer!r}{'' if named else ': no member named, so round robin'})"
        print(f"\n== round {round_no + 1}: {self.label} -> {name}{said}", flush=True)
        return name


def show(env) -> None:
    """One live room event as a line."""
    if env.kind == "message":
        text = env.content.content or ""
        if env.sender == "scene" and text.startswith("Conversation so far"):
            print(f"   [{env.sender} -> {env.recipient}] your turn ({len(text)} chars of context)", flush=True)
        else:
            print(f"   [{env.sender} -> {env.recipient}] {text}", flush=True)
    elif env.kind == "event":
        event = env.content.metadata or {}
        kind = event.get("type", "event")
        if kind == "question":
            print(f"   ({env.sender} is asked to speak)", flush=True)
        elif kind == "answer_delta":
            print(f"   ~ {env.sender} step {event.get('step')}: answer ready", flush=True)
        else:
            print(f"   ~ {env.sender} {kind}: {(env.content.content or '')[:120]}", flush=True)
    else:
        print(f"   !! {env.content.content}", flush=True)


async def watch(team: Team, ready: asyncio.Event) -> None:
    async for env in team.events():
        if env.kind == "event" and (env.content.metadata or {}).get("type") == "hello":
            ready.set()  # our own probe: the subscription is live
            continue
        show(env)


async def subscribe(team: Team) -> asyncio.Task:
    """Start printing the room's events; returns once the subscription is live (events are not
    stored, so anything emitted before it would be missed)."""
    ready = asyncio.Event()
    watcher = asyncio.ensure_future(watch(team, ready))
    for _ in range(300):
        await team.hub.emit(team.room, {"type": "hello", "text": "watching"}, sender="console")
        try:
            await asyncio.wait_for(ready.wait(), 0.1)
            return watcher
        except asyncio.TimeoutError:
            pass
    raise RuntimeError("could not subscribe to the room's events")


async def main(args: argparse.Namespace) -> None:
    members = list(PERSONAS) + [USER]
    if args.scripted:
        from raygent.llm_pool.scripted import ScriptedChatModel

        model_cls, model_kwargs = ScriptedChatModel, {"replies": scripted_replies(members, args.rounds, args.speaker)}
    else:
        from raygent.llm_pool.llama_cpp import LlamaCppChatModel

        model_cls, model_kwargs = LlamaCppChatModel, {"model": pick_model(args.model), "n_threads": args.threads,
                                                      "n_ctx": 4096}
    start = time.perf_counter()
    # one model for every persona and the speaker choice: an instance here, or one Ray actor whose
    # proxy the persona actors share (a model holding native memory is built inside its actor)
    llm = runtime.deploy(model_cls, remote=args.remote, init_kwargs=model_kwargs)
    if not args.scripted and not args.remote:
        llm.load()
    print(f"model ready ({time.perf_counter() - start:.1f} s): {await llm.get_model_name()}"
          f"{' (Ray actor)' if args.remote else ''}", flush=True)

    room = f"role-play-{uuid.uuid4().hex[:6]}"
    # the team's own mailbox is named "scene": the task opens the transcript as "scene: ..."
    team = Team(room=room, remote=args.remote, log=":memory:", driver="scene",
                timeout_s=3600 if args.auto_user is None else 300)
    # one line per turn: the models otherwise go on writing the other characters' lines
    params = {"max_tokens": args.max_tokens, "temperature": 0.5, "stop": ["\n"]}
    for name, (_, system) in PERSONAS.items():
        await team.add(AgentRole(name=name, system=system, llm=llm, params=params, max_steps=1))
    if args.auto_user is None:
        await team.add(USER, console_input(f"{USER}> "), local=True)
    else:
        human = HumanInput()
        lines = [s.strip() for s in args.auto_user.split(";") if s.strip()]
        # the user's scripted lines, then silence for any further turn (at most one turn per round)
        for line in lines + ["(stays silent)"] * args.rounds:
            await human.answer(line)
        await team.add(USER, human, local=True)
    print(f"room {room}: {', '.join(members)} ({'Ray actors' if args.remote else 'in this process'})", flush=True)

    if args.speaker == "model":
        descriptions = {name: about for name, (about, _) in PERSONAS.items()} | {USER: USER_DESCRIPTION}
        heard = Heard(llm)
        policy: SpeakerPolicy = Announced(ModelChoice(heard, descriptions), "the model picks", heard)
    else:
        policy = Announced(RoundRobin(), "round robin")

    watcher = await subscribe(team)
    print(f"\n-- scene: {args.scene}", flush=True)
    start = time.perf_counter()
    try:
        await team.group_chat(members, args.scene, speaker=policy, max_rounds=args.rounds)
    except TeamError as exc:  # e.g. the terminal's input closed
        print(f"\nthe conversation stopped: {exc}", flush=True)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.2)  # let the last events print
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)

    print(f"\n===== transcript ({elapsed:.1f} s) =====")
    for i, turn in enumerate(team.transcript):
        print(f"{i:2d}. {turn.speaker}: {turn.text.strip()}")
    await team.close()
    if args.remote:
        runtime.shutdown()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speaker", choices=["round-robin", "model"], default="round-robin")
    p.add_argument("--rounds", type=int, default=8, help="turns in the room (every member's turn counts)")
    p.add_argument("--auto-user", default=None, metavar="LINE;LINE",
                   help="the user's lines, ';'-separated (no terminal input); later turns stay silent")
    p.add_argument("--remote", action="store_true", help="the hub, each persona and the model as Ray actors")
    p.add_argument("--scripted", action="store_true",
                   help="deterministic ScriptedChatModel replies instead of the model")
    p.add_argument("--scene", default=SCENE)
    p.add_argument("--model", default="auto", help="an embedded model name or a GGUF path; auto: the 1.5B "
                   "embedded model where installed (it keeps to its role far better), else the 0.5B default")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
