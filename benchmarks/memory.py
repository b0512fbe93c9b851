"""Memory store throughput and resume time.

Figures (each with a baseline measured in the same run):
- appends per second, one message per transaction, sequential and 8 sessions concurrently:
  SQLiteMemoryStore in-process and as a Ray actor, against raw sqlite3 inserts of the same JSON
  rows into the same table layout (WAL, synchronous=NORMAL, one commit per row);
- resume time for a 1,000-turn session (4 messages a turn: user, tool call, tool result, answer):
  `store.load` in-process and through the actor, and a new Agent's first turn on the session
  (load, close open calls, count tokens, summarise once, call the model), against raw sqlite3
  reading the same rows and parsing their JSON.

Run: .venv/bin/python benchmarks/memory.py [--appends 2000] [--turns 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from raygent import runtime
from raygent.actors.agent import Agent
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.memory import HistoryBudget, SessionMemory, SQLiteMemoryStore
from raygent.memory.sqlite_store import SCHEMA
from raygent.schema import Message, ToolCall


def turn(i: int) -> list[Message]:
    call = ToolCall(id=f"c{i}", name="calculator", arguments={"expression": f"{i}*{i + 1}"})
    return [Message.user(f"What is {i} times {i + 1}? Please also note it for the report #{i}."),
            Message.assistant(tool_calls=[call]),
            Message(role="tool", tool_call_id=call.id, name="calculator",
                    content=json.dumps({"expression": f"{i}*{i + 1}", "result": i * (i + 1)})),
            Message.assistant(f"{i} times {i + 1} is {i * (i + 1)}; noted for report #{i}.")]


def raw_appends(path: Path, bodies: list[str]) -> float:
    """Baseline: raw sqlite3, same tables, one INSERT + commit per message (no sequence bookkeeping)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for s in SCHEMA.split(";"):
        if s.strip():
            conn.execute(s)
    conn.execute("INSERT INTO sessions (id, created_at, updated_at) VALUES ('raw', 0, 0)")
    start = time.perf_counter()
    for seq, body in enumerate(bodies):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO messages (session_id, seq, created_at, role, body) VALUES ('raw', ?, ?, 'user', ?)",
                     (seq, time.time(), body))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(bodies) / elapsed


async def store_appends(store, messages: list[Message], sessions: int) -> float:
    """Appends per second with `sessions` writers at once (each writes its share in order)."""
    per = len(messages) // sessions
    tag = f"b{time.monotonic_ns()}"

    async def writer(k: int) -> None:
        for m in messages[k * per:(k + 1) * per]:
            await store.append(f"{tag}-{k}", m)

    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(sessions)))
    return per * sessions / (time.perf_counter() - start)


def raw_load(path: Path, session: str) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT body FROM messages WHERE session_id = ? ORDER BY seq", (session,)).fetchall()
    parsed = [json.loads(b) for (b,) in rows]
    conn.close()
    assert parsed
    return time.perf_counter() - start


