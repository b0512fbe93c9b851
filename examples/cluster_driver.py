"""raygent on a Ray cluster: the LLM pool on the model nodes, tool hubs and agents on the CPU nodes.

The cluster's nodes are told apart by custom resources (see docs/cluster.md): nodes that serve
models offer `llm` (GPU workers: `ray start ... --resources '{"llm": 1}'`), nodes for tools and
agents offer `tools` (`--resources '{"tools": 1}'`). This driver

1. connects through RAY_ADDRESS (`ray job submit` sets it too); without one it starts an embedded
   one-node Ray that offers both resources, so the same script runs on a laptop;
2. serves the model as a pool of Serve replicas that each need `llm` (`serve_model`, PoolConfig);
3. deploys the tool hubs (one actor per domain of the chosen built-ins) and the team's message hub,
   each needing a little `tools`;
4. runs one agent (an actor needing `tools`) on a question that needs the calculator: its model
   calls go to the pool on the llm node, its tool calls to the hubs on the tools node;
5. runs a small team (researcher -> writer, both actors needing `tools`) as a sequential pipeline;
6. prints where each component ran (node id and IP, from Ray's actor table) and the answers; with
   `--json`, also one line `CLUSTER_DRIVER_RESULT {...}` for scripts and tests.

The model is the embedded default (Qwen2.5-Coder-0.5B on llama.cpp, CPU) unless `--scripted`
selects ScriptedToolModel below: a deterministic stand-in that calls the calculator for an
arithmetic question and answers by quoting the tool result, so a run takes seconds.

Run:
  .venv/bin/python examples/cluster_driver.py                      # embedded Ray and model
  RAY_ADDRESS=10.0.0.5:6379 .venv/bin/python examples/cluster_driver.py --scripted --json
  ray job submit --address http://10.0.0.5:8265 --working-dir . -- python examples/cluster_driver.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from raygent import runtime
from raygent.llm_pool.base import ChatModel
from raygent.llm_pool.formats import get_format
from raygent.schema import Completion, GenerationParams, Message, ToolSpec, Usage

LLM_RESOURCE = "llm"      # offered by the nodes that serve models (GPU workers)
TOOLS_RESOURCE = "tools"  # offered by the CPU nodes for tool hubs and agents
QUESTION = "What is 12345 * 6789? Use the calculator and quote its result."
TEAM_TASK = "How many seconds are in 7 weeks (7 * 24 * 3600 * 7)? Compute it with the calculator."
RESEARCHER_SYSTEM = ("You are a researcher. Use the calculator for any arithmetic and state the result with the "
                     "expression you computed.")
WRITER_SYSTEM = "You are a writer. Restate the researcher's finding as one short, plain sentence."
RESULT_TAG = "CLUSTER_DRIVER_RESULT"

_ARITHMETIC = re.compile(r"[\d(][\d\s.+\-*/()]*[\d)]")


class ScriptedToolModel(ChatModel):
    """`--scripted`: a deterministic model for tests and smoke runs, safe for any number of concurrent
    conversations (unlike a replay list). A turn that ends with a tool result is answered by quoting
    it; a user message naming an offered tool and holding a JSON object gets a call of that tool with
    those arguments; one holding an arithmetic expression, with a `calculator` offered, a calculator
    call. Calls are written as hermes text and read by raygent's own parser (as a real model's reply
    would be). Anything else gets a one-line restatement. `delay_s` makes every reply take that long."""

    model_name = "scripted-tool-model"

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.format = get_format("hermes")

    def _reply(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None) -> str:
        last = messages[-1] if messages else Message.user("")
        if last.role == "tool":
            return f"The {last.name or 'tool'} tool returned {last.content}."
        text = last.content if isinstance(last.content, str) else str(last.content or "")
        offered = {t.name for t in tools or []}
        named = [name for name in offered if re.search(rf"\b{re.escape(name)}\b", text)]
        arguments = re.search(r"\{.*\}", text, flags=re.DOTALL)
        if named and arguments:  # "call <tool> with {json}": that call, as asked
            try:
                call = {"name": max(named, key=len), "arguments": json.loads(arguments.group(0))}
                return "<tool_call>\n" + json.dumps(call) + "\n</tool_call>"
            except ValueError:
                pass
        expressions = [m.group(0).strip() for m in _ARITHMETIC.finditer(text) if re.search(r"[-+*/]", m.group(0))]
        if "calculator" in offered and expressions:
            expression = max(expressions, key=len)
            return "<tool_call>\n" + json.dumps({"name": "calculator", "arguments": {"expression": expression}}) + \
                "\n</tool_call>"
        return "In short: " + " ".join(text.split())[:300]

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        reply = self._reply(messages, tools)
        parsed = self.format.parse(reply, list(tools) if tools else None)
        n_prompt = sum(len(m.content or "") for m in messages if isinstance(m.content, str)) // 4
        n_out = max(1, len(reply) // 4)
        return Completion(text=parsed.text, tool_calls=parsed.tool_calls, raw=reply, model=self.model_name,
                          finish_reason="tool_calls" if parsed.tool_calls else "stop", parse_errors=parsed.errors,
                          usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out))


# -- connecting and placing ---------------------------------------------------------------------------
def connect() -> dict[str, float]:
    """RAY_ADDRESS (or `ray job submit`'s driver environment) -> that cluster; otherwise an embedded
    one-node Ray offering both custom resources, so the placement below works unchanged."""
    if os.environ.get("RAY_ADDRESS"):
        resources = runtime.init(log_to_driver=False)
    else:
        resources = runtime.init(log_to_driver=False, resources={LLM_RESOURCE: 1, TOOLS_RESOURCE: 8})
    missing = [r for r in (LLM_RESOURCE, TOOLS_RESOURCE) if r not in resources]
    if missing:
        raise SystemExit(f"the cluster offers no {' and no '.join(repr(r) for r in missing)} resource: start the "
                         f"model nodes with --resources '{{\"{LLM_RESOURCE}\": 1}}' and the CPU nodes with "
                         f"--resources '{{\"{TOOLS_RESOURCE}\": 1}}' (see docs/cluster.md)")
    return resources


def node_table() -> dict[str, dict[str, Any]]:
    """Every node Ray knows: id -> IP, alive, and its custom resources (the tags)."""
    import ray

    plain = {"CPU", "GPU", "memory", "object_store_memory"}
    return {n["NodeID"]: {"ip": n["NodeManagerAddress"], "alive": n["Alive"],
                          "tags": {k: v for k, v in n["Resources"].items()
                                   if k not in plain and not k.startswith(("node:", "accelerator_type:"))}}
            for n in ray.nodes()}


def actor_node(component: Any) -> str | None:
    """The node id an actor-backed component runs on (a raygent actor proxy, a HubClient or a Ray
    actor handle), read from the GCS actor table; None if unknown (e.g. not started yet)."""
    handle = getattr(getattr(component, "proxy", component), "actor_handle", component)
    actor_id = getattr(handle, "_actor_id", None)
    if actor_id is None:
        return None
    from ray._private import state

    info = state.actors(actor_id=actor_id.hex())
    if not info or info.get("State") != "ALIVE":
        return None
    return info["Address"]["NodeID"] or None


def start_pool(args: argparse.Namespace) -> Any:
    """The model pool: replicas that each need `llm_per_replica` of the `llm` resource."""
    from ray import serve

    from raygent.llm_pool.pool import PoolConfig, serve_model

    try:  # agents reach the pool through its handle: no HTTP proxy (and no port 8000 to take)
        serve.start(proxy_location="Disabled")
    except Exception as exc:  # noqa: BLE001 - Serve already running on this cluster: use it as it is
        print(f"serve.start: {exc}", flush=True)
    pool = PoolConfig(num_replicas=args.replicas, resources={LLM_RESOURCE: args.llm_per_replica},
                      num_cpus=0 if args.scripted else 1, num_gpus=args.gpus_per_replica)
    if args.scripted:
        return serve_model(args.pool_name, ScriptedToolModel, delay_s=args.model_delay_s, pool=pool)
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    return serve_model(args.pool_name, LlamaCppChatModel, n_ctx=4096, pool=pool)


def start_hubs(tool_names: Sequence[str], **hub_options: Any) -> Any:
    """One restartable hub actor per domain of the named built-ins, each needing a little `tools`."""
    from raygent.toolhub.builtin import BUILTIN_TOOLS, builtin_hubs

    tools = [BUILTIN_TOOLS[name]() for name in tool_names]
    hub_options.setdefault("resources", {TOOLS_RESOURCE: 0.01})
    return builtin_hubs(remote=True, tools=tools, **hub_options)


def on_tools_node(**options: Any) -> dict[str, Any]:
    """Ray actor options for an agent-side actor: a little of the `tools` resource, no CPU reserved."""
    return {"resources": {TOOLS_RESOURCE: 0.01}, "num_cpus": 0, **options}


# -- the runs -----------------------------------------------------------------------------------------
async def run_agent(pool: Any, hubs: Any, question: str, *, max_steps: int = 4) -> tuple[Any, Any]:
    """One agent as an actor on a tools node; returns (its proxy, its RunResult)."""
    from raygent.actors.agent import Agent

    agent = runtime.deploy(Agent, remote=True, init_kwargs={"llm": pool, "tools": hubs, "max_steps": max_steps},
                           max_restarts=0, **on_tools_node())
    return agent, await agent.run(question)


async def run_team(pool: Any, hubs: Any, task: str, *, timeout_s: float) -> tuple[Any, list[Any]]:
    """researcher (with the tool hubs) -> writer, each member an actor on a tools node; the team's
    message hub is an actor there too."""
    from raygent.actors.coordinator import AgentRole
    from raygent.actors.hub import MessageHub
    from raygent.actors.team import Team

    room = f"cluster-{uuid.uuid4().hex[:8]}"
    message_hub = runtime.deploy(MessageHub, remote=True, init_kwargs={"log": ":memory:", "name": f"hub-{room}"},
                                 max_restarts=-1, max_concurrency=10_000, **on_tools_node())
    team = Team(room=room, remote=True, hub=message_hub, timeout_s=timeout_s)
    await team.add(AgentRole(name="researcher", system=RESEARCHER_SYSTEM, llm=pool, tools=hubs, max_steps=4,
                             resources=on_tools_node()))
    await team.add(AgentRole(name="writer", system=WRITER_SYSTEM, llm=pool, max_steps=1,
                             resources=on_tools_node()))
    return team, await team.sequential(["researcher", "writer"], task)


def _where(node_id: str | None, nodes: dict[str, dict[str, Any]]) -> str:
    if node_id is None:
        return "?"
    n = nodes.get(node_id, {})
    tags = ",".join(f"{k}={v:g}" for k, v in n.get("tags", {}).items()) or "-"
    return f"{node_id[:12]} {n.get('ip', '?')} [{tags}]"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    t0 = time.perf_counter()
    connect()
    timings: dict[str, float] = {"connect_s": time.perf_counter() - t0}
    nodes = node_table()
    print(f"connected: {len(nodes)} node(s)", flush=True)
    for node_id, n in nodes.items():
        print(f"  node {_where(node_id, nodes)}{'' if n['alive'] else ' (dead)'}", flush=True)

    t = time.perf_counter()
    pool = start_pool(args)
    hubs = start_hubs(args.tools)
    timings["deploy_s"] = time.perf_counter() - t
    placement: dict[str, Any] = {
        "driver": ray.get_runtime_context().get_node_id(),
        "pool": sorted({(await pool.replica_info())["node"] for _ in range(max(1, args.replicas) * 2)}),
        "hubs": {(await hub.info()).domain: actor_node(hub) for hub in hubs.hubs},
    }
    print(f"pool {args.pool_name!r} ({await pool.get_model_name()}) on: "
          f"{'; '.join(_where(n, nodes) for n in placement['pool'])}", flush=True)
    for domain, node_id in placement["hubs"].items():
        print(f"tool hub {domain!r} on: {_where(node_id, nodes)}", flush=True)

    t = time.perf_counter()
    agent, result = await run_agent(pool, hubs, args.question)
    timings["agent_s"] = time.perf_counter() - t
    placement["agent"] = actor_node(agent)
    print(f"\nagent on: {_where(placement['agent'], nodes)}", flush=True)
    print(f"  question: {args.question}", flush=True)
    for call in result.tool_calls:
        print(f"  tool call: {call.name}({json.dumps(call.arguments)}) -> {call.error or json.dumps(call.result)}",
              flush=True)
    print(f"  answer: {result.answer}" + (f"\n  error: {result.error}" if result.error else ""), flush=True)
    runtime.kill(agent)

    team_out: dict[str, Any] = {"skipped": True}
    if not args.no_team:
        t = time.perf_counter()
        team, turns = await run_team(pool, hubs, args.team_task, timeout_s=args.timeout_s)
        timings["team_s"] = time.perf_counter() - t
        placement["team"] = {name: [actor_node(c) for c in members] for name, members in team.members.items()}
        placement["message_hub"] = actor_node(team.hub)
        print(f"\nteam {team.room} (message hub on {_where(placement['message_hub'], nodes)}):", flush=True)
        for name, where in placement["team"].items():
            print(f"  member {name} on: {'; '.join(_where(n, nodes) for n in where)}", flush=True)
        for turn in turns:
            print(f"  {turn.speaker}: {turn.text}", flush=True)
        team_out = {"room": team.room, "turns": [{"speaker": t.speaker, "text": t.text} for t in turns]}
        await team.close()
        runtime.kill(team.hub)

    # every call the hubs served (the agent's and the researcher's), counted where they ran
    hub_calls = {info.domain: info.calls for info in await hubs.info()}
    print(f"tool hub calls: {hub_calls}", flush=True)
    if not args.keep:
        from raygent.llm_pool.pool import delete_model

        delete_model(args.pool_name)
    timings["total_s"] = time.perf_counter() - t0
    print(f"\ntimings: {', '.join(f'{k} {v:.1f}' for k, v in timings.items())}", flush=True)
    return {"nodes": nodes, "placement": placement, "timings": timings,
            "agent": {"question": args.question, "answer": result.answer, "error": result.error,
                      "steps": result.steps, "model": result.model,
                      "tool_calls": [c.model_dump() for c in result.tool_calls]},
            "team": team_out, "hub_calls": hub_calls}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scripted", action="store_true", help="ScriptedToolModel instead of the embedded model")
    p.add_argument("--model-delay-s", type=float, default=0.0, help="with --scripted: seconds per model reply")
    p.add_argument("--replicas", type=int, default=1, help="model pool replicas")
    p.add_argument("--llm-per-replica", type=float, default=1.0,
                   help=f"how much of the {LLM_RESOURCE!r} resource each pool replica needs (1: one per node)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica (a GPU backend)")
    p.add_argument("--pool-name", default="cluster-llm")
    p.add_argument("--tools", type=lambda s: [t for t in s.split(",") if t], default=["calculator", "address_parse"],
                   help="comma-separated built-in tools (one hub per domain)")
    p.add_argument("--question", default=QUESTION)
    p.add_argument("--team-task", default=TEAM_TASK)
    p.add_argument("--no-team", action="store_true", help="run only the single agent")
    p.add_argument("--timeout-s", type=float, default=600.0, help="team request time-out")
    p.add_argument("--keep", action="store_true", help="leave the model pool's Serve app running")
    p.add_argument("--json", action="store_true", help=f"also print one line '{RESULT_TAG} <json>'")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    if arguments.json:
        print(f"{RESULT_TAG} {json.dumps(outcome, default=str)}", flush=True)
    runtime.shutdown()
    sys.exit(0 if outcome["agent"]["answer"] and not outcome["agent"]["error"] else 1)
