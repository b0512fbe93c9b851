"""Tool hub costs: per-call overhead of a hub actor against an in-process hub, and 100 concurrent
calls of a 50 ms tool through one hub against plain asyncio.

1. Overhead: a tool that returns at once, called sequentially; ms per call in-process (ToolHub:
   validation, timeout wrapper, concurrency limit) and as a Ray actor (HubClient -> actor ->
   ToolHub). Goal: the actor adds at most 1.5 ms per call.
2. Concurrency: 100 calls of a tool that sleeps 50 ms, all at once, through one hub (in-process,
   and as an actor with one RPC per call), against `asyncio.gather` of the same 100 sleeps with no
   hub. Ratio = direct time / hub time. Goal: at least 0.9.

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


async def sequential_ms(calls: int, blocks: int, local, remote) -> tuple[float, float, float]:
    """Median ms per call of the in-process hub, the hub actor and a bare Ray actor, measured in
    interleaved blocks so that all three see the same (shared-machine) load."""
    import ray

    echo = ray.remote(_Echo).options(num_cpus=0).remote()
    targets = {"local": lambda i: local.call("noop", {"x": i}), "remote": lambda i: remote.call("noop", {"x": i}),
               "floor": lambda i: echo.echo.remote(i)}
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
    return tuple(statistics.median(samples[k]) for k in ("local", "remote", "floor"))  # type: ignore[return-value]


async def concurrent_s(hub, n: int, *, batch: bool) -> float:
    start = time.perf_counter()
    if batch:
        results = await hub.call_many([ToolCall(name="nap", arguments={"ms": 50}) for _ in range(n)])
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
    remote = deploy_hub("bench", [noop, nap], max_concurrency=128, num_cpus=0)
    await remote.info()  # the actor is up
    fast = deploy_hub("bench-fast", [noop, nap], max_concurrency=128, num_cpus=0, fast_lane=True)
    await fast.info()  # the actor is up and the compiled graph built

    local_ms, remote_ms, floor_ms = await sequential_ms(calls, 10, local, remote)

    direct, hub_local, hub_actor, hub_actor_batch, hub_fast, hub_fast_batch = [], [], [], [], [], []
    for _ in range(rounds):
        direct.append(await direct_s(n))
        hub_local.append(await concurrent_s(local, n, batch=False))
        hub_actor.append(await concurrent_s(remote, n, batch=False))
        hub_actor_batch.append(await concurrent_s(remote, n, batch=True))
        hub_fast.append(await concurrent_s(fast, n, batch=False))
        hub_fast_batch.append(await concurrent_s(fast, n, batch=True))
    d = statistics.median(direct)

    print(f"machine: {platform.machine()} cpus={os.cpu_count()} python {platform.python_version()} "
          f"ray {__import__('ray').__version__} (shared machine: other jobs were running)")
    print(f"[overhead] {calls} sequential calls of a no-op tool, medians")
    print(f"  in-process hub   {local_ms:.3f} ms per call")
    print(f"  hub as actor     {remote_ms:.3f} ms per call")
    print(f"  actor overhead   {remote_ms - local_ms:.3f} ms per call (ratio {remote_ms / local_ms:.1f}x); "
          f"goal <= 1.5 ms: {'met' if remote_ms - local_ms <= 1.5 else 'NOT met'}")
    print(f"  floor: bare Ray async actor round trip {floor_ms:.3f} ms; raygent's own share of the overhead "
          f"{remote_ms - local_ms - floor_ms:.3f} ms")
    print(f"[concurrency] {n} concurrent calls of a 50 ms tool, median of {rounds} rounds")
    print(f"  direct asyncio.gather          {d * 1000:.1f} ms")
    for label, values in (("in-process hub", hub_local), ("hub actor, 100 call()s", hub_actor),
                          ("hub actor, one call_many RPC", hub_actor_batch),
                          ("hub actor, fast lane, 100 call()s", hub_fast),
                          ("hub actor, fast lane, one call_many", hub_fast_batch)):
        m = statistics.median(values)
        ratio = d / m
        print(f"  {label:30s} {m * 1000:.1f} ms  ratio {ratio:.3f} (goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    runtime.kill(remote.proxy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.n))
