"""`raygent run | chat | tools | serve | story | portrait ...` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from raygent.schema import AgentEvent


def _build_components(args: argparse.Namespace) -> tuple[Any, Any]:
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.toolhub.builtin import default_tools
    from raygent.llm_pool.embedded import resolve_model_path
    from raygent.toolhub.registry import ToolRegistry

    resolve_model_path(args.model)  # fail fast, with the message that says what to install or fix
    llm_kwargs = {"model": args.model, "n_ctx": args.n_ctx, "format": args.format,
                  "lora": getattr(args, "lora", "auto")}
    tool_list = default_tools()
    if getattr(args, "knowledge", None):  # --knowledge KB: the knowledge_search tool over that base
        from raygent.retrieval.knowledge import KnowledgeSearchTool, kb_folder

        if not (kb_folder(args.knowledge) / "manifest.json").exists():
            raise FileNotFoundError(f"no knowledge base {args.knowledge!r}: create it with "
                                    f"`raygent knowledge add PATH --kb {args.knowledge}`")
        tool_list.append(KnowledgeSearchTool(kb=args.knowledge))
    if not args.remote:
        return LlamaCppChatModel(**llm_kwargs), ToolRegistry(tool_list)
    from raygent import runtime

    runtime.init()
    local = LlamaCppChatModel(**llm_kwargs)  # not loaded: it says which adapter and threads apply
    # one named actor per model and adapter (get_if_exists must not hand a --lora run the plain model)
    adapter = f"+{os.path.basename(local.lora)}" if local.lora else ""
    llm = runtime.deploy(LlamaCppChatModel, remote=True, init_kwargs=llm_kwargs, num_cpus=0,
                         name=f"raygent-llm-{os.path.basename(str(args.model or 'default'))}{adapter}",
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": str(local.n_threads)}})
    tools = runtime.deploy(ToolRegistry, tool_list, remote=True, name="raygent-tools-builtin")
    return llm, tools


def _print_event(event: AgentEvent, out: Any = sys.stdout) -> None:
    if event.type == "answer_delta":
        out.write(event.text or "")
    elif event.type == "thought":
        out.write(f"\n[thought] {event.text}\n")
    elif event.type == "tool_call" and event.tool_call:
        out.write(f"\n[tool_call] {event.tool_call.name} {json.dumps(event.tool_call.arguments, ensure_ascii=False)}\n")
    elif event.type == "tool_result" and event.tool_result:
        r = event.tool_result
        body = r.error if r.error else json.dumps(r.output, ensure_ascii=False, default=str)
        out.write(f"[tool_result] {r.name}: {body}\n")
    elif event.type == "error":
        out.write(f"\n[error] {event.text}\n")
    out.flush()


async def _run(args: argparse.Namespace) -> int:
    from raygent.actors.agent import Agent

    llm, tools = _build_components(args)
    agent = Agent(llm=llm, tools=tools, max_steps=args.max_steps, params={"max_tokens": args.max_tokens})
    start = time.perf_counter()
    result = None
    async for event in agent.stream(args.text):
        if not args.json:
            _print_event(event)
        if event.type == "done":
            result = event.result
    assert result is not None
    if args.json:
        payload = result.to_json_dict()
        payload["seconds"] = round(time.perf_counter() - start, 3)
        if args.remote:
            import ray

            payload["placement"] = {"llm": getattr(llm, "actor_name", None), "tools": getattr(tools, "actor_name", None),
                                    "ray_address": ray.get_runtime_context().gcs_address}
        print(json.dumps(payload, ensure_ascii=False, default=str))
    else:
        print(f"\n-- {result.steps} step(s), {result.usage.total_tokens} tokens, "
              f"{time.perf_counter() - start:.1f} s, model {result.model}, run {result.run_id}")
    return 0 if result.stop_reason == "answer" else 1


async def _chat(args: argparse.Namespace) -> int:
    from raygent.actors.agent import Agent
    from raygent.memory.cli import chat_memory, chat_tools

    session = await chat_memory(args)  # --session ID: store every message, resume if it exists
    llm, tools = _build_components(args)
    tools = await chat_tools(args, tools, session)  # --long-term: remember / recall tools
    agent = Agent(llm=llm, tools=tools, max_steps=args.max_steps, params={"max_tokens": args.max_tokens}, **session)
    print("raygent chat: type a message; /reset clears the history, /exit quits.", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        sys.stdout.write("you> ")
        sys.stdout.flush()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            agent.reset()
            print("(history cleared)")
            continue
        sys.stdout.write("agent> ")
        async for event in agent.stream(text):
            _print_event(event)
        print()
    return 0


async def _tools(args: argparse.Namespace) -> int:
    from raygent.toolhub.builtin import builtin_hubs

    registry = builtin_hubs()  # every built-in whose system programs are installed, one hub per domain
    try:
        return await _tools_command(args, registry)
    finally:
        await registry.close()  # e.g. code interpreter kernels


async def _tools_command(args: argparse.Namespace, registry: Any) -> int:
    if args.tools_command == "list":
        specs = await registry.list_specs()
        if args.json:
            print(json.dumps([s.model_dump(exclude={"examples"}) for s in specs], ensure_ascii=False, indent=2))
        else:
            for s in specs:
                print(f"{s.name:20s} {s.description}")
        return 0
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"--args is not valid JSON: {exc}", file=sys.stderr)
        return 2
    result = await registry.call(args.name, arguments)
    if args.json:
        print(result.model_dump_json())
    else:
        print(result.error or json.dumps(result.output, ensure_ascii=False, indent=2, default=str))
        for a in result.artifacts:
            print(f"artifact: {a.kind} {a.mime_type} {a.size_bytes} bytes {a.uri} {json.dumps(a.metadata, default=str)}")
    return 0 if result.ok else 1


def _add_agent_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="GGUF path or embedded model name (default: the 0.5B embedded model)")
    p.add_argument("--format", default="hermes", help="tool-call format: hermes, msagent, react")
    p.add_argument("--lora", default="auto",
                   help="LoRA adapter: a GGUF adapter path, a shipped one (multistep), 'auto' (default: the "
                        "model's shipped adapter, multistep for the embedded 0.5B) or 'none'")
    p.add_argument("--remote", action="store_true", help="place the LLM and tools as Ray actors (RAY_ADDRESS or local)")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--knowledge", default=None, metavar="KB",
                   help="attach a knowledge base (name or folder, see `raygent knowledge add`) as knowledge_search")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raygent", description="Multi-agent LLM tool use on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent once on TEXT")
    run.add_argument("text")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    _add_agent_options(run)
    chat = sub.add_parser("chat", help="interactive multi-turn session")
    _add_agent_options(chat)
    from raygent.memory.cli import add_memory_command, add_session_options

    add_session_options(chat)
    add_memory_command(sub)
    tools = sub.add_parser("tools", help="list or call registered tools")
    tsub = tools.add_subparsers(dest="tools_command", required=True)
    tlist = tsub.add_parser("list")
    tlist.add_argument("--json", action="store_true")
    tcall = tsub.add_parser("call")
    tcall.add_argument("name")
    tcall.add_argument("--args", default="{}", help="arguments as a JSON object")
    tcall.add_argument("--json", action="store_true")
    from raygent.serve import cli as serve_cli

    serve_cli.add_parser(sub)
    from raygent.serve import keys_cli

    keys_cli.add_parser(sub)  # keys create|list|revoke
    from raygent.telemetry import trace_cli

    trace_cli.add_parser(sub)  # trace RUN_ID | --list
    from raygent.ui import cli as ui_cli

    ui_cli.add_parser(sub)  # ui: the web app (gradio imported only when it starts)
    from raygent.retrieval.cli import add_commands as add_retrieval_commands

    add_retrieval_commands(sub)  # retrieval eval, knowledge add|search|list
    from raygent.training.cli import add_commands as add_training_commands

    add_training_commands(sub)  # train multistep
    from raygent.apps.cli import add_commands as add_app_commands

    add_app_commands(sub)  # story, portrait
    from raygent.evaluation.cli import add_commands as add_eval_commands

    add_eval_commands(sub)  # eval bfcl (and eval trajectories)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv()  # API keys and RAY_ADDRESS may live in ./.env; the environment wins
    from raygent.memory.cli import memory_command
    from raygent.serve import cli as serve_cli

    handler = getattr(args, "handler", None) or {"run": _run, "chat": _chat, "tools": _tools,
                                                 "memory": memory_command, "serve": serve_cli.run}[args.command]
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error instead of a traceback for users
        if os.environ.get("RAYGENT_DEBUG"):
            raise
        print(f"raygent: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
