"""Load on raygent's agent API: many concurrent sessions, the embedded model at its pool's capacity,
and a soak of many runs in a row watching every actor's memory, file descriptors and sockets.

Parts (`--parts`, each prints its figures):
- sessions: S concurrent sessions (default 500), each T turns (default 2) of `POST /v1/runs?wait=true`
  in its own `session_id`, against a calculator agent on a rule-based model (ToolThenAnswerModel:
  the model costs nothing, so the server is what is measured). Every request ends one of four ways:
  completed (200, the run succeeded, the answer is right), rejected (429/503 with Retry-After),
  lost (any other answer, a failed run, a wrong answer, a 429/503 without Retry-After) or hung (no
  answer within --timeout-s). p50/p99 run latency and runs/s, against the same runs in-process
  (`Agent.run` on the same model and tools, S concurrent sessions of T turns, asyncio.gather) in
  the same process and run.
- embedded: the embedded model (Qwen2.5-Coder-0.5B on llama.cpp) behind the `assistant` agent, its
  pool sized small (`--pool-ongoing` in flight + `--pool-queued` waiting = the capacity C). First C
  concurrent agent runs (all must complete), then `--overload` x C at once: the runs beyond what
  the pool can take must be refused at once with 429/503 and Retry-After, none lost, none hung.
- soak: `--soak` runs (default 10,000) back to back (`--soak-concurrency` in flight) on the scripted
  agent. The RSS, open file descriptors and sockets of every actor of the cluster (Serve's controller
  and proxy, the ingress, agent and pool replicas; found with Ray's state API, read with psutil) at
  the start and at the end; growth over the bound (`--rss-bound-mib`, `--fd-bound`) is reported.

Everything runs on an embedded local Ray started here, Serve's HTTP proxy on a free 127.0.0.1 port,
the state (SQLite sessions, run records) in a temporary folder removed at the end.

Run: .venv/bin/python benchmarks/load.py [--parts sessions,embedded,soak] [--sessions 500] [--turns 2]
     [--soak 10000] [--json FILE]
The short versions run in CI: tests/test_load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _serving import stop_serving

AGENT = "calc"
MODEL = "calc-model"
SCRIPTED_APP = "raygent-load"
EMBEDDED_APP = "raygent-load-embedded"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def expression(i: int) -> tuple[str, int]:
    return f"{i}*7+3", i * 7 + 3


def scripted_config(state_url: str, *, capacity: int = 1024, memory: bool = True) -> dict[str, Any]:
    """The calculator agent on a rule-based model, sized for `capacity` runs at once (deployments'
    max_ongoing_requests, the callers' limits)."""
    return {
        "models": {MODEL: {"model": {"type": "scripted", "tool_then_answer": {"tool": "calculator",
                                                                              "argument": "expression"}},
                           "pool": {"num_cpus": 0, "max_ongoing_requests": capacity, "max_queued_requests": -1}}},
        "agents": {AGENT: {"description": "Does arithmetic with the calculator.", "model": MODEL,
                           "tools": ["calculator"], "memory": memory,
                           "deployment": {"num_cpus": 0, "max_ongoing_requests": capacity,
                                          "max_queued_requests": -1}}},
        "default_model": MODEL, "default_agent": AGENT,
        "state": {"url": state_url},
        "security": {"require_keys": "never", "concurrent_runs": 100_000, "requests_per_minute": 10_000_000},
    }


def deploy(config: dict[str, Any], name: str) -> None:
    from ray import serve

    from raygent.serve.app import ServeConfig, build_app

    serve.run(build_app(ServeConfig(**config)), name=name, route_prefix="/")


# -- outcomes ------------------------------------------------------------------------------------------------
@dataclass
class Outcomes:
    completed: int = 0
    rejected: int = 0
    lost: int = 0
    hung: int = 0
    seconds: list[float] = field(default_factory=list)  # completed runs' latencies
    rejected_seconds: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def total(self) -> int:
        return self.completed + self.rejected + self.lost + self.hung

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.seconds]
        return {"requests": self.total, "completed": self.completed, "rejected": self.rejected, "lost": self.lost,
                "hung": self.hung, "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "wall_s": self.wall_s,
                "runs_per_s": self.completed / self.wall_s if self.wall_s else 0.0,
                "rejected_p99_ms": pct([s * 1000 for s in self.rejected_seconds], 0.99)}

    def line(self, label: str) -> str:
        s = self.summary()
        return (f"{label}: {s['requests']} requests: completed {s['completed']}, rejected {s['rejected']}, "
                f"lost {s['lost']}, hung {s['hung']}; run latency p50 {s['p50_ms']:.1f} ms p99 {s['p99_ms']:.1f} ms; "
                f"{s['runs_per_s']:.1f} runs/s ({s['wall_s']:.1f} s)")


