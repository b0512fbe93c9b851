"""The message hub and teams under load, against AutoGen Core's in-process runtime.

Parts (each prints its figures; `--parts` picks some):
- hub: delivered messages/s and latency (p50/p99, send to receive) through one hub with
  persistence on (SQLite, group commits): 1 -> 1 and 100 agents all-to-all, the hub in this process
  and the hub as a Ray actor (every message crosses two process boundaries), plus the unloaded
  round trip (send, receive, ack one message at a time).
- autogen: the same request/reply workload (20,000 concurrent requests over 100 echo agents) on
  AutoGen Core's SingleThreadedAgentRuntime (one process, nothing persisted) and on raygent
  Coordinators over one hub (persisted); ratio raygent/autogen. AutoGen runs in its own process from
  `pip install --target .bench/autogen autogen-core==0.7.5` (it pins protobuf 5, which Ray's
  environment cannot share).
- scale: 1,000 agents (the agent loop on scripted models) in 100 rooms (10 per room, 2 hub shards), every agent messages
  every other in its room for R rounds; lost and duplicated messages counted from the log, peak RSS.
- story: a 4-page story with the writers concurrent (2 replicas on one 2-slot embedded model) vs
  the same team with one writer (pages written one after another); ratio concurrent/sequential.

Run: .venv/bin/python benchmarks/multi_agent.py [--parts hub,autogen,scale,story]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from raygent import runtime
from raygent.actors.agent import Agent
from raygent.actors.coordinator import AgentHandler, Coordinator
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.actors.hub import MessageHub
from raygent.actors.log import SQLiteLog
from raygent.actors.team import HubShards
from raygent.schema import Envelope, Message

TMP = Path(tempfile.mkdtemp(prefix="raygent-bench-"))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def hub_in(where: str, name: str, **kwargs: Any) -> Any:
    path = str(TMP / f"{name}-{time.time_ns()}.sqlite")
    if where == "process":
        return MessageHub(SQLiteLog(path), name=name, **kwargs)
    return runtime.deploy(MessageHub, remote=True, init_kwargs={"log": path, "name": name, **kwargs},
                          max_concurrency=10_000)


# -- hub ---------------------------------------------------------------------------------------------
async def one_to_one(hub: Any, n: int, batch: int) -> dict[str, float]:
    await hub.register("src")
    await hub.register("dst")
    latencies: list[float] = []
    body = Message.user("ping")

    async def produce() -> None:
        for i in range(0, n, batch):
            now = time.time()
            await hub.send_many([Envelope(sender="src", recipient="dst", content=body, created_at=now)
                                 for _ in range(min(batch, n - i))])

    async def consume() -> None:
        got = 0
        while got < n:
            envs = await hub.receive("dst", max_items=batch, timeout_s=10)
            now = time.time()
            latencies.extend(now - e.created_at for e in envs)
            await hub.ack("dst", [e.id for e in envs])
            got += len(envs)

    start = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - start
    log = (await hub.stats())["log"]
    assert log["acked"] == n and log["unacked"] == 0, log
    return {"msgs_per_s": n / elapsed, "p50_ms": pct(latencies, 0.5) * 1000, "p99_ms": pct(latencies, 0.99) * 1000}


async def all_to_all(hub: Any, agents: int, rounds: int, batch: int = 99) -> dict[str, float]:
    names = [f"a{i}" for i in range(agents)]
    for name in names:
        await hub.register(name)
    latencies: list[float] = []
    expected = agents * (agents - 1) * rounds
    body = Message.user("hi")

    async def agent(me: str) -> None:
        others = [n for n in names if n != me]
        for _ in range(rounds):
            now = time.time()
            await hub.send_many([Envelope(sender=me, recipient=o, content=body, created_at=now) for o in others])
        got = 0
        while got < (agents - 1) * rounds:
            envs = await hub.receive(me, max_items=batch * 4, timeout_s=30)
            now = time.time()
            latencies.extend(now - e.created_at for e in envs)
            await hub.ack(me, [e.id for e in envs])
            got += len(envs)

    start = time.perf_counter()
    await asyncio.gather(*(agent(n) for n in names))
    elapsed = time.perf_counter() - start
    log = (await hub.stats())["log"]
    assert log["acked"] == expected and log["unacked"] == 0, log
    return {"msgs_per_s": expected / elapsed, "p50_ms": pct(latencies, 0.5) * 1000,
            "p99_ms": pct(latencies, 0.99) * 1000}


async def unloaded(hub: Any, n: int = 300) -> dict[str, float]:
    """One message at a time, nothing else in flight: one-way latency (send called -> a waiting
    receiver has it, persisted on the way) and the round trip (send, receive, ack in turn)."""
    await hub.register("ping")
    one_way, round_trip = [], []
    for _ in range(n):
        waiting = asyncio.ensure_future(hub.receive("ping", timeout_s=5))
        await asyncio.sleep(0.002)  # the receiver is parked in the hub
        start = time.perf_counter()
        await hub.send(Envelope(sender="x", recipient="ping", content=Message.user("1")))
        (env,) = await waiting
        one_way.append(time.perf_counter() - start)
        await hub.ack("ping", [env.id])
    for _ in range(n):
        start = time.perf_counter()
        await hub.send(Envelope(sender="x", recipient="ping", content=Message.user("1")))
        (env,) = await hub.receive("ping", timeout_s=5)
        await hub.ack("ping", [env.id])
        round_trip.append(time.perf_counter() - start)
    return {"one_way_p50_ms": pct(one_way, 0.5) * 1000, "one_way_p99_ms": pct(one_way, 0.99) * 1000,
            "round_trip_p50_ms": pct(round_trip, 0.5) * 1000, "round_trip_p99_ms": pct(round_trip, 0.99) * 1000}


async def part_hub(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for where in ("process", "actor"):
        out[f"1to1_{where}"] = await one_to_one(hub_in(where, f"h11{where}", mailbox_size=100_000), args.messages,
                                                args.batch)
        out[f"all_to_all_{where}"] = await all_to_all(hub_in(where, f"hall{where}", mailbox_size=100_000), 100,
                                                      args.rounds)
        out[f"unloaded_{where}"] = await unloaded(hub_in(where, f"hun{where}"))
        for key in (f"1to1_{where}", f"all_to_all_{where}", f"unloaded_{where}"):
            print(f"hub {key:22s} " + "  ".join(f"{k}={v:,.2f}" for k, v in out[key].items()), flush=True)
    return out


# -- autogen comparison --------------------------------------------------------------------------------
AUTOGEN_WORKLOAD = """
import asyncio, json, sys, time
from dataclasses import dataclass
from autogen_core import (AgentId, DefaultTopicId, MessageContext, RoutedAgent, SingleThreadedAgentRuntime,
                          default_subscription, message_handler)

