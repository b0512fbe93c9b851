"""Chaos: a mixed raygent workload on a two-raylet Ray cluster while a killer SIGKILLs actors.

The cluster is the tests' own (`tests/_ray_cluster.py`): a head raylet (127.0.0.2, tagged `llm`) and
a worker raylet (127.0.0.3, tagged `tools`) started with `ray start` on this host, with token auth
and free ports, so it never touches another Ray on the machine; it is torn down at the end.

Components (each a Ray actor, each restarted by Ray or Serve after a kill):
  llm          the model pool: a Serve deployment of a rule-based scripted model (`--model scripted`,
               default: a deterministic tool caller, so throughput does not hinge on 2 cores) or the
               embedded GGUF model (`--model embedded`), 2 replicas on the head; plus the HTTP app's
               own model deployment
  toolhub      a tool hub actor (calculator, current_datetime, address_parse) on the worker
  retriever    a ToolRetriever actor (BM25) choosing the tools offered each turn
  memory       the MemoryStore actor (SQLite) holding the multi-turn sessions
  coordinator  the session agents (Agent actors with memory) and the team's Coordinator actors
  messagehub   the team's MessageHub actor (SQLite log)
  serve        the HTTP app's agent replica and its ingress replica (Serve replicas)

Workload (loops running concurrently for `--minutes`):
  single   Agent runs in this driver: pool model -> retriever -> calculator on the tool hub -> answer
  session  multi-turn sessions: each turn is one run of a session agent actor that stores every
           message in the memory store actor; a new session every few turns
  team     a real Team (raygent.actors.team) in one room: fan-out of 3 tasks to a writer member with
           2 replicas sharing a mailbox, fan-in to an editor; every member's handler asks the pool
           and records each envelope it handled in a ledger file
  http     POST /v1/chat/completions to the served agent (Serve's HTTP proxy -> ingress -> agent
           replica -> its model pool and tools)

Killer: every `--kill-every` seconds it lists the cluster's live actors (Ray's GCS actor table,
`ray._private.state.actors()`), takes the next kind of a random order of the kinds (a new order
once each kind had its turn; a kind with no live actor just then waits), a random actor of that
kind, checks that the process belongs to this cluster (its environment carries the cluster's
marker) and SIGKILLs it.

The ledger (this driver) gives every run an id and counts, per run: completed (first attempt),
resumed (an attempt failed because something died, a later one completed), failed with a clear
error (every attempt failed; the last error says what died), failed unclear, hung (an attempt that
neither returned nor raised within `--hang-s`, or a run unfinished at the end of the drain). Team
messages: lost (a request whose envelope no member handled, a reply that never came, or an envelope
still unacknowledged in the hub's log at the end), handled twice (a handler that finished the same
envelope id twice when the first finisher was not killed before it could acknowledge it; a re-run
after its handler's process was killed is at-least-once delivery, counted apart). Sessions: every
message of an acknowledged turn (the user's text and the answer the caller got) must be in the
store at the end; missing ones are "session messages lost".

Run:  .venv/bin/python benchmarks/chaos.py [--minutes 10] [--kill-every 5] [--seed 1]
      [--model scripted|embedded] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the two-raylet cluster helper lives with the tests

from _ray_cluster import MARKER, ClusterError, LocalCluster  # noqa: E402

KINDS = ("llm", "toolhub", "retriever", "memory", "coordinator", "messagehub", "serve")
POOL = "chaos-llm"
HTTP_MODEL = "chaos-model"
HTTP_AGENT = "chaos-agent"
ROOM = "chaos-room"
TOOL_NAMES = ("calculator", "current_datetime", "address_parse")
CLEAR = re.compile(r"died|dead|unavailable|unreachable|killed|crash|restart|not alive|connection", re.IGNORECASE)


# -- the scripted model (shipped to the pool replicas by value: this file runs as __main__) ---------
def _chaos_model_class() -> Any:
    from raygent.llm_pool.base import ChatModel
    from raygent.schema import Completion, ToolCall, Usage

    class ChaosModel(ChatModel):
        """Rules, so any number of concurrent conversations get deterministic replies: after a tool
        result, `RESULT <the result>`; a user message holding `calc: EXPR` with the calculator
        offered, a calculator call; anything else, `ECHO <text>`."""

        model_name = "chaos-rules"

        def __init__(self, delay_s: float = 0.0):
            self.delay_s = delay_s

        async def chat(self, messages, tools=None, params=None):  # noqa: ANN001
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            last = messages[-1]
            text = last.content if isinstance(last.content, str) else str(last.content or "")
            usage = Usage(prompt_tokens=8, completion_tokens=8, total_tokens=16)
            if last.role == "tool":
                return Completion(text=f"RESULT {text}", model=self.model_name, finish_reason="stop", usage=usage)
            m = re.search(r"calc: ([0-9*+\-/ ()]+)", text)
            if m and any(t.name == "calculator" for t in tools or []):
                call = ToolCall(name="calculator", arguments={"expression": m.group(1).strip()})
                return Completion(text="", tool_calls=[call], model=self.model_name, finish_reason="tool_calls",
                                  usage=usage)
            return Completion(text="ECHO " + " ".join(text.split())[:400], model=self.model_name,
                              finish_reason="stop", usage=usage)

    return ChaosModel


class LedgerHandler:
    """A team member: asks the pool, records the envelope it handled in the ledger file (with its
    process id), and replies. Picklable by value (this module is __main__)."""

    def __init__(self, ledger: str, llm: Any, role: str):
        self.ledger = ledger
        self.llm = llm
        self.role = role

    async def __call__(self, env: Any, ctx: Any) -> str:
        from raygent.schema import Message

        text = env.content.content or ""
        completion = await self.llm.chat([Message.user(text)])
        conn = sqlite3.connect(self.ledger, timeout=30)
        try:
            conn.execute("INSERT INTO handled VALUES (?, ?, ?, ?, ?, ?)",
                         (ctx.name, env.id, _key(text), ctx.coordinator.consumer, os.getpid(), time.time()))
            conn.commit()
        finally:
            conn.close()
        return f"{self.role} handled {_key(text)}: {completion.text[:80]}"


def _key(text: str) -> str:
    m = re.search(r"\[(K[^\]]+)\]", text)
    return m.group(1) if m else "?"


# -- the ledger -------------------------------------------------------------------------------------
@dataclass
class Run:
    id: str
    kind: str  # single | session | team | http
    started: float
    attempts: int = 0
    status: str = "running"  # completed | resumed | failed_clear | failed_unclear | hung
    errors: list[str] = field(default_factory=list)
    finished: float | None = None


class Ledger:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.kills: list[dict[str, Any]] = []
        self.kill_failures: list[str] = []
        self.session_acks: dict[str, list[tuple[str, str]]] = defaultdict(list)  # session -> [(user, answer)]
        self.team_keys: dict[str, str] = {}  # request key -> outcome: replied | timeout | error
        self.stalls: list[str] = []

    def start(self, kind: str, n: int) -> Run:
        run = Run(f"{kind}-{n}", kind, time.monotonic())
        self.runs[run.id] = run
        return run


async def attempt_run(ledger: Ledger, run: Run, once: Any, *, hang_s: float, deadline: float,
                      max_attempts: int = 8) -> Any:
    """Call `once(attempt)` until it returns a verified result; classify the run."""
    while True:
        run.attempts += 1
        try:
            result = await asyncio.wait_for(once(run.attempts), hang_s)
        except asyncio.TimeoutError:
            run.status = "hung"
            run.errors.append(f"attempt {run.attempts}: no answer and no error within {hang_s:.0f} s")
            ledger.stalls.append(f"{run.id}: attempt {run.attempts} hung")
            run.finished = time.monotonic()
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the failure is the data
            run.errors.append(f"attempt {run.attempts}: {type(exc).__name__}: {str(exc)[:500]}")
            if run.attempts >= max_attempts or time.monotonic() > deadline:
                run.status = "failed_clear" if CLEAR.search(run.errors[-1]) else "failed_unclear"
                run.finished = time.monotonic()
                return None
            await asyncio.sleep(min(0.5 * run.attempts, 3.0))
            continue
        run.status = "completed" if run.attempts == 1 else "resumed"
        run.finished = time.monotonic()
        return result


class Failed(RuntimeError):
    """An attempt that returned, but not the expected result (the message says why)."""


# -- the cluster and the components -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_config(port: int, state: Path) -> Any:
    from raygent.serve.app import ServeConfig

    return ServeConfig(**{
        "models": {HTTP_MODEL: {"model": {"type": "scripted", "tool_then_answer": {"tool": "calculator",
                                                                                   "argument": "expression"}},
                                "pool": {"num_replicas": 1, "num_cpus": 0, "max_ongoing_requests": 64,
                                         "max_queued_requests": -1, "resources": {"llm": 0.01},
                                         "health_check_period_s": 2.0}}},
        "agents": {HTTP_AGENT: {"description": "calculator agent", "model": HTTP_MODEL, "tools": ["calculator"],
                                "memory": False, "deployment": {"num_replicas": 1, "num_cpus": 0,
                                                                "max_ongoing_requests": 64,
                                                                "resources": {"tools": 0.01}}}},
        "default_model": HTTP_MODEL, "default_agent": HTTP_AGENT,
        "state": {"url": f"sqlite://{state / 'serve-state.sqlite'}"},
        "security": {"require_keys": "never", "requests_per_minute": 1_000_000, "concurrent_runs": 10_000},
        "host": "127.0.0.1", "port": port,
    })


class Components:
    """Everything the workload uses, deployed on the cluster."""

    async def start(self, args: argparse.Namespace, tmp: Path) -> None:
        from ray import serve

        from raygent import runtime
        from raygent.actors.agent import Agent  # noqa: F401
        from raygent.actors.team import Team
        from raygent.llm_pool.pool import PoolConfig, serve_model
        from raygent.memory.sqlite_store import deploy_store
        from raygent.retrieval.tool_retriever import ToolRetriever
        from raygent.serve.app import APP_NAME, build_app
        from raygent.toolhub.builtin import BUILTIN_TOOLS
        from raygent.toolhub.hub import HubSet, deploy_hub

        self.tmp = tmp
        self.port = free_port()
        t0 = time.monotonic()
        serve.start(http_options={"host": "127.0.0.1", "port": self.port, "location": "HeadOnly"})
        if args.model == "embedded":
            from raygent.llm_pool.llama_cpp import LlamaCppChatModel

            pool_cfg = PoolConfig(num_replicas=1, num_cpus=1, resources={"llm": 0.01}, max_ongoing_requests=8,
                                  max_queued_requests=-1, health_check_period_s=2.0)
            self.pool = serve_model(POOL, LlamaCppChatModel, pool=pool_cfg, n_ctx=4096)
        else:
            pool_cfg = PoolConfig(num_replicas=2, num_cpus=0, resources={"llm": 0.01}, max_ongoing_requests=64,
                                  max_queued_requests=-1, health_check_period_s=2.0, retries=4)
            self.pool = serve_model(POOL, _chaos_model_class(), pool=pool_cfg)
        tools = [BUILTIN_TOOLS[n]() for n in TOOL_NAMES]
        self.hub = deploy_hub("math", tools, name="chaos-tools", max_restarts=-1, resources={"tools": 0.01})
        self.tools = HubSet([self.hub])
        self.retriever = runtime.deploy(ToolRetriever, remote=True, name="chaos-retriever", max_restarts=-1,
                                        init_kwargs={"method": "bm25"}, resources={"tools": 0.01})
        self.store_path = tmp / "memory.sqlite"
        self.store = deploy_store(self.store_path, name="chaos-memory", max_restarts=-1, resources={"tools": 0.01})
        self.sessions = [runtime.deploy(Agent, remote=True, name=f"chaos-session-{i}", max_restarts=-1,
                                        resources={"tools": 0.01},
                                        init_kwargs={"llm": self.pool, "tools": self.tools, "memory": self.store,
                                                     "retriever": self.retriever, "retrieval_threshold": 1,
                                                     "tool_top_k": 2, "max_steps": 4})
                         for i in range(args.sessions)]
        # the team: a hub with a SQLite log, a writer with 2 replicas sharing a mailbox, an editor
        self.ledger_path = tmp / "handled.sqlite"
        conn = sqlite3.connect(self.ledger_path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE handled (recipient TEXT, env_id TEXT, key TEXT, consumer TEXT, pid INTEGER, t REAL)")
        conn.commit()
        conn.close()
        self.team = Team(room=ROOM, remote=True, log=str(tmp / "hub.sqlite"), timeout_s=args.hang_s,
                         max_restarts=-1)
        member_options = {"resources": {"tools": 0.01}}
        await self.team.add("writer", LedgerHandler(str(self.ledger_path), self.pool, "writer"), replicas=2,
                            ray_options=member_options)
        await self.team.add("editor", LedgerHandler(str(self.ledger_path), self.pool, "editor"),
                            ray_options=member_options)
        serve.run(build_app(serve_config(self.port, tmp)), name=APP_NAME, route_prefix="/")
        self.deploy_s = time.monotonic() - t0

    async def warm_up(self) -> None:
        """Each part answers once before the killer starts."""
        import httpx

        from raygent.actors.agent import Agent

        agent = Agent(self.pool, self.tools, retriever=self.retriever, retrieval_threshold=1, tool_top_k=2)
        r = await agent.run("Use the calculator: calc: 6*7")
        assert '"result": 42' in r.answer, r
        r = await self.sessions[0].run("Use the calculator: calc: 2*3")
        assert '"result": 6' in r.answer, r
        turns = await self.team.fan_out([("writer", "[Kwarm.0] hello")], combine="editor")
        assert len(turns) == 2, turns
        async with httpx.AsyncClient(timeout=60) as client:
            resp = await client.post(f"http://127.0.0.1:{self.port}/v1/chat/completions",
                                     json={"model": HTTP_AGENT, "messages": [{"role": "user", "content": "6*7"}]})
            assert resp.status_code == 200 and '"result": 42' in resp.json()["choices"][0]["message"]["content"], \
                resp.text


# -- the workload -----------------------------------------------------------------------------------
def expect(answer: str | None, value: int) -> None:
    if not answer or f'"result": {value}' not in answer:
        raise Failed(f"unexpected answer {answer!r} (wanted result {value})")


async def single_loop(c: Components, ledger: Ledger, stop: float, args: argparse.Namespace, w: int) -> None:
    from raygent.actors.agent import Agent

    n = 0
    while time.monotonic() < stop:
        n += 1
        i = w * 100_000 + n
        run = ledger.start("single", i)

        async def once(attempt: int, i: int = i) -> Any:
            agent = Agent(c.pool, c.tools, retriever=c.retriever, retrieval_threshold=1, tool_top_k=2, max_steps=4)
            result = await agent.run(f"Use the calculator: calc: {i}*7+3")
            if result.error:
                raise Failed(f"run ended with an error: {result.error}")
            for call in result.tool_calls:
                if call.error:
                    raise Failed(f"tool call failed: {call.error}")
            expect(result.answer, i * 7 + 3)
            return result

        await attempt_run(ledger, run, once, hang_s=args.hang_s, deadline=stop + args.drain_s)
        await asyncio.sleep(args.pace_s)


async def session_loop(c: Components, ledger: Ledger, stop: float, args: argparse.Namespace, w: int) -> None:
    agent = c.sessions[w]
    n = 0
    sid = None
    while time.monotonic() < stop:
        if n % args.turns_per_session == 0:
            sid = f"chaos-s{w}-{n // args.turns_per_session}"
        n += 1
        i = w * 100_000 + n
        run = ledger.start("session", i)
        text = f"[{sid} turn {n}] Use the calculator: calc: {i}*7+3"

        async def once(attempt: int, text: str = text, i: int = i, sid: str = sid, n: int = n) -> Any:
            # a restarted agent actor is built without the session: say which one to go on with
            await agent.use_session(sid)
            # one run id for every try of this turn: a retry goes on from what an earlier try stored
            result = await agent.run(text, run_id=f"chaos-turn-{sid}-{n}")
            if result.error:
                raise Failed(f"turn ended with an error: {result.error}")
            expect(result.answer, i * 7 + 3)
            return result

        result = await attempt_run(ledger, run, once, hang_s=args.hang_s, deadline=stop + args.drain_s)
        if result is not None:
            ledger.session_acks[sid].append((text, result.answer))
        await asyncio.sleep(args.pace_s)


async def team_loop(c: Components, ledger: Ledger, stop: float, args: argparse.Namespace) -> None:
    from raygent.actors.team import TeamError

    n = 0
    while time.monotonic() < stop:
        n += 1
        run = ledger.start("team", n)

        async def once(attempt: int, n: int = n) -> Any:
            keys = [f"K{n}.{k}#a{attempt}" for k in range(3)]
            tasks = [("writer", f"[{key}] write part {k} of story {n}") for k, key in enumerate(keys)]

            async def ask(agent: str, text: str) -> Any:
                key = _key(text)
                try:
                    reply = await c.team.ask(agent, text)
                except TeamError as exc:
                    ledger.team_keys[key] = "timeout" if "did not reply" in str(exc) else "error"
                    raise
                except Exception:
                    ledger.team_keys[key] = "error"
                    raise
                ledger.team_keys[key] = "replied"
                return reply

            replies = await asyncio.gather(*(ask(a, t) for a, t in tasks))
            for key, reply in zip(keys, replies):
                if key not in (reply.content.content or ""):
                    raise Failed(f"writer's reply to {key} is {reply.content.content!r}")
            combine_key = f"K{n}.c#a{attempt}"
            joined = "\n".join(r.content.content or "" for r in replies)
            final = await ask("editor", f"[{combine_key}] combine:\n{joined}")
            if combine_key not in (final.content.content or ""):
                raise Failed(f"editor's reply is {final.content.content!r}")
            return final

        await attempt_run(ledger, run, once, hang_s=args.hang_s, deadline=stop + args.drain_s)
        await asyncio.sleep(args.pace_s)


async def http_loop(c: Components, ledger: Ledger, stop: float, args: argparse.Namespace, w: int) -> None:
    import httpx

    url = f"http://127.0.0.1:{c.port}/v1/chat/completions"
    n = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.hang_s + 5)) as client:
        while time.monotonic() < stop:
            n += 1
            i = w * 100_000 + n
            run = ledger.start("http", i)

            async def once(attempt: int, i: int = i) -> Any:
                resp = await client.post(url, json={"model": HTTP_AGENT,
                                                    "messages": [{"role": "user", "content": f"{i}*7+3"}]})
                if resp.status_code != 200:
                    raise Failed(f"HTTP {resp.status_code}: {resp.text[:400]}")
                body = resp.json()
                extra = body.get("raygent") or {}
                if extra.get("error"):
                    raise Failed(f"run ended with an error: {extra['error']}")
                for call in extra.get("tool_calls") or []:
                    if call.get("error"):
                        raise Failed(f"tool call failed: {call['error']}")
                expect(body["choices"][0]["message"]["content"], i * 7 + 3)
                return body

            await attempt_run(ledger, run, once, hang_s=args.hang_s, deadline=stop + args.drain_s)
            await asyncio.sleep(args.pace_s)


# -- the killer -------------------------------------------------------------------------------------
def actor_kind(name: str) -> str | None:
    if name.startswith("SERVE_REPLICA::"):
        parts = name[len("SERVE_REPLICA::"):].split("#")
        deployment = parts[1] if len(parts) > 1 else ""
        if deployment in (POOL, HTTP_MODEL):
            return "llm"
        if deployment.startswith("agent-") or deployment in ("raygent-ingress", "RaygentIngress"):
            return "serve"
        return None
    if name == "chaos-tools":
        return "toolhub"
    if name == "chaos-retriever":
        return "retriever"
    if name == "chaos-memory":
        return "memory"
    if name.startswith("chaos-session-") or name.startswith(f"{ROOM}."):
        return "coordinator"
    if name == f"hub-{ROOM}":
        return "messagehub"
    return None


def live_actors() -> dict[str, list[dict[str, Any]]]:
    from ray._private import state

    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for info in state.actors().values():
        if info.get("State") != "ALIVE" or not info.get("Pid"):
            continue
        kind = actor_kind(info.get("Name") or "")
        if kind is not None:
            out[kind].append({"name": info["Name"], "pid": int(info["Pid"])})
    return out


def ours(pid: int, cluster: LocalCluster) -> bool:
    try:
        return f"{MARKER}={cluster.id}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


async def killer(cluster: LocalCluster, ledger: Ledger, stop: float, every_s: float, rng: random.Random,
                 kinds: tuple[str, ...]) -> None:
    loop = asyncio.get_running_loop()
    next_at = time.monotonic() + every_s
    order: list[str] = []
    while True:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if time.monotonic() >= stop:
            return
        next_at += every_s
        try:
            actors = await loop.run_in_executor(None, live_actors)
        except Exception as exc:  # noqa: BLE001
            ledger.kill_failures.append(f"listing actors: {exc}")
            continue
        if not order:  # the kinds in a random order, again and again: every kind gets its turn
            order = rng.sample(kinds, len(kinds))
        choices = [k for k in order if actors.get(k)]
        if not choices:
            ledger.kill_failures.append("no live actor of any kind")
            continue
        kind = choices[0]
        order.remove(kind)
        victim = rng.choice(actors[kind])
        if not ours(victim["pid"], cluster):
            ledger.kill_failures.append(f"{victim['name']} pid {victim['pid']} is not this cluster's")
            continue
        try:
            os.kill(victim["pid"], signal.SIGKILL)
        except ProcessLookupError:
            ledger.kill_failures.append(f"{victim['name']} pid {victim['pid']} already gone")
            continue
        ledger.kills.append({"t": time.time(), "kind": kind, "name": victim["name"], "pid": victim["pid"]})
        print(f"  [{time.strftime('%H:%M:%S')}] killed {kind} {victim['name']} (pid {victim['pid']})", flush=True)


# -- checks at the end --------------------------------------------------------------------------------
def check_team(c: Components, ledger: Ledger, hub_stats: dict[str, Any]) -> dict[str, Any]:
    conn = sqlite3.connect(c.ledger_path, timeout=30)
    rows = conn.execute("SELECT recipient, env_id, key, consumer, pid, t FROM handled ORDER BY t").fetchall()
    conn.close()
    killed_at: dict[int, float] = {k["pid"]: k["t"] for k in ledger.kills}
    by_env: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    handled_keys: set[str] = set()
    for r in rows:
        by_env[(r[0], r[1])].append(r)
        handled_keys.add(r[2])
    twice, rehandled, twice_detail = 0, 0, []
    for (recipient, env_id), recs in by_env.items():
        for first, second in zip(recs, recs[1:]):
            t_kill = killed_at.get(first[4])
            if t_kill is not None and first[5] <= t_kill <= second[5]:
                rehandled += 1  # its first handler's process was killed before it could acknowledge
            else:
                twice += 1
                twice_detail.append(f"{recipient} {env_id} by {first[3]} (pid {first[4]}) and {second[3]} "
                                    f"(pid {second[4]})")
    lost_detail = []
    for key, outcome in ledger.team_keys.items():
        if outcome == "timeout":
            lost_detail.append(f"{key}: {'reply never came' if key in handled_keys else 'never handled'}")
    unacked = hub_stats.get("log", {}).get("unacked", 0)
    if unacked:
        lost_detail.append(f"{unacked} envelope(s) still unacknowledged in the hub's log")
    return {"handled_records": len(rows), "envelopes": len(by_env), "twice": twice, "rehandled_after_kill": rehandled,
            "twice_detail": twice_detail[:20], "lost": len(lost_detail), "lost_detail": lost_detail[:20],
            "hub_log": hub_stats.get("log"), "hub_counters": {k: hub_stats.get(k) for k in
                                                             ("sent", "duplicates", "delivered", "redelivered",
                                                              "acked")}}


def check_sessions(c: Components, ledger: Ledger) -> dict[str, Any]:
    conn = sqlite3.connect(c.store_path, timeout=30)
    lost, detail, stored_total, duplicates = 0, [], 0, 0
    for sid, acks in ledger.session_acks.items():
        rows = [json.loads(b) for (b,) in conn.execute(
            "SELECT body FROM messages WHERE session_id = ? ORDER BY seq", (sid,)).fetchall()]
        stored_total += len(rows)
        contents = [r.get("content") for r in rows]
        users = [x for x in contents if isinstance(x, str) and x.startswith("[")]
        duplicates += len(users) - len(set(users))
        pos = 0
        for user, answer in acks:
            for needle in (user, answer):
                try:
                    pos = contents.index(needle, pos) + 1
                except ValueError:
                    if needle in contents:  # present but out of order
                        detail.append(f"{sid}: {needle[:60]!r} out of order")
                    else:
                        lost += 1
                        detail.append(f"{sid}: {needle[:60]!r} missing")
    conn.close()
    return {"sessions": len(ledger.session_acks), "acked_messages": 2 * sum(len(a) for a in ledger.session_acks.values()),
            "stored_messages": stored_total, "lost": lost, "detail": detail[:20],
            "user_messages_stored_twice": duplicates}


def totals(ledger: Ledger) -> dict[str, Any]:
    status = Counter(r.status for r in ledger.runs.values())
    per_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in ledger.runs.values():
        per_kind[r.kind][r.status] += 1
    all_runs = len(ledger.runs)
    ok = status["completed"] + status["resumed"]
    return {"runs": all_runs, "completed": status["completed"], "resumed": status["resumed"],
            "failed_clear": status["failed_clear"], "failed_unclear": status["failed_unclear"],
            "hung": status["hung"] + status["running"], "ok_ratio": ok / all_runs if all_runs else 0.0,
            "per_kind": {k: dict(v) for k, v in per_kind.items()}}


# -- main -------------------------------------------------------------------------------------------
async def workload(cluster: LocalCluster, c: Components, args: argparse.Namespace) -> dict[str, Any]:
    ledger = Ledger()
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    stop = t0 + args.minutes * 60
    kinds = tuple(k for k in args.kinds.split(",") if k)
    loops = [asyncio.ensure_future(single_loop(c, ledger, stop, args, w)) for w in range(args.single)]
    loops += [asyncio.ensure_future(session_loop(c, ledger, stop, args, w)) for w in range(args.sessions)]
    loops += [asyncio.ensure_future(team_loop(c, ledger, stop, args)) for _ in range(args.teams)]
    loops += [asyncio.ensure_future(http_loop(c, ledger, stop, args, w)) for w in range(args.http)]
    kill_task = asyncio.ensure_future(killer(cluster, ledger, stop, args.kill_every, rng, kinds))
    print(f"workload: {args.minutes:.2f} min, a kill every {args.kill_every:g} s (seed {args.seed})", flush=True)
    await kill_task
    # the drain: runs in flight get `drain_s` to finish; any still running then are hung
    done, pending = await asyncio.wait(loops, timeout=args.drain_s + args.hang_s)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            print("a workload loop crashed:\n" + "".join(traceback.format_exception(task.exception())), flush=True)
    for r in ledger.runs.values():
        if r.status == "running":
            r.errors.append("unfinished at the end of the drain")
    elapsed = time.monotonic() - t0
    # settle the team's hub: the log must end with nothing unacknowledged
    hub_stats: dict[str, Any] = {}
    settle_until = time.monotonic() + 30
    while time.monotonic() < settle_until:
        try:
            hub_stats = await asyncio.wait_for(c.team.hub.stats(), 30)
            if hub_stats["log"]["unacked"] == 0:
                break
        except Exception as exc:  # noqa: BLE001 - a hub still restarting
            hub_stats = {"error": str(exc)}
        await asyncio.sleep(0.5)
    out = {"duration_s": elapsed, "workload_s": args.minutes * 60, "kill_every_s": args.kill_every,
           "seed": args.seed, "model": args.model, **totals(ledger),
           "kills": len(ledger.kills), "kills_by_kind": dict(Counter(k["kind"] for k in ledger.kills)),
           "kill_failures": ledger.kill_failures[:10], "team": check_team(c, ledger, hub_stats),
           "sessions": check_sessions(c, ledger), "stalls": ledger.stalls[:20],
           "failures": {r.id: r.errors[-3:] for r in ledger.runs.values()
                        if r.status not in ("completed", "resumed")},
           "resumed_examples": {r.id: r.errors[:2] for r in ledger.runs.values() if r.status == "resumed"}}
    out["messages_lost"] = out["team"]["lost"]
    out["handled_twice"] = out["team"]["twice"]
    out["session_messages_lost"] = out["sessions"]["lost"]
    return out


def report(out: dict[str, Any]) -> None:
    print("\n== chaos totals ==", flush=True)
    print(f"duration {out['duration_s']:.0f} s (workload {out['workload_s']:.0f} s + drain), kills {out['kills']} "
          f"(one per {out['kill_every_s']:g} s): {out['kills_by_kind']}")
    print(f"runs {out['runs']}: completed {out['completed']}, resumed {out['resumed']}, failed with a clear error "
          f"{out['failed_clear']}, failed unclear {out['failed_unclear']}, hung {out['hung']}")
    print(f"per kind: {out['per_kind']}")
    print(f"messages lost {out['messages_lost']}, handled twice {out['handled_twice']} (re-handled after its "
          f"handler was killed: {out['team']['rehandled_after_kill']}), session messages lost "
          f"{out['session_messages_lost']}")
    print(f"team: {out['team']['envelopes']} envelopes handled, hub log {out['team']['hub_log']}, "
          f"hub {out['team']['hub_counters']}")
    print(f"sessions: {out['sessions']['sessions']} sessions, {out['sessions']['acked_messages']} acknowledged "
          f"messages, {out['sessions']['stored_messages']} stored (user messages stored twice by retried turns: "
          f"{out['sessions']['user_messages_stored_twice']})")
    print(f"completed+resumed / all = {out['ok_ratio']:.3f}")
    for rid, errors in list(out["failures"].items())[:15]:
        print(f"  not completed: {rid}: {errors}")
    for detail in out["team"]["lost_detail"] + out["team"]["twice_detail"] + out["sessions"]["detail"]:
        print(f"  {detail}")
    if out["kill_failures"]:
        print(f"  killer: {out['kill_failures']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long the workload runs")
    p.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", choices=("scripted", "embedded"), default="scripted")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"what the killer may kill (of {','.join(KINDS)})")
    p.add_argument("--single", type=int, default=2, help="concurrent single-agent run loops")
    p.add_argument("--sessions", type=int, default=2, help="session agents (one loop each)")
    p.add_argument("--teams", type=int, default=1, help="team loops")
    p.add_argument("--http", type=int, default=2, help="concurrent HTTP run loops")
    p.add_argument("--turns-per-session", type=int, default=6)
    p.add_argument("--pace-s", type=float, default=0.2, help="pause between runs of one loop")
    p.add_argument("--hang-s", type=float, default=60.0, help="an attempt silent this long counts as hung")
    p.add_argument("--drain-s", type=float, default=30.0, help="time runs in flight get after the workload")
    p.add_argument("--json", type=Path, help="write the totals here")
    p.add_argument("--keep-logs", type=Path, help="copy the cluster's logs here")
    return p.parse_args(argv)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that `finally` stops the cluster


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.model == "embedded":
        args.hang_s = max(args.hang_s, 300.0)
    tmp = Path(tempfile.mkdtemp(prefix="raygent-chaos-"))
    os.environ["RAYGENT_HOME"] = str(tmp / "home")  # before the cluster starts: its workers inherit it
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    t0 = time.monotonic()
    for attempt in (1, 2):  # on a machine this busy a raylet may miss the GCS's start-up deadline
        cluster = LocalCluster(args.keep_logs, head_resources={"llm": 1}, worker_resources={"tools": 1},
                               dashboard=False)
        try:
            cluster.start(timeout_s=180)
            break
        except ClusterError as exc:
            if attempt == 2:
                raise
            print(f"cluster start failed, trying again: {str(exc).splitlines()[0]}", flush=True)
    print(f"cluster: head {cluster.head.ip} + worker {cluster.worker.ip} up in {cluster.start_s:.1f} s", flush=True)
    out: dict[str, Any] = {}
    try:
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
            os.environ[key] = cluster.env[key]
        os.environ["RAY_ADDRESS"] = cluster.address
        from raygent import runtime

        runtime.init(address=cluster.address, log_to_driver=False)
        import logging

        logging.getLogger("ray.serve").setLevel(logging.ERROR)  # one warning per dead replica per router update

        async def go() -> dict[str, Any]:
            c = Components()
            await c.start(args, tmp)
            await asyncio.wait_for(c.warm_up(), 180)
            print(f"deployed and warmed up in {c.deploy_s:.1f} s", flush=True)
            result = await workload(cluster, c, args)
            result["deploy_s"] = c.deploy_s
            return result

        out = asyncio.run(go())
        out["cluster_start_s"] = cluster.start_s
        out["total_s"] = time.monotonic() - t0
        out["machine"] = f"{os.cpu_count()} CPUs, {sys.platform}"
        report(out)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2, default=str))
    finally:
        try:
            from raygent import runtime

            runtime.shutdown()
        finally:
            cluster.stop()
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    ok = out and out["hung"] == 0 and out["messages_lost"] == 0 and out["handled_twice"] == 0 and \
        out["session_messages_lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
