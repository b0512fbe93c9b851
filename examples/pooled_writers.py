"""Writers replicated over the LLM pool: fan out short writing tasks, an editor combines them.

The embedded model runs as an LLM pool on Ray Serve (`serve_model`, N replicas, one llama.cpp thread
each). Its PooledLLM handle is the `llm` of an AgentRole "writer" with `replicas=K`: K coordinators
share the writer's one mailbox, each taking the next task when it is free, and every model call goes
to the pool's least loaded replica. `team.fan_out` sends M tasks to "writer" at once and gives all the
drafts to the "editor" (fan-in), who uses the same pool.

What the team API shows directly: each reply's sender (Turn.speaker, the member name "writer",
whichever replica answered) and each coordinator replica's counters (`team.stats()`). What it does
not show: which writer replica and which pool replica served a given task. For that this example
wraps the model twice: in each pool replica (`Stamped`: the completion's model name gets the
replica's rank) and in each writer replica (`Traced`: records task, writer replica, pool replica
and timing in a small ledger actor).

Run:
  .venv/bin/python examples/pooled_writers.py                       # 2 pool replicas, 2 writers, 4 tasks
  .venv/bin/python examples/pooled_writers.py --remote --tasks 6    # the hub, writers and editor as Ray actors
  .venv/bin/python examples/pooled_writers.py --scripted            # ScriptedChatModel behind the pool (tests)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from raygent import runtime
from raygent.actors.coordinator import AgentRole
from raygent.actors.team import Team
from raygent.llm_pool.base import ChatModel
from raygent.schema import Completion, Message

TOPICS = ["a lighthouse at dawn", "a night train crossing snow", "a market in the rain", "an old dog by the fire",
          "a kite over the sea", "a library after closing", "a bakery at 4 a.m.", "a city under fog"]
WRITER_SYSTEM = "You are a concise writer. Reply with one or two vivid sentences and nothing else."
EDITOR_SYSTEM = ("You are an editor. You get short drafts, each after a [name] tag. Combine them into one short "
                 "prose piece that keeps an image from every draft. Reply with the piece only, no tags.")


# -- instrumentation (the team API does not say which replica served what) ----------------------------
class Ledger:
    """A Ray actor that collects one record per model call, from whatever process made it."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def record(self, entry: dict[str, Any]) -> None:
        self.records.append(entry)

    async def entries(self) -> list[dict[str, Any]]:
        return list(self.records)


class Stamped(ChatModel):
    """Inside a pool replica: the wrapped model (built here), its completions' `model` suffixed with
    `@replica<rank>` so the caller sees which replica answered."""

    def __init__(self, model_cls: type, *args: Any, **kwargs: Any):
        self.inner = model_cls(*args, **kwargs)
        self.model_name = getattr(self.inner, "model_name", "model")
        self._where: str | None = None

    def load(self) -> None:  # the pool loads eagerly, so a replica is up only once it can serve
        if hasattr(self.inner, "load"):
            self.inner.load()

    def _replica(self) -> str:
        if self._where is None:
            try:
                from ray import serve

                rank = serve.get_replica_context().rank
                rank = getattr(rank, "rank", rank)
            except Exception:
                rank = "?"
            self._where = f"replica{rank}/pid{os.getpid()}"
        return self._where

    async def chat(self, messages, tools=None, params=None) -> Completion:
        completion = await self.inner.chat(messages, tools, params)
        return completion.model_copy(update={"model": f"{completion.model}@{self._replica()}"})

    async def get_model_name(self) -> str:
        return await self.inner.get_model_name()


class Traced(ChatModel):
    """Inside a writer (or editor) replica: the pool, with each call recorded in the ledger."""

    def __init__(self, inner: Any, ledger: Any, member: str = "?"):
        self.inner, self.ledger, self.member = inner, ledger, member

    def for_member(self, member: str) -> Traced:
        return Traced(self.inner, self.ledger, member)

    async def chat(self, messages, tools=None, params=None) -> Completion:
        task = next((m.content for m in messages if m.role == "user"), "")
        t0 = time.time()
        completion = await self.inner.chat(messages, tools, params)
        await self.ledger.record({"task": task, "member": self.member, "pool": completion.model.rpartition("@")[2],
                                  "t0": t0, "t1": time.time(), "tokens": completion.usage.completion_tokens})
        return completion

    async def get_model_name(self) -> str:
        return await self.inner.get_model_name()


_built = Counter()


def _replica_label(name: str) -> str:
    """This coordinator's replica: its actor's name when a Ray actor ("<room>.writer#1"); in this
    process, the build order (the team starts replica 0, 1, ... in order)."""
    import ray

    context = ray.get_runtime_context() if ray.is_initialized() else None
    actor = context.get_actor_name() if context is not None and context.get_actor_id() else None
    if actor and "." in actor:
        return actor.rpartition(".")[2]
    n = _built[name]
    _built[name] += 1
    return f"{name}#{n}"


class TracedRole(AgentRole):
    """An AgentRole whose agent (built in each replica's process) records its model calls."""

    def build_agent(self) -> Any:
        agent = super().build_agent()
        if isinstance(agent.llm, Traced):
            agent.llm = agent.llm.for_member(_replica_label(self.name))
        return agent