@dataclass
class Ping:
    text: str

class Echo(RoutedAgent):
    @message_handler
    async def on_ping(self, message: Ping, ctx: MessageContext) -> Ping:
        return Ping(message.text.upper())

async def main(agents, requests):
    rt = SingleThreadedAgentRuntime()
    await Echo.register(rt, "echo", lambda: Echo("echo"))
    rt.start()
    times = []
    async def one(i):
        t = time.perf_counter()
        reply = await rt.send_message(Ping(f"m{i}"), AgentId("echo", str(i % agents)))
        assert reply.text == f"M{i}"
        times.append(time.perf_counter() - t)
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    elapsed = time.perf_counter() - start
    await rt.stop_when_idle()
    times.sort()
    print(json.dumps({"requests_per_s": requests / elapsed, "p50_ms": times[len(times) // 2] * 1000}))

received = 0

@default_subscription
class Sink(RoutedAgent):
    @message_handler
    async def on_ping(self, message: Ping, ctx: MessageContext) -> None:
        global received
        received += 1

async def one_way(messages):
    # one publisher, one subscriber: AutoGen's one-way rate (nothing persisted, one process)
    rt = SingleThreadedAgentRuntime()
    await Sink.register(rt, "sink", lambda: Sink("sink"))
    rt.start()
    start = time.perf_counter()
    for i in range(messages):
        await rt.publish_message(Ping(f"m{i}"), DefaultTopicId())
    await rt.stop_when_idle()
    elapsed = time.perf_counter() - start
    assert received == messages, received
    print(json.dumps({"msgs_per_s": messages / elapsed}))

if sys.argv[1] == "one_way":
    asyncio.run(one_way(int(sys.argv[2])))
else:
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def autogen_workload(site: str, *argv: str) -> dict[str, float]:
    """AutoGen Core's SingleThreadedAgentRuntime on the same workload, in a process of its own:
    autogen-core pins protobuf 5.x, which raygent's environment (Ray, google-api-core) cannot share,
    so it lives in its own folder (`pip install --target SITE autogen-core==0.7.5`)."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": site}
    proc = subprocess.run([sys.executable, "-c", AUTOGEN_WORKLOAD, *argv], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the AutoGen workload failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def raygent_request_reply(where: str, agents: int, requests: int, batch: int) -> dict[str, float]:
    hub = hub_in(where, f"rr{where}", mailbox_size=100_000)

    async def echo(env: Envelope, ctx: Any) -> str:
        return (env.content.content or "").upper()

    coordinators = [Coordinator(f"echo{i}", echo, hub, batch_size=64, concurrency=1) for i in range(agents)]
    for c in coordinators:
        await c.start()
    await hub.register("driver")
    sent_at: dict[str, float] = {}
    times: list[float] = []
    start = time.perf_counter()

    async def produce() -> None:
        for i in range(0, requests, batch):
            envs = [Envelope(id=f"q{j}", sender="driver", recipient=f"echo{j % agents}", content=Message.user(f"m{j}"),
                             reply_to="driver") for j in range(i, min(i + batch, requests))]
            now = time.perf_counter()
            for e in envs:
                sent_at[e.id] = now
            await hub.send_many(envs)

    async def collect() -> None:
        got = 0
        while got < requests:
            envs = await hub.receive("driver", max_items=1000, timeout_s=30)
            now = time.perf_counter()
            for e in envs:
                times.append(now - sent_at[e.correlation_id])
            await hub.ack("driver", [e.id for e in envs])
            got += len(envs)

    await asyncio.gather(produce(), collect())
    elapsed = time.perf_counter() - start
    for c in coordinators:
        await c.stop()
    return {"requests_per_s": requests / elapsed, "p50_ms": pct(times, 0.5) * 1000}


async def part_autogen(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.autogen_site and Path(args.autogen_site, "autogen_core").exists():
        out["autogen"] = autogen_workload(args.autogen_site, "100", str(args.requests))
        out["autogen_one_way"] = autogen_workload(args.autogen_site, "one_way", str(args.messages))
    else:
        print(f"autogen: not measured: no autogen_core in {args.autogen_site!r} "
              f"(pip install --target {args.autogen_site} autogen-core==0.7.5)")
    out["raygent_process"] = await raygent_request_reply("process", 100, args.requests, args.batch)
    for key, figures in out.items():
        print(f"request/reply {key:16s} " + "  ".join(f"{k}={v:,.3f}" for k, v in figures.items()), flush=True)
    if "autogen" in out:
        ratio = out["raygent_process"]["requests_per_s"] / out["autogen"]["requests_per_s"]
        out["ratio_raygent_over_autogen"] = ratio
        print(f"request/reply ratio raygent (persisted) / autogen (in memory) = {ratio:.2f}")
    if "autogen_one_way" in out and "1to1_actor" in args.results.get("hub", {}):
        ratio = args.results["hub"]["1to1_actor"]["msgs_per_s"] / out["autogen_one_way"]["msgs_per_s"]
        out["ratio_hub_actor_over_autogen_one_way"] = ratio
        print(f"one-way ratio raygent hub actor (persisted, across processes) / autogen (in memory) = {ratio:.2f}")
    return out


# -- scale ----------------------------------------------------------------------------------------------
async def part_scale(args: argparse.Namespace) -> dict[str, Any]:
    shards = HubShards([MessageHub(SQLiteLog(TMP / f"scale-{i}.sqlite"), name=f"s{i}", mailbox_size=10_000)
                        for i in range(args.shards)])
    rooms, per_room = args.scale_rooms, args.scale_per_room
    handled: dict[str, int] = {}
    per_agent = (per_room - 1) * args.scale_rounds

    def agent_handler() -> Any:
        """An Agent on a scripted model (one reply per message it will get): the real agent loop."""
        inner = AgentHandler(Agent(ScriptedChatModel(["noted"] * per_agent), tools=None, system="You are a peer."))

        async def handle(env: Envelope, ctx: Any) -> Any:
            handled[env.id] = handled.get(env.id, 0) + 1
            return await inner(env, ctx)
        return handle

    coordinators = []
    for r in range(rooms):
        room = f"room{r}"
        hub = shards.for_room(room)
        for a in range(per_room):
            c = Coordinator(f"{room}.a{a}", agent_handler(), hub, room=room, batch_size=16)
            await c.start()
            coordinators.append((room, c))
    start = time.perf_counter()
    sends = []
    for room, c in coordinators:
        hub = shards.for_room(room)
        others = [f"{room}.a{a}" for a in range(per_room) if f"{room}.a{a}" != c.name]
        envs = [Envelope(id=f"{c.name}>{o}#{k}", sender=c.name, recipient=o, room=room, content=Message.user("hi"))
                for k in range(args.scale_rounds) for o in others]
        sends.append(hub.send_many(envs))
    await asyncio.gather(*sends)
    expected = rooms * per_room * (per_room - 1) * args.scale_rounds
    while len(handled) < expected and time.perf_counter() - start < 300:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)  # let the last acks land
    logs = [(await h.stats())["log"] for h in shards.hubs]
    appended = sum(x["appended"] for x in logs)
    acked = sum(x["acked"] for x in logs)
    out = {"agents": rooms * per_room, "rooms": rooms, "expected": expected, "handled": len(handled),
           "lost": expected - len(handled), "duplicated": sum(v - 1 for v in handled.values()),
           "log_appended": appended, "log_acked": acked, "seconds": elapsed, "msgs_per_s": expected / elapsed,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("scale " + "  ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))
    for _, c in coordinators:
        await c.stop()
    return out


# -- story ----------------------------------------------------------------------------------------------
async def part_story(args: argparse.Namespace) -> dict[str, Any]:
    """The same 4-page story, writers sequential (1 writer) vs concurrent (2 writer replicas), on
    two layouts of the embedded model: a 2-replica Serve pool (1 llama.cpp thread each) and one
    in-process model with 2 batch slots (continuous batching). The planner's and the assets' time
    is the same in both; the ratio is of the pages phase (writing + narrating)."""
    from ray import serve

    from raygent.apps.story.studio import StoryRequest, StoryStudio
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.llm_pool.pool import DEFAULT_APP_PREFIX, serve_model

    out: dict[str, Any] = {}
    runtime.init(log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")
    except Exception:
        pass
    layouts = {
        "pool2": lambda: serve_model("story-bench", LlamaCppChatModel, n_threads=1, lora=None,
                                     pool={"num_replicas": 2, "num_cpus": 1, "max_ongoing_requests": 2}),
        "batched2": lambda: LlamaCppChatModel(parallel=2, lora=None),
    }
    request = StoryRequest(topic="a little fox who learns to share", pages=4, language="en", seed=args.seed)
    for layout, make_llm in layouts.items():
        llm = make_llm()
        for label, writers in (("sequential", 1), ("concurrent", 2)):
            studio = StoryStudio(llm=llm, writers=writers, log=":memory:")
            start = time.perf_counter()
            result = await studio.make(request, TMP / f"story-{layout}-{label}")
            seconds = time.perf_counter() - start
            key = f"{layout}_{label}"
            timings = result.book.timings
            out[key] = {"seconds": seconds, "plan_s": timings.get("plan_s", float("nan")),
                        "texts_s": timings.get("texts_s", float("nan")), "pages_s": timings.get("pages_s", float("nan")),
                        "text_chars": sum(len(p.text or "") for p in result.book.pages),
                        "missing": len(result.bound.missing)}
            print(f"story {key:22s} total {seconds:5.1f} s  plan {out[key]['plan_s']:5.1f} s  "
                  f"texts {out[key]['texts_s']:5.1f} s ({out[key]['text_chars']} chars)  "
                  f"pages+assets {out[key]['pages_s']:5.1f} s  missing {out[key]['missing']}", flush=True)
        ratio = out[f"{layout}_concurrent"]["texts_s"] / out[f"{layout}_sequential"]["texts_s"]
        out[f"{layout}_ratio"] = ratio
        print(f"story {layout}: writing phase concurrent/sequential = {ratio:.2f} (goal <= 0.7)", flush=True)
        if layout == "pool2":  # free its two cores for the next layout
            serve.delete(DEFAULT_APP_PREFIX + "story-bench")
    return out


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    parts = args.parts.split(",")
    if {"hub", "autogen"} & set(parts):
        runtime.init(log_to_driver=False)
    args.results = {}
    for part in parts:
        args.results[part] = await {"hub": part_hub, "autogen": part_autogen, "scale": part_scale,
                                    "story": part_story}[part](args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="hub,autogen,scale,story")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--scale-rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale-rooms", type=int, default=100)
    parser.add_argument("--scale-per-room", type=int, default=10)
    parser.add_argument("--autogen-site", default=".bench/autogen",
                        help="a folder with autogen-core installed by pip install --target (kept apart from raygent's "
                             "environment: it pins protobuf 5)")
    asyncio.run(main(parser.parse_args()))