async def one_run(client: Any, body: dict[str, Any], value: int | None, out: Outcomes, timeout: float) -> None:
    """`POST /v1/runs?wait=true`; the answer is sorted into completed / rejected / lost / hung."""
    import httpx

    start = time.perf_counter()
    try:
        response = await asyncio.wait_for(client.post("/v1/runs", params={"wait": "true"}, json=body), timeout)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        out.hung += 1
        out.problem(f"no answer within {timeout:.0f} s for {body.get('input')!r}")
        return
    except Exception as exc:  # a reset connection: the request is lost
        out.lost += 1
        out.problem(f"{type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - start
    if response.status_code in (429, 503):
        if response.headers.get("retry-after", "").isdigit():
            out.rejected += 1
            out.rejected_seconds.append(elapsed)
        else:
            out.lost += 1
            out.problem(f"{response.status_code} without Retry-After: {response.text[:200]}")
        return
    record = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    answer = ((record.get("result") or {}).get("answer")) or ""
    if response.status_code != 200 or record.get("status") != "succeeded":
        out.lost += 1
        out.problem(f"HTTP {response.status_code}: {response.text[:300]}")
    elif value is not None and f'"result": {value}' not in answer:
        out.lost += 1
        out.problem(f"wrong answer {answer[:200]!r} (expected {value})")
    else:
        out.completed += 1
        out.seconds.append(elapsed)


async def sessions(base: str, n: int, turns: int, *, timeout: float = 120.0, offset: int = 0,
                   agent: str = AGENT) -> Outcomes:
    """`n` concurrent sessions, each `turns` runs in a row in its own session."""
    import httpx

    out = Outcomes()
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(timeout + 5), limits=limits) as client:
        async def session(i: int) -> None:
            sid = f"load-{offset + i}"
            for t in range(turns):
                text, value = expression(offset + i * turns + t)
                await one_run(client, {"agent": agent, "input": text, "session_id": sid}, value, out, timeout)

        start = time.perf_counter()
        await asyncio.gather(*(session(i) for i in range(n)))
        out.wall_s = time.perf_counter() - start
    return out


async def in_process(n: int, turns: int) -> Outcomes:
    """The same sessions in this process: `Agent.run` on the model and tools the served agent builds
    (the model from its config entry, the calculator by the AgentServer's own `build_tools`), each
    session's turns in one in-memory history; no HTTP, no Serve, no state store."""
    from raygent.actors.agent import Agent
    from raygent.llm_pool.config import build_chat_model
    from raygent.serve.agent_server import build_tools
    from raygent.toolhub.registry import ToolRegistry

    config = scripted_config("sqlite:///unused/memory.sqlite")
    llm = build_chat_model(config["models"][MODEL]["model"], MODEL)
    tools = ToolRegistry(build_tools(["calculator"]))
    out = Outcomes()

    async def session(i: int) -> None:
        agent = Agent(llm, tools=tools, max_steps=6)
        for t in range(turns):
            text, value = expression(i * turns + t)
            start = time.perf_counter()
            result = await agent.run(text)
            if f'"result": {value}' in (result.answer or ""):
                out.completed += 1
                out.seconds.append(time.perf_counter() - start)
            else:
                out.lost += 1

    start = time.perf_counter()
    await asyncio.gather(*(session(i) for i in range(n)))
    out.wall_s = time.perf_counter() - start
    return out


# -- actors: memory, descriptors, sockets --------------------------------------------------------------------
def live_actors() -> list[tuple[str, str, int]]:
    """(class name, name, pid) of every live actor: Ray's state API (the dashboard's), else the GCS's
    actor table (a local Ray started without the dashboard, as raygent's is)."""
    import ray

    try:
        from ray.util.state import list_actors

        actors = list_actors(address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")],
                             limit=1000, detail=True)
        return [(a.class_name, a.name or "", a.pid) for a in actors]
    except Exception:
        from ray._private import state

        table = state.actors(actor_state_name="ALIVE")
        return [(a["ActorClassName"], a["Name"] or "", a["Pid"]) for a in table.values()]


def actor_snapshot() -> dict[str, dict[str, Any]]:
    """Every live actor of the cluster on this machine: RSS (MiB), open fds, sockets (psutil on its PID)."""
    import psutil

    out: dict[str, dict[str, Any]] = {}
    for class_name, name, pid in live_actors():
        label = name or class_name
        if not pid:
            continue
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                rss = proc.memory_info().rss / 2**20
                fds = proc.num_fds()
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[f"{class_name}:{label}"] = {"pid": pid, "rss_mib": round(rss, 1), "fds": fds,
                                              "sockets": len(conns),
                                              "established": sum(c.status == "ESTABLISHED" for c in conns)}
    return out


