"""Data-parallel LoRA training on Ray Train (`TorchTrainer`, CPU or GPU workers).

Every worker loads the base model, makes the same shuffled batches (same seed) and trains on its
share of each batch; the trainable gradients are summed over the workers (one all-reduce of the
flattened LoRA gradients per step, gloo on CPU) before every optimizer step. Losses are scaled by
the whole batch's trained tokens, so the workers take the steps one process would take, only
sooner: a test trains a tiny model on 1 and on 2 workers and gets the same adapter.

Rank 0 hands the adapter back as a Ray Train checkpoint (peft's `save_pretrained` layout); the
driver puts it on its own copy of the base model, ready for `export_lora_gguf`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygent.training.sft import LoraSettings, SupervisedExample, load_base_model, train_lora


@dataclass
class TrainedAdapter:
    """The peft model (base + trained adapter) and what the run measured."""

    model: Any
    losses: list[float] = field(default_factory=list)  # per optimizer step, over the whole batch
    workers: int = 1
    seconds: float = 0.0


def train_lora_on_ray(base: str | os.PathLike, examples: Sequence[SupervisedExample],
                      settings: LoraSettings | None = None, *, workers: int = 2, cpus_per_worker: float = 1.0,
                      use_gpu: bool = False, storage_path: str | os.PathLike | None = None,
                      log: Callable[[str], None] = print) -> TrainedAdapter:
    """Train a LoRA adapter for `base` (a GGUF file or a Hugging Face folder readable by every
    worker) on `workers` Ray Train workers; returns the adapter on the driver's copy of `base`.

    Ray is started here (`raygent.runtime.init`) if this process has not joined a cluster yet."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:  # pragma: no cover - ray[train] ships with raygent's ray extra
        raise RuntimeError(f"distributed training needs Ray Train: pip install 'ray[train]' ({exc})") from exc
    from raygent import runtime

    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    settings = settings or LoraSettings()
    if not ray.is_initialized():
        runtime.init()
    storage = Path(storage_path) if storage_path else Path(tempfile.mkdtemp(prefix="raygent-train-"))
    start = time.perf_counter()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"base": str(Path(base).resolve()), "settings": settings.model_dump(),
                           "examples": [ex.model_dump() for ex in examples],
                           "threads": max(1, int(round(cpus_per_worker)))},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(storage_path=str(storage.resolve()), name=f"lora-{os.getpid()}-{int(time.time())}"),
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"distributed training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("distributed training ended without an adapter checkpoint from rank 0")
    losses = [float(x) for x in (result.metrics or {}).get("losses", [])]
    for step, loss in enumerate(losses):
        log(f"step {step + 1}/{len(losses)}: loss {loss:.4f}")
    from peft import PeftModel

    with result.checkpoint.as_directory() as folder:
        model = PeftModel.from_pretrained(load_base_model(base), folder)
    model.eval()
    return TrainedAdapter(model=model, losses=losses, workers=workers, seconds=time.perf_counter() - start)


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its share of every batch, gradients summed over all workers."""
    import ray.train
    import torch
    import torch.distributed as dist

    torch.set_num_threads(int(config["threads"]))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    settings = LoraSettings(**config["settings"])
    examples = [SupervisedExample(**ex) for ex in config["examples"]]
    losses: list[float] = []

    def sum_gradients(tensors: list[Any]) -> None:
        if world == 1:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        at = 0
        for t in tensors:
            t.copy_(flat[at:at + t.numel()].view_as(t))
            at += t.numel()

    def log(line: str) -> None:
        if rank == 0:
            print(f"[rank 0 of {world}] {line}", flush=True)

    model = train_lora(load_base_model(config["base"]), examples, settings, log=log, shard=(rank, world),
                       sum_gradients=sum_gradients, on_step=losses.append)
    metrics = {"losses": losses, "rank": rank}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