async def timed(coro_fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await coro_fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main(n_appends: int, turns: int, repeats: int, as_json: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="raygent-bench-memory-"))
    msgs = [m for i in range(n_appends // 4 + 1) for m in turn(i)][:n_appends]
    bodies = [m.model_dump_json(exclude_defaults=True) for m in msgs]
    out: dict[str, float] = {}

    out["raw_sqlite_appends_per_s"] = raw_appends(tmp / "raw.sqlite", bodies)
    store = SQLiteMemoryStore(tmp / "store.sqlite")
    await store.append("warm", Message.user("warm up"))
    out["store_appends_per_s"] = await store_appends(store, msgs, 1)
    out["store_appends_per_s_8_sessions"] = await store_appends(store, msgs, 8)

    runtime.init(log_to_driver=False)
    actor = runtime.deploy(SQLiteMemoryStore, remote=True, init_kwargs={"path": str(tmp / "actor.sqlite")})
    await actor.append("warm", Message.user("warm up"))
    n_actor = min(n_appends, 1000)
    out["actor_appends_per_s"] = await store_appends(actor, msgs[:n_actor], 1)
    out["actor_appends_per_s_8_sessions"] = await store_appends(actor, msgs[:n_actor], 8)
    start = time.perf_counter()
    for i in range(0, n_actor, 4):  # a whole turn per call: what a batching caller would do
        await actor.append_many("turns", msgs[i:i + 4])
    out["actor_messages_per_s_turn_batches"] = n_actor / (time.perf_counter() - start)

    # a 1,000-turn session
    session = [m for i in range(turns) for m in turn(i)]
    path = tmp / "resume.sqlite"
    writer = SQLiteMemoryStore(path)
    for i in range(0, len(session), 400):
        await writer.append_many("long", session[i:i + 400])
    await writer.close()
    out["resume_messages"] = len(session)
    out["raw_sqlite_read_parse_ms"] = statistics.median(raw_load(path, "long") for _ in range(repeats)) * 1000

    async def load_in_process() -> None:
        s = SQLiteMemoryStore(path)  # a fresh object, as after a restart
        assert len(await s.load("long")) == len(session)
        await s.close()

    out["store_load_ms"] = await timed(load_in_process, repeats) * 1000
    remote = runtime.deploy(SQLiteMemoryStore, remote=True, init_kwargs={"path": str(path)})
    await remote.get_session("long")

    async def load_remote() -> None:
        assert len(await remote.load("long")) == len(session)

    out["actor_load_ms"] = await timed(load_remote, repeats) * 1000

    async def agent_first_turn(summarised: bool) -> float:
        """A new agent on the session: time until its first turn is answered (model time zero)."""
        sid = "long-s" if summarised else f"long-{time.monotonic_ns()}"
        s = SQLiteMemoryStore(path)
        if not summarised:
            await s.append_many(sid, session)
        llm = ScriptedChatModel(["Summary: the user multiplied pairs of numbers for a report.", "Resumed."])
        memory = SessionMemory(s, sid, llm=llm, budget=HistoryBudget(max_tokens=3000))
        start = time.perf_counter()
        result = await Agent(llm=llm, memory=memory).run("Where were we?")
        elapsed = time.perf_counter() - start
        assert result.answer in ("Resumed.", "Summary: the user multiplied pairs of numbers for a report."), result
        await s.close()
        return elapsed

    out["agent_resume_first_turn_ms"] = statistics.median([await agent_first_turn(False) for _ in range(repeats)]) * 1000
    # once a summary is stored, later resumes only count the verbatim tail
    s = SQLiteMemoryStore(path)
    await s.append_many("long-s", session)
    await s.close()
    await agent_first_turn(True)
    out["agent_resume_with_summary_ms"] = statistics.median([await agent_first_turn(True)
                                                              for _ in range(repeats)]) * 1000
    out["ratio_store_vs_raw_appends"] = out["store_appends_per_s"] / out["raw_sqlite_appends_per_s"]
    out["ratio_actor_vs_raw_appends"] = out["actor_appends_per_s"] / out["raw_sqlite_appends_per_s"]
    out["ratio_store_load_vs_raw"] = out["store_load_ms"] / out["raw_sqlite_read_parse_ms"]
    runtime.kill(actor)
    runtime.kill(remote)

    if as_json:
        print(json.dumps({k: round(v, 3) for k, v in out.items()}))
        return
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} python {platform.python_version()} "
          f"sqlite {sqlite3.sqlite_version}")
    print(f"appends ({n_appends} messages; actor {n_actor}), one transaction per message, WAL, synchronous=NORMAL:")
    print(f"  raw sqlite3 baseline         {out['raw_sqlite_appends_per_s']:9.0f} /s")
    print(f"  store in-process             {out['store_appends_per_s']:9.0f} /s   "
          f"(ratio {out['ratio_store_vs_raw_appends']:.2f}); 8 sessions at once {out['store_appends_per_s_8_sessions']:.0f} /s")
    print(f"  store as a Ray actor         {out['actor_appends_per_s']:9.0f} /s   "
          f"(ratio {out['ratio_actor_vs_raw_appends']:.2f}); 8 sessions at once {out['actor_appends_per_s_8_sessions']:.0f} /s")
    print(f"  actor, append_many per turn  {out['actor_messages_per_s_turn_batches']:9.0f} messages/s (4 per call)")
    print(f"resume a {turns}-turn session ({len(session)} messages), median of {repeats}:")
    print(f"  raw sqlite3 read + json      {out['raw_sqlite_read_parse_ms']:9.1f} ms")
    print(f"  store.load in-process        {out['store_load_ms']:9.1f} ms   (ratio {out['ratio_store_load_vs_raw']:.2f})")
    print(f"  store.load via the actor     {out['actor_load_ms']:9.1f} ms")
    print(f"  new Agent, first turn        {out['agent_resume_first_turn_ms']:9.1f} ms   "
          f"(load, count tokens of all, summarise once)")
    print(f"  same, summary already stored {out['agent_resume_with_summary_ms']:9.1f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.appends, a.turns, a.repeats, a.json))