# -- the team --------------------------------------------------------------------------------------
def start_pool(args: argparse.Namespace) -> Any:
    from ray import serve

    from raygent.llm_pool.pool import serve_model

    runtime.init(log_to_driver=False)
    try:  # no HTTP proxy: agents reach the pool through its handle (and port 8000 may be taken)
        serve.start(proxy_location="Disabled")
    except Exception:
        pass
    if args.scripted:
        from raygent.llm_pool.scripted import ScriptedChatModel

        # every replica holds a copy of the script; the router decides which replica gets which task
        replies = [f"Scripted draft {i + 1} of this pool replica: a small scene, told in one sentence."
                   for i in range(args.tasks + 1)]
        # 0.3 s a reply: long enough that the writer replicas visibly share the burst
        return serve_model("writers-llm", Stamped, ScriptedChatModel, replies, delay_s=0.3,
                           pool={"num_replicas": args.pool_replicas, "num_cpus": 0, "max_ongoing_requests": 4})
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    # one llama.cpp thread per replica and one replica per core: the fastest layout on a small machine
    return serve_model("writers-llm", Stamped, LlamaCppChatModel, n_threads=1, n_ctx=2048,
                       pool={"num_replicas": args.pool_replicas, "num_cpus": 1, "max_ongoing_requests": 2})


async def main(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    pool = start_pool(args)
    print(f"pool up ({time.perf_counter() - t_start:.1f} s): {args.pool_replicas} replica(s) of "
          f"{await pool.get_model_name()}", flush=True)
    ledger = runtime.deploy(Ledger, remote=True)
    traced = Traced(pool, ledger)

    team = Team(room=f"writers-{uuid.uuid4().hex[:6]}", remote=args.remote, log=":memory:", timeout_s=900)
    # batch_size=1: a coordinator otherwise takes up to 8 waiting envelopes in one receive and works
    # through them alone, so a burst of tasks all went to writer#0 while writer#1 idled (measured: 4
    # tasks -> handled [4, 0]); with 1, each replica holds one task at a time and the rest wait in the
    # shared mailbox for whichever replica is free
    await team.add(TracedRole(name="writer", system=WRITER_SYSTEM, llm=traced, replicas=args.writers,
                              params={"max_tokens": args.max_tokens, "temperature": 0.7}, max_steps=1),
                   batch_size=1)
    if args.scripted:
        from raygent.llm_pool.scripted import ScriptedChatModel

        editor_llm: Any = ScriptedChatModel(["EDITED: the drafts, woven into one short piece by the editor."])
    else:
        editor_llm = traced
    await team.add(TracedRole(name="editor", system=EDITOR_SYSTEM, llm=editor_llm,
                              params={"max_tokens": args.max_tokens * 3, "temperature": 0.3}, max_steps=1))
    print(f"team {team.room}: writer x{args.writers}, editor ({'Ray actors' if args.remote else 'in this process'})",
          flush=True)

    topics = itertools.islice(itertools.cycle(TOPICS), args.tasks)
    tasks = [f"Write one or two sentences about {topic}." for topic in topics]
    tasks = [t if i < len(TOPICS) else t.replace("Write", f"Write (take {i // len(TOPICS) + 1})")
             for i, t in enumerate(tasks)]  # distinct texts, so each task's records are found
    print(f"\nfan-out: {len(tasks)} tasks -> writer, then fan-in -> editor", flush=True)
    t0 = time.time()
    turns = await team.fan_out([("writer", task) for task in tasks], combine="editor")
    elapsed = time.time() - t0

    records = await ledger.entries()
    by_task = {r["task"]: r for r in records}
    print(f"\n===== drafts ({elapsed:.1f} s for fan-out + fan-in) =====")
    for i, (task, turn) in enumerate(zip(tasks, turns)):
        r = by_task.get(task)
        where = (f"{r['member']} via pool {r['pool']}: waited {r['t0'] - t0:.1f} s, wrote {r['t1'] - r['t0']:.1f} s "
                 f"({r['tokens']} tokens)") if r else "no record"
        print(f"task {i + 1}: {task}\n  [{turn.speaker}] {turn.text.strip()}\n  ({where})")
    edit = turns[-1]
    r = next((r for r in records if r["member"].startswith("editor")), None)
    print(f"\n===== editor =====\n[{edit.speaker}] {edit.text.strip()}")
    if r:
        print(f"  ({r['member']} via pool {r['pool']}: {r['t1'] - r['t0']:.1f} s, {r['tokens']} tokens)")

    stats = await team.stats()
    print("\n===== who did the work =====")
    for name, replicas in stats["members"].items():
        for i, s in enumerate(replicas):
            print(f"{name}#{i}: handled {s['handled']}, failed {s['failed']}")
    writer_records = [r for r in records if r["member"].startswith("writer")]
    print("tasks per writer replica:", dict(sorted(Counter(r["member"] for r in writer_records).items())))
    print("model calls per pool replica:", dict(sorted(Counter(r["pool"] for r in records).items())))
    answered = sum(1 for t in turns[:-1] if t.speaker == "writer" and t.text.strip())
    print(f"replies: {answered}/{len(tasks)} tasks answered; total {time.perf_counter() - t_start:.1f} s")

    await team.close()
    from raygent.llm_pool.pool import delete_model

    delete_model("writers-llm")
    runtime.shutdown()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool-replicas", type=int, default=2, help="model replicas in the pool (one core each)")
    p.add_argument("--writers", type=int, default=2, help="writer coordinators sharing one mailbox")
    p.add_argument("--tasks", type=int, default=4, help="writing tasks fanned out")
    p.add_argument("--max-tokens", type=int, default=48, help="per draft (the editor gets 3x)")
    p.add_argument("--remote", action="store_true", help="the hub, writers and editor as Ray actors")
    p.add_argument("--scripted", action="store_true", help="ScriptedChatModel behind the pool instead of the model")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
