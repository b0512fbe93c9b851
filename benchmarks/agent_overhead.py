"""Per-step overhead of placing the LLM and the tools as Ray actors, against in-process.

The same scripted multi-step run (a tool call per step, then an answer) is timed with every
component in-process and with the chat model and the tool registry as Ray actors on an embedded
local Ray, reached three ways: the default (`deploy(...)`: the socket lane, a Unix socket to the
actor's event loop, since the actors are on this node), plain Ray actor calls
(`deploy(..., fast_lane=False)`), and a Ray compiled graph (what `fast_lane=True` uses for an
actor on another node). The scripted model makes the model time zero, so the difference is pure
placement cost.
Goal: at most 1.5 ms per step over in-process.

Run: .venv/bin/python benchmarks/agent_overhead.py [--runs 60] [--steps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time

from raygent import Agent, runtime
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.toolhub.builtin import default_tools
from raygent.toolhub.registry import ToolRegistry


def script(runs: int, steps: int) -> list[str]:
    replies = []
    for r in range(runs):
        for s in range(steps - 1):
            call = {"name": "calculator", "arguments": {"expression": f"{r}+{s}"}}
            replies.append("<tool_call>\n" + json.dumps(call) + "\n</tool_call>")
        replies.append(f"done {r}")
    return replies


async def timed_runs(agent: Agent, runs: int, steps: int) -> list[float]:
    per_step = []
    for _ in range(runs):
        agent.reset()
        start = time.perf_counter()
        result = await agent.run("go")
        assert result.steps == steps, result
        per_step.append((time.perf_counter() - start) / steps * 1000)
    return per_step


async def main(runs: int, steps: int, warmup: int) -> None:
    total = runs + warmup
    local = Agent(llm=ScriptedChatModel(script(total, steps)), tools=default_tools())
    runtime.init(log_to_driver=False)

    def placed(fast_lane: bool | None, graph: bool = False) -> Agent:
        llm = runtime.deploy(ScriptedChatModel, script(total, steps), remote=True, fast_lane=fast_lane)
        tools = runtime.deploy(ToolRegistry, default_tools(), remote=True, fast_lane=fast_lane)
        if graph:  # as for actors on another node: no socket route, the compiled graph instead
            llm._socket.disabled = tools._socket.disabled = True
        return Agent(llm=llm, tools=tools)

    agents = {"local": local, "socket": placed(None), "ray": placed(False), "graph": placed(True, graph=True)}
    for agent in agents.values():
        await timed_runs(agent, warmup, steps)
    # the modes take turns in blocks, so that a slow phase of the (shared) machine hits all of
    # them alike instead of whichever happened to run then
    samples: dict[str, list[float]] = {k: [] for k in agents}
    block = 10
    for done in range(0, runs, block):
        n = min(block, runs - done)
        for name, agent in agents.items():
            samples[name] += await timed_runs(agent, n, steps)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}")
    print(f"runs={runs} steps/run={steps} (each step: one model call + one tool call, model time zero)")
    print(f"in-process           median {ms['local']:.3f} ms per step")
    labels = {"socket": "actors, default (socket lane)", "ray": "actors, Ray calls", "graph": "actors, compiled graph"}
    for key, label in labels.items():
        over = ms[key] - ms["local"]
        print(f"{label:30s} median {ms[key]:.3f} ms per step; overhead {over:.3f} ms per step "
              f"(ratio {ms[key] / ms['local']:.2f}x; goal <= 1.5: {'met' if over <= 1.5 else 'NOT met'})")
    runtime.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    a = parser.parse_args()
    asyncio.run(main(a.runs, a.steps, a.warmup))
