"""`raygent train multistep`: rebuild the shipped multi-step adapter (or train a variant)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune a LoRA adapter for the embedded model")
    tsub = train.add_subparsers(dest="train_command", required=True)
    multistep = tsub.add_parser("multistep", help="teach the 0.5B model to chain tool calls (about 40 min on 2 cores)")
    multistep.add_argument("--out", required=True, help="where to write the GGUF adapter")
    multistep.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="embedded model name or GGUF path")
    multistep.add_argument("--conversations", type=int, default=192, help="chained built-in tool conversations")
    multistep.add_argument("--tool-use", type=int, default=0,
                           help="broad tool-use conversations over invented tools added to them "
                                "(raygent.training.tooluse: single, parallel, chained, no call)")
    multistep.add_argument("--epochs", type=int, default=2)
    multistep.add_argument("--rank", type=int, default=8)
    multistep.add_argument("--learning-rate", type=float, default=3e-4)
    multistep.add_argument("--seed", type=int, default=7)
    multistep.add_argument("--workers", type=int, default=1,
                           help="data-parallel Ray Train workers (1: train in this process)")
    multistep.add_argument("--cpus-per-worker", type=float, default=1.0)
    multistep.set_defaults(handler=_handler)


async def _handler(args: argparse.Namespace) -> int:
    import asyncio

    return await asyncio.to_thread(run_train, args)  # the data writer runs the tools with its own loops


def run_train(args: argparse.Namespace) -> int:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"training needs torch and peft: pip install 'raygent[train]' ({exc})") from exc
    from raygent.llm_pool.embedded import resolve_model_path
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.training.chains import write_conversations
    from raygent.training.gguf_lora import export_lora_gguf
    from raygent.training.sft import LoraSettings, load_base_model, render_examples, train_lora

    start = time.perf_counter()
    conversations = write_conversations(args.conversations, seed=args.seed)
    if args.tool_use:
        from raygent.training.tooluse import write_tool_use

        conversations += write_tool_use(args.tool_use, seed=args.seed)
    examples = render_examples(conversations, LlamaCppChatModel(args.model, lora=None))
    print(f"{len(examples)} conversations written and tokenized ({time.perf_counter() - start:.0f} s)", flush=True)
    settings = LoraSettings(rank=args.rank, alpha=2.0 * args.rank, learning_rate=args.learning_rate,
                            epochs=args.epochs, seed=args.seed)
    if args.workers > 1:
        from raygent.training.distributed import train_lora_on_ray

        trained = train_lora_on_ray(resolve_model_path(args.model), examples, settings, workers=args.workers,
                                    cpus_per_worker=args.cpus_per_worker,
                                    log=lambda line: print(line, flush=True)).model
    else:
        model = load_base_model(resolve_model_path(args.model))
        trained = train_lora(model, examples, settings, log=lambda line: print(line, flush=True))
    out = export_lora_gguf(trained, Path(args.out))
    print(f"adapter written to {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.0f} s); "
          f"use it with LlamaCppChatModel(lora={str(out)!r}) or `raygent run --lora {out} ...`")
    return 0
