"""Tool hub costs: per-call overhead of a hub actor against an in-process hub, and 100 concurrent
calls of a 50 ms tool through one hub against plain asyncio.

1. Overhead: a tool that returns at once, called sequentially; ms per call in-process (ToolHub:
   validation, timeout wrapper, concurrency limit) and as a Ray actor (HubClient -> actor ->
   ToolHub), reached by default (the socket lane: the actor is on this node) and with plain Ray
   actor calls (`fast_lane=False`). Goal: the actor adds at most 1.5 ms per call.
2. Concurrency: 100 calls of a tool that sleeps 50 ms, all at once, through one hub (in-process,
   and as an actor: 100 `call()`s, which the client coalesces, or one `call_many`; by default, with
   Ray calls, and over a Ray compiled graph), against `asyncio.gather` of the same 100 sleeps with
   no hub. Ratio = direct time / hub time. Goal: at least 0.9.

Run: .venv/bin/python benchmarks/toolhub.py [--calls 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time

from raygent import runtime
from raygent.schema import ToolCall
from raygent.toolhub.base import tool
from raygent.toolhub.hub import ToolHub, deploy_hub


@tool(idempotent=True)
async def noop(x: int = 0) -> int:
    """Return x (no work: the measurement is the hub's own cost)."""
    return x


@tool(idempotent=True)
async def nap(ms: int = 50) -> int:
    """Sleep `ms` milliseconds."""
    await asyncio.sleep(ms / 1000)
    return ms


class _Echo:
    """The floor: a bare async Ray actor method, no raygent code on either side."""

    async def echo(self, x: int) -> int:
        return x


async def sequential_ms(calls: int, blocks: int, local, socket, remote) -> dict[str, float]:
    """Median ms per call of the in-process hub, the hub actor (socket lane and Ray calls) and a
    bare Ray actor, measured in interleaved blocks so that all see the same (shared-machine) load."""
    import ray

    echo = ray.remote(_Echo).options(num_cpus=0).remote()
    targets = {"local": lambda i: local.call("noop", {"x": i}), "socket": lambda i: socket.call("noop", {"x": i}),
               "remote": lambda i: remote.call("noop", {"x": i}), "floor": lambda i: echo.echo.remote(i)}
    samples: dict[str, list[float]] = {k: [] for k in targets}
    for name, fn in targets.items():  # warm-up
        for i in range(20):
            await fn(i)
    per_block = max(1, calls // blocks)
    for _ in range(blocks):
        for name, fn in targets.items():
            for i in range(per_block):
                start = time.perf_counter()
                out = await fn(i)
                samples[name].append((time.perf_counter() - start) * 1000)
                assert (out if name == "floor" else out.output) == i, out
    ray.kill(echo)
    return {k: statistics.median(v) for k, v in samples.items()}


async def concurrent_s(hub, n: int, *, batch: bool) -> float:
    # a batch's ToolCalls exist before it is sent (the agent's parser built them): not hub cost
    calls = [ToolCall(name="nap", arguments={"ms": 50}) for _ in range(n)] if batch else []
    start = time.perf_counter()
    if batch:
        results = await hub.call_many(calls)
    else:
        results = await asyncio.gather(*(hub.call("nap", {"ms": 50}) for _ in range(n)))
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return elapsed


async def direct_s(n: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(nap.fn(50) for _ in range(n)))
    return time.perf_counter() - start


async def main(calls: int, rounds: int, n: int) -> None:
    runtime.init(log_to_driver=False)
    local = ToolHub("bench", [noop, nap], max_concurrency=128)
    socket = deploy_hub("bench-socket", [noop, nap], max_concurrency=128, num_cpus=0)  # the default
    remote = deploy_hub("bench-ray", [noop, nap], max_concurrency=128, num_cpus=0, fast_lane=False)
    graph = deploy_hub("bench-graph", [noop, nap], max_concurrency=128, num_cpus=0, fast_lane=True)
    graph.proxy._socket.disabled = True  # as for a hub on another node: a compiled graph instead
    for hub in (socket, remote, graph):
        await hub.info()  # the actor is up (and the lane connected, the graph compiled)
    assert socket.proxy._socket._lane.connected and graph.proxy._lane._graph is not None

    seq = await sequential_ms(calls, 10, local, socket, remote)

    modes = {"in-process hub": (local, False),
             "hub actor (socket lane), 100 call()s": (socket, False),
             "hub actor (socket lane), one call_many": (socket, True),
             "hub actor (Ray calls), 100 call()s": (remote, False),
             "hub actor (Ray calls), one call_many": (remote, True),
             "hub actor (compiled graph), 100 call()s": (graph, False),
             "hub actor (compiled graph), one call_many": (graph, True)}
    direct: list[float] = []
    times: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(rounds):
        direct.append(await direct_s(n))
        for label, (hub, batch) in modes.items():
            times[label].append(await concurrent_s(hub, n, batch=batch))
    d = statistics.median(direct)

    print(f"machine: {platform.machine()} cpus={os.cpu_count()} python {platform.python_version()} "
          f"ray {__import__('ray').__version__}")
    print(f"[overhead] {calls} sequential calls of a no-op tool, medians")
    print(f"  in-process hub   {seq['local']:.3f} ms per call")
    for key, label in (("socket", "hub actor, socket lane (default)"), ("remote", "hub actor, Ray calls")):
        over = seq[key] - seq["local"]
        print(f"  {label:33s} {seq[key]:.3f} ms per call; actor overhead {over:.3f} ms "
              f"(goal <= 1.5 ms: {'met' if over <= 1.5 else 'NOT met'})")
    print(f"  floor of Ray calls: bare Ray async actor round trip {seq['floor']:.3f} ms; raygent's own share "
          f"{seq['remote'] - seq['local'] - seq['floor']:.3f} ms")
    print(f"[concurrency] {n} concurrent calls of a 50 ms tool, median of {rounds} rounds")
    print(f"  direct asyncio.gather          {d * 1000:.1f} ms")
    for label, values in times.items():
        m = statistics.median(values)
        ratio = d / m
        print(f"  {label:42s} {m * 1000:.1f} ms  ratio {ratio:.3f} (goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    for hub in (socket, remote, graph):
        runtime.kill(hub.proxy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.n))