def compare(start: dict[str, dict[str, Any]], end: dict[str, dict[str, Any]], *, rss_bound_mib: float,
            fd_bound: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of (actor, start, end) and the bounds each actor broke (RSS, fds, sockets)."""
    rows, broken = [], []
    for name in sorted(set(start) | set(end)):
        a, b = start.get(name), end.get(name)
        rows.append({"actor": name, "start": a, "end": b})
        if b is None:  # died (or was restarted under another id) during the soak
            broken.append(f"{name}: gone during the soak")
            continue
        if a is None:  # started during the soak (a lazily made actor): nothing to compare with
            continue
        if a["pid"] != b["pid"]:
            broken.append(f"{name}: restarted (pid {a['pid']} -> {b['pid']})")
            continue
        if b["rss_mib"] - a["rss_mib"] > rss_bound_mib:
            broken.append(f"{name}: RSS grew {b['rss_mib'] - a['rss_mib']:.1f} MiB (bound {rss_bound_mib} MiB)")
        if b["fds"] - a["fds"] > fd_bound:
            broken.append(f"{name}: fds grew {a['fds']} -> {b['fds']} (bound +{fd_bound})")
        if b["sockets"] - a["sockets"] > fd_bound:
            broken.append(f"{name}: sockets grew {a['sockets']} -> {b['sockets']} (bound +{fd_bound})")
    return rows, broken


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"  {'actor':58s} {'RSS MiB start':>13s} {'end':>7s} {'fds':>9s} {'sockets':>9s}", flush=True)
    for r in rows:
        a, b = r["start"] or {}, r["end"] or {}
        print(f"  {r['actor'][:58]:58s} {a.get('rss_mib', float('nan')):13.1f} {b.get('rss_mib', float('nan')):7.1f} "
              f"{a.get('fds', '-')!s:>4s}->{b.get('fds', '-')!s:<4s} {a.get('sockets', '-')!s:>4s}->"
              f"{b.get('sockets', '-')!s:<4s}", flush=True)


async def soak(base: str, runs: int, concurrency: int, *, timeout: float = 120.0, progress: bool = True) -> Outcomes:
    """`runs` runs back to back, `concurrency` in flight, each a new run (and session) of the agent."""
    import httpx

    out = Outcomes()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(runs):
        queue.put_nowait(i)
    started = time.perf_counter()

    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(timeout + 5)) as client:
        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                text, value = expression(5_000_000 + i)
                await one_run(client, {"agent": AGENT, "input": text}, value, out, timeout)
                if progress and out.total % 1000 == 0:
                    print(f"  soak: {out.total}/{runs} runs, {out.total / (time.perf_counter() - started):.1f} "
                          f"runs/s, lost {out.lost}, hung {out.hung}", flush=True)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    out.wall_s = time.perf_counter() - started
    return out


# -- parts ---------------------------------------------------------------------------------------------------
async def part_sessions(args: argparse.Namespace, base: str) -> dict[str, Any]:
    warm = await sessions(base, min(20, args.sessions), 1, offset=9_000_000)
    print(warm.line("sessions warm-up (20 runs)"), flush=True)
    served = await sessions(base, args.sessions, args.turns, timeout=args.timeout_s)
    print(served.line(f"sessions served   {args.sessions} concurrent sessions x {args.turns} turns"), flush=True)
    for p in served.problems[:5]:
        print(f"    problem: {p}", flush=True)
    local = await in_process(args.sessions, args.turns)
    print(local.line(f"sessions in-process {args.sessions} concurrent sessions x {args.turns} turns"), flush=True)
    s, l_ = served.summary(), local.summary()
    ratio = s["runs_per_s"] / l_["runs_per_s"] if l_["runs_per_s"] else float("nan")
    print(f"sessions served/in-process runs/s = {ratio:.3f}; added p50 {s['p50_ms'] - l_['p50_ms']:.1f} ms", flush=True)
    return {"served": s, "in_process": l_, "ratio": ratio, "problems": served.problems}


async def part_embedded(args: argparse.Namespace, base: str, state_url: str) -> dict[str, Any]:
    from raygent.llm_pool.embedded import DEFAULT_MODEL, ensure_embedded_model
    from raygent.serve.app import DEFAULT_AGENT, default_config

    ensure_embedded_model(DEFAULT_MODEL)
    config = default_config().model_dump(mode="json")
    pool = config["models"][DEFAULT_MODEL]["pool"]
    pool.update(max_ongoing_requests=args.pool_ongoing, max_queued_requests=args.pool_queued)
    config["models"][DEFAULT_MODEL]["model"]["parallel"] = args.pool_ongoing
    config["state"] = {"url": state_url}
    config["security"] = {"require_keys": "never", "concurrent_runs": 100_000, "requests_per_minute": 10_000_000}
    start = time.perf_counter()
    deploy(config, EMBEDDED_APP)
    capacity = args.pool_ongoing * pool["num_replicas"] + args.pool_queued
    print(f"embedded {DEFAULT_MODEL}: deployed in {time.perf_counter() - start:.1f} s; pool: "
          f"{pool['num_replicas']} replica, max_ongoing_requests {args.pool_ongoing} (llama.cpp parallel "
          f"{args.pool_ongoing}), max_queued_requests {args.pool_queued}: capacity {capacity} model calls",
          flush=True)
    import httpx

    body = {"agent": DEFAULT_AGENT, "input": "What is 17*23? Use the calculator.", "max_tokens": args.max_tokens,
            "max_steps": 3}
    results: dict[str, Any] = {"capacity": capacity}
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(args.embedded_timeout_s + 5)) as client:
        for label, n in (("at capacity", capacity), (f"{args.overload}x capacity", capacity * args.overload)):
            out = Outcomes()
            start = time.perf_counter()
            await asyncio.gather(*(one_run(client, dict(body), None, out, args.embedded_timeout_s) for _ in range(n)))
            out.wall_s = time.perf_counter() - start
            print(out.line(f"embedded {label} ({n} concurrent agent runs)"), flush=True)
            if out.rejected_seconds:
                print(f"    refusals answered in p50 {pct(out.rejected_seconds, 0.5) * 1000:.0f} ms, "
                      f"max {max(out.rejected_seconds) * 1000:.0f} ms", flush=True)
            for p in out.problems[:5]:
                print(f"    problem: {p}", flush=True)
            results[label] = out.summary()
    from ray import serve

    serve.delete(EMBEDDED_APP)
    return results


async def part_soak(args: argparse.Namespace, base: str) -> dict[str, Any]:
    await sessions(base, 20, 1, offset=8_000_000)  # warm: every replica has served before the first snapshot
    before = actor_snapshot()
    out = await soak(base, args.soak, args.soak_concurrency, timeout=args.timeout_s)
    await asyncio.sleep(1.0)
    after = actor_snapshot()
    rows, broken = compare(before, after, rss_bound_mib=args.rss_bound_mib, fd_bound=args.fd_bound)
    print(out.line(f"soak {args.soak} runs ({args.soak_concurrency} in flight)"), flush=True)
    print_rows(rows)
    print(f"soak bounds (RSS +{args.rss_bound_mib} MiB, fds/sockets +{args.fd_bound} per actor): "
          f"{'met' if not broken else 'NOT met: ' + '; '.join(broken)}", flush=True)
    return {"outcomes": out.summary(), "actors": rows, "broken": broken, "problems": out.problems}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from ray import serve

    from raygent import runtime

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="raygent-load-"))
    state_url = f"sqlite://{tmp / 'memory.sqlite'}"
    print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared), load average {os.getloadavg()[0]:.2f}, "
          f"python {platform.python_version()}", flush=True)
    results: dict[str, Any] = {}
    try:
        runtime.init(log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        base = f"http://127.0.0.1:{port}"
        if {"sessions", "soak"} & set(parts):
            start = time.perf_counter()
            deploy(scripted_config(state_url), SCRIPTED_APP)
            print(f"scripted app deployed in {time.perf_counter() - start:.1f} s", flush=True)
            if "sessions" in parts:
                results["sessions"] = await part_sessions(args, base)
            if "soak" in parts:
                results["soak"] = await part_soak(args, base)
            serve.delete(SCRIPTED_APP)
        if "embedded" in parts:
            results["embedded"] = await part_embedded(args, base, state_url)
        return results
    finally:
        stop_serving(tmp)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="sessions,embedded,soak")
    parser.add_argument("--sessions", type=int, default=500, help="sessions: concurrent sessions")
    parser.add_argument("--turns", type=int, default=2, help="sessions: runs per session, in a row")
    parser.add_argument("--timeout-s", type=float, default=180.0, help="a request without an answer by then hung")
    parser.add_argument("--pool-ongoing", type=int, default=2, help="embedded: the pool's max_ongoing_requests")
    parser.add_argument("--pool-queued", type=int, default=2, help="embedded: the pool's max_queued_requests")
    parser.add_argument("--overload", type=int, default=4, help="embedded: the second wave is this many x capacity")
    parser.add_argument("--max-tokens", type=int, default=48, help="embedded: max_tokens of each model call")
    parser.add_argument("--embedded-timeout-s", type=float, default=600.0)
    parser.add_argument("--soak", type=int, default=10_000, help="soak: runs in a row")
    parser.add_argument("--soak-concurrency", type=int, default=4, help="soak: runs in flight")
    parser.add_argument("--rss-bound-mib", type=float, default=64.0, help="soak: allowed RSS growth per actor")
    parser.add_argument("--fd-bound", type=int, default=16, help="soak: allowed fd / socket growth per actor")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    arguments = parse_args()
    figures = asyncio.run(main(arguments))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2, default=str))
    sys.exit(0)
