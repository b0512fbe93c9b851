"""The LLM pool on a GPU: one Serve replica with `num_gpus=1` hosting the transformers backend on
cuda, reached through PooledLLM, against the same backend in-process on the same GPU.

Builds a random Qwen2 model (no download; see transformers_batching.py), deploys it with
`serve_model(..., device="cuda", pool=PoolConfig(num_gpus=1))`, shows the replica on the GPU
(`nvidia-smi`), then runs `--requests` concurrent chats of `--tokens` new tokens each, per round
first in-process then through the pool (conversation affinity on and off). Prints tokens/s and the
ratio pool / in-process per round and their medians; a stream through the pool checks streaming.

    python benchmarks/llm_pool_gpu.py [--hidden 1024] [--layers 8] [--requests 32] [--tokens 64]
        [--rounds 3] [--batch-wait-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from transformers_batching import build_model  # noqa: E402

from raygent import runtime  # noqa: E402
from raygent.llm_pool.pool import PooledLLM, PoolConfig, serve_model  # noqa: E402
from raygent.llm_pool.transformers_backend import TransformersChatModel  # noqa: E402
from raygent.schema import GenerationParams, Message  # noqa: E402


async def burst(llm, requests: int, tokens: int) -> tuple[float, float]:
    """(generated tokens per second, wall seconds) for `requests` concurrent chats."""
    await llm.chat([Message.user("warm up")], None, GenerationParams(max_tokens=2))
    params = GenerationParams(max_tokens=tokens)
    start = time.perf_counter()
    done = await asyncio.gather(*(llm.chat([Message.user(f"Tell me a story, number {i}")], None, params)
                                  for i in range(requests)))
    wall = time.perf_counter() - start
    return sum(c.usage.completion_tokens for c in done) / wall, wall


async def main(a: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU and a CUDA build of torch")
    folder = build_model(Path(tempfile.mkdtemp()), a.hidden, a.layers)
    runtime.init(num_gpus=1, log_to_driver=False)
    pooled = serve_model("gpu-bench", TransformersChatModel, str(folder), device="cuda", max_batch_size=a.requests,
                         batch_wait_ms=a.batch_wait_ms,
                         pool=PoolConfig(num_gpus=1, num_cpus=1, max_ongoing_requests=a.requests + 8))
    print(f"random Qwen2 hidden {a.hidden}, {a.layers} layers, {torch.cuda.get_device_name()}; {a.requests} "
          f"concurrent chats x {a.tokens} tokens; batch_wait_ms {a.batch_wait_ms}")
    print(subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"],
                         capture_output=True, text=True).stdout.strip())
    pools = {"affinity on": pooled, "affinity off": PooledLLM(pooled.handle, affinity=False)}
    ratios: dict[str, list[float]] = {k: [] for k in pools}
    for r in range(1, a.rounds + 1):
        direct = TransformersChatModel(folder, device="cuda", max_batch_size=a.requests,
                                       batch_wait_ms=a.batch_wait_ms)
        direct.load()
        d, dw = await burst(direct, a.requests, a.tokens)
        await direct.aclose()
        line = f"round {r}: in-process {d:.1f} tok/s ({dw:.2f} s)"
        for label, llm in pools.items():
            p, pw = await burst(llm, a.requests, a.tokens)
            ratios[label].append(p / d)
            line += f"; pool, {label}: {p:.1f} tok/s ({pw:.2f} s), ratio {p / d:.2f}"
        print(line)
    deltas = [x async for x in pooled.stream([Message.user("stream please")], None, GenerationParams(max_tokens=16))]
    print(f"stream through the pool: {len(deltas)} deltas, finish {deltas[-1].finish_reason}")
    for label, values in ratios.items():
        print(f"{label}: median ratio pool / in-process {statistics.median(values):.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    asyncio.run(main(ap.parse_args()))
