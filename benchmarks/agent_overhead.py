"""Per-step overhead of placing the LLM and the tools as Ray actors, against in-process.

The same scripted multi-step run (a tool call per step, then an answer) is timed with every
component in-process and with the chat model and the tool registry as Ray actors on an embedded
local Ray, once with normal actor calls and once over the fast lane (Ray compiled graphs,
`deploy(..., fast_lane=True)`). The scripted model makes the model time zero, so the difference is
pure placement cost.
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
    llm = runtime.deploy(ScriptedChatModel, script(total, steps), remote=True)
    tools = runtime.deploy(ToolRegistry, default_tools(), remote=True)
    remote = Agent(llm=llm, tools=tools)
    fast = Agent(llm=runtime.deploy(ScriptedChatModel, script(total, steps), remote=True, fast_lane=True),
                 tools=runtime.deploy(ToolRegistry, default_tools(), remote=True, fast_lane=True))
    await timed_runs(local, warmup, steps)
    await timed_runs(remote, warmup, steps)
    await timed_runs(fast, warmup, steps)
    # the three modes take turns in blocks, so that a slow phase of the (shared) machine hits all
    # of them alike instead of whichever happened to run then
    samples: dict[str, list[float]] = {"local": [], "remote": [], "fast": []}
    block = 10
    for done in range(0, runs, block):
        n = min(block, runs - done)
        for name, agent in (("local", local), ("remote", remote), ("fast", fast)):
            samples[name] += await timed_runs(agent, n, steps)
    local_ms, remote_ms, fast_ms = (statistics.median(samples[k]) for k in ("local", "remote", "fast"))
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}")
    print(f"runs={runs} steps/run={steps} (each step: one model call + one tool call, model time zero)")
    print(f"in-process  median {local_ms:.3f} ms per step")
    print(f"Ray actors  median {remote_ms:.3f} ms per step")
    print(f"fast lane   median {fast_ms:.3f} ms per step (actors reached over Ray compiled graphs)")
    print(f"overhead    actor calls {remote_ms - local_ms:.3f} ms per step, "
          f"fast lane {fast_ms - local_ms:.3f} ms per step (goal <= 1.5)")
    print(f"ratio       actors / in-process = {remote_ms / local_ms:.2f}x, "
          f"fast lane / in-process = {fast_ms / local_ms:.2f}x")
    runtime.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    a = parser.parse_args()
    asyncio.run(main(a.runs, a.steps, a.warmup))
