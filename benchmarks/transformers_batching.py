"""Dynamic batching in the transformers backend: N concurrent chat requests on one model.

Builds a small random Qwen2 model (no download: the tokenizer is trained on a few sentences with
`tokenizers`, the weights are random), saves it, and loads it through TransformersChatModel twice:
baseline with batching off (max_batch_size=1: the requests queue and run one generate each) and
with batching on (one left-padded generate for the requests that arrive together). Prints
generated tokens per second, the mean request latency, and the ratio batched / baseline.

    python benchmarks/transformers_batching.py [--requests 8] [--tokens 32] [--hidden 256] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from raygent.llm_pool.transformers_backend import CHATML_TEMPLATE, TransformersChatModel
from raygent.schema import GenerationParams, Message

_CORPUS = ["You are a helpful assistant.", "What is the weather in Paris today?", "Tell me a short story.",
           "天气 北京 杭州 你好", "The quick brown fox jumps over the lazy dog. 0123456789"]


def build_model(folder: Path, hidden: int, layers: int) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 8, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        chat_template=CHATML_TEMPLATE)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 128), max_position_embeddings=2048,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def run(llm: TransformersChatModel, n: int, tokens: int) -> tuple[float, int, float]:
    """(wall seconds, generated tokens, mean latency) for n concurrent requests."""
    params = GenerationParams(max_tokens=tokens)

    async def one(i: int) -> tuple[int, float]:
        start = time.perf_counter()
        c = await llm.chat([Message.user(f"{_CORPUS[i % len(_CORPUS)]} (request {i})")], None, params)
        return c.usage.completion_tokens, time.perf_counter() - start

    await llm.chat([Message.user("warm up")], None, GenerationParams(max_tokens=2))
    start = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    return wall, sum(r[0] for r in results), statistics.mean(r[1] for r in results)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp), args.hidden, args.layers)
        rows = []
        for label, batch in (("baseline: batching off (max_batch_size=1)", 1),
                             (f"batched (max_batch_size={args.requests})", args.requests)):
            llm = TransformersChatModel(folder, device=args.device, max_batch_size=batch, batch_wait_ms=5,
                                        num_threads=args.threads)
            llm.load()
            wall, toks, latency = await run(llm, args.requests, args.tokens)
            rows.append((label, toks / wall, latency, list(llm.stats.batch_sizes[1:])))
            await llm.aclose()
    print(f"{args.requests} concurrent requests, {args.tokens} new tokens each, random Qwen2 "
          f"(hidden {args.hidden}, {args.layers} layers), device {args.device}, torch threads "
          f"{args.threads or 'default (' + str(__import__('torch').get_num_threads()) + ')'}")
    for label, tps, latency, sizes in rows:
        print(f"  {label:45s} {tps:8.1f} tok/s  mean latency {latency:6.2f} s  generate batch sizes {sizes}")
    print(f"  ratio batched / baseline (tok/s): {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
