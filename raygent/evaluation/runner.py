"""Run BFCL cases through a raygent chat model and check each reply with the AST checker.

The model is called exactly as an agent calls it: `chat(messages, tools, params)` with the case's
messages and its functions as ToolSpecs; the Completion's parsed `tool_calls` are what gets checked
(its raw text is kept for reading). With `workers > 1` the cases are spread over that many Ray actors,
each holding its own copy of the model (`raygent.runtime.deploy`); the checks run here. Replies do not
depend on which worker served a case, so greedy decoding (temperature 0, the default) gives the same
verdicts with any number of workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from raygent.evaluation.ast_checker import Verdict, check_case
from raygent.evaluation.bfcl import BFCLCase
from raygent.schema import GenerationParams

#: --model values besides config names
DEFAULT_MODEL = "embedded"
PLAIN_MODEL = "embedded-plain"
RAW_MODEL = "embedded-raw"


@dataclass
class ModelChoice:
    """How to build the chat model under test: here, or inside each worker actor."""

    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    params: GenerationParams | None = None
    label: str = DEFAULT_MODEL

    def build(self, **overrides: Any) -> Any:
        return self.cls(**{**self.kwargs, **overrides})


def model_choice(name: str | None = None) -> ModelChoice:
    """`None`/"embedded": LlamaCppChatModel() (the embedded default, its default adapter);
    "embedded-plain": the same without adapter (lora=None); "embedded-raw" (or "raw"): the same GGUF
    used plainly, without raygent (RawLlamaChatModel: its own chat template, greedy, no grammar,
    exemplars, biases or adapter); anything else: a name from
    `raygent.llm_pool.config.load_model_configs()` (the bundled template or MODEL_CONFIG_FILE)."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    if name in (None, "", DEFAULT_MODEL, "default"):
        return ModelChoice(LlamaCppChatModel, {}, None, DEFAULT_MODEL)
    if name == PLAIN_MODEL:
        return ModelChoice(LlamaCppChatModel, {"lora": None}, None, PLAIN_MODEL)
    if name in (RAW_MODEL, "raw"):
        from raygent.evaluation.raw_model import RawLlamaChatModel

        return ModelChoice(RawLlamaChatModel, {}, None, RAW_MODEL)
    from raygent.llm_pool.config import chat_model_spec, load_model_configs

    configs = load_model_configs()
    if name not in configs:
        raise ValueError(f"unknown model {name!r}: use {DEFAULT_MODEL!r} (the default), {PLAIN_MODEL!r}, "
                         f"{RAW_MODEL!r} or a "
                         f"model config name ({', '.join(sorted(configs))})")
    cfg = configs[name]
    cls, kwargs = chat_model_spec(cfg)
    return ModelChoice(cls, dict(kwargs), cfg.params(), name)


# -- one case ---------------------------------------------------------------------------------------
async def evaluate_case(llm: Any, case: BFCLCase, params: GenerationParams | None = None) -> dict[str, Any]:
    """One case through `llm.chat` (a model or an actor proxy) -> its JSONL record."""
    start = time.perf_counter()
    output, calls, finish, model_name = "", [], None, ""
    try:
        completion = await llm.chat(case.messages, case.tools, params)
        output = completion.raw or completion.text
        finish, model_name = completion.finish_reason, completion.model
        calls = [{"name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
        verdict = check_case(case.category, case.functions, calls, case.ground_truth)
        if not calls and completion.parse_errors:
            # BFCL counts a reply it cannot decode as no call (right for irrelevance): say so
            why = "cut off at max_tokens" if finish == "length" else completion.parse_errors[0][:200]
            verdict = Verdict(verdict.valid, f"{verdict.reason}; the reply holds a call that could not be parsed "
                                             f"({why})", verdict.error_type)
    except Exception as exc:  # noqa: BLE001 - a failed case is a wrong answer with its reason, not a crash
        verdict = Verdict(False, f"model error: {type(exc).__name__}: {exc}", "model_error")
    return {"id": case.id, "category": case.category, "tools": [t.name for t in case.tools], "output": output,
            "calls": calls, "verdict": "correct" if verdict.valid else "wrong", "valid": verdict.valid,
            "reason": verdict.reason, "error_type": verdict.error_type, "finish_reason": finish,
            "model": model_name, "seconds": round(time.perf_counter() - start, 3)}


# -- progress ---------------------------------------------------------------------------------------
class Progress:
    """tqdm on stderr when installed, else one rewritten status line; silent when disabled."""

    def __init__(self, total: int, enabled: bool = True, desc: str = "bfcl", out: IO[str] | None = None):
        self.total, self.done, self.correct = total, 0, 0
        self.enabled = enabled and total > 0
        self.out = out or sys.stderr
        self.desc = desc
        self._bar: Any = None
        if self.enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="case", file=self.out, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.correct += bool(record.get("valid"))
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.correct}/{self.done} correct", refresh=False)
            self._bar.update(1)
        else:
            self.out.write(f"\r{self.desc}: {self.done}/{self.total} cases, {self.correct} correct")
            self.out.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self.out.write("\n")
            self.out.flush()


class _OrderedWriter:
    """Writes records in case order as they complete (a later case waits for the earlier ones)."""

    def __init__(self, stream: IO[str] | None):
        self.stream = stream
        self.pending: dict[int, dict[str, Any]] = {}
        self.next = 0

    def add(self, index: int, record: dict[str, Any]) -> None:
        self.pending[index] = record
        while self.next in self.pending:
            rec = self.pending.pop(self.next)
            if self.stream is not None:
                self.stream.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                self.stream.flush()
            self.next += 1


# -- a run ------------------------------------------------------------------------------------------
async def run_cases(cases: Sequence[BFCLCase], *, model: str | ModelChoice | None = None, llm: Any = None,
                    workers: int = 1, out: str | os.PathLike | None = None, progress: bool = True,
                    threads: int | None = None, params: GenerationParams | None = None,
                    on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate `cases`; returns their records in case order (also written to `out` as JSONL).

    llm: an already built chat model (in-process; `workers` must be 1), else `model` (a ModelChoice or
    a --model name) is built here (1 worker) or in each of `workers` Ray actors. threads: llama.cpp
    threads per worker (default: this machine's CPUs divided among the workers). params: generation
    settings (default: the model config's, else GenerationParams(): greedy, 512 new tokens at most).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if llm is not None and workers != 1:
        raise ValueError("a prebuilt llm runs in this process: use workers=1, or pass `model` for Ray workers")
    choice = model if isinstance(model, ModelChoice) else (None if llm is not None else model_choice(model))
    if params is None:
        params = (choice.params if choice is not None else None) or getattr(llm, "default_params", None)
    stream = open(out, "w", encoding="utf-8") if out else None  # noqa: SIM115 - closed below
    writer = _OrderedWriter(stream)
    bar = Progress(len(cases), enabled=progress)
    records: list[dict[str, Any] | None] = [None] * len(cases)
    deployed: list[Any] = []
    try:
        if llm is not None:
            servers = [llm]
        elif workers == 1:
            servers = [choice.build(**_thread_kwargs(choice, threads, 1, remote=False))]
        else:
            servers = deployed = _deploy_workers(choice, workers, threads)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(cases)):
            queue.put_nowait(i)

        async def serve(server: Any) -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                record = await evaluate_case(server, cases[i], params)
                records[i] = record
                writer.add(i, record)
                bar.update(record)
                if on_record is not None:
                    on_record(record)

        await asyncio.gather(*(serve(s) for s in servers))
    finally:
        bar.close()
        if stream is not None:
            stream.close()
        for proxy in deployed:
            _kill(proxy)
    return [r for r in records if r is not None]


def _takes_threads(cls: Any) -> bool:
    """Whether the model class is a llama.cpp one taking `n_threads` (raygent's or the raw baseline)."""
    from raygent.evaluation.raw_model import RawLlamaChatModel
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    return isinstance(cls, type) and issubclass(cls, (LlamaCppChatModel, RawLlamaChatModel))


def _thread_kwargs(choice: ModelChoice, threads: int | None, workers: int, remote: bool) -> dict[str, Any]:
    """n_threads for llama.cpp models: given, or the CPUs here shared among the workers (remote only)."""
    if not _takes_threads(choice.cls):
        return {}
    if threads:
        return {"n_threads": threads}
    if remote and "n_threads" not in choice.kwargs:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return {"n_threads": max(1, cpus // workers)}
    return {}


def _deploy_workers(choice: ModelChoice, workers: int, threads: int | None) -> list[Any]:
    from raygent import runtime

    runtime.init()
    kwargs = {**choice.kwargs, **_thread_kwargs(choice, threads, workers, remote=True)}
    env = {"OMP_NUM_THREADS": str(kwargs["n_threads"])} if "n_threads" in kwargs else {}
    proxies = []
    try:
        for _ in range(workers):  # unnamed: a run never shares (or inherits) another run's models
            options: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
            proxies.append(runtime.deploy(choice.cls, remote=True, init_kwargs=kwargs, num_cpus=0, max_restarts=0,
                                          **options))
    except BaseException:
        for p in proxies:
            _kill(p)
        raise
    return proxies


def _kill(proxy: Any) -> None:
    from raygent import runtime

    try:
        runtime.kill(proxy, wait_s=2.0)
    except Exception:  # noqa: BLE001 - best effort at the end of a run
        pass


# -- summary ----------------------------------------------------------------------------------------
def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-category and overall accuracy of a run's records."""
    per: dict[str, dict[str, Any]] = {}
    for r in records:
        c = per.setdefault(r["category"], {"correct": 0, "total": 0, "model_errors": 0})
        c["total"] += 1
        c["correct"] += bool(r["valid"])
        c["model_errors"] += r.get("error_type") == "model_error"
    for c in per.values():
        c["accuracy"] = round(c["correct"] / c["total"], 4) if c["total"] else 0.0
    total = sum(c["total"] for c in per.values())
    correct = sum(c["correct"] for c in per.values())
    return {"categories": per,
            "overall": {"correct": correct, "total": total, "accuracy": round(correct / total, 4) if total else 0.0},
            "mean_category_accuracy": round(sum(c["accuracy"] for c in per.values()) / len(per), 4) if per else 0.0}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'category':24s} {'correct':>8s} {'total':>6s} {'accuracy':>9s}"]
    for name, c in summary["categories"].items():
        errors = f"  ({c['model_errors']} model errors)" if c.get("model_errors") else ""
        lines.append(f"{name:24s} {c['correct']:8d} {c['total']:6d} {100 * c['accuracy']:8.1f}%{errors}")
    o = summary["overall"]
    lines.append(f"{'all':24s} {o['correct']:8d} {o['total']:6d} {100 * o['accuracy']:8.1f}%")
    return "\n".join(lines)


async def evaluate(categories: str | Sequence[str], *, limit: int | None = None, seed: int = 0,
                   model: str | None = None, workers: int = 1, out: str | os.PathLike | None = None,
                   progress: bool = True, threads: int | None = None, max_calls: int | None = None,
                   wheel: str | os.PathLike | None = None,
                   model_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load, run and summarize: what `raygent eval bfcl` does. Returns the JSON summary.

    max_calls: calls a llama.cpp model may make in one reply (see LlamaCppChatModel).
    model_options: more constructor options of the model (e.g. {"call_bias": 4.0}), to compare settings."""
    from raygent.evaluation.bfcl import load_cases, parse_categories
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    names = parse_categories(categories)
    choice = model_choice(model)
    if max_calls is not None:
        if not (isinstance(choice.cls, type) and issubclass(choice.cls, LlamaCppChatModel)):
            raise ValueError(f"--max-calls applies to llama.cpp models; {choice.label!r} is {choice.cls.__name__}")
        choice.kwargs["max_calls"] = max_calls
    if model_options:
        choice.kwargs.update(model_options)
    cases = load_cases(names, limit=limit, seed=seed, wheel=wheel)
    start = time.perf_counter()
    records = await run_cases(cases, model=choice, workers=workers, out=out, progress=progress, threads=threads)
    summary = summarize(records)
    summary.update(model=choice.label, model_name=next((r["model"] for r in records if r.get("model")), ""),
                   categories_requested=names, limit=limit, seed=seed, workers=workers, max_calls=max_calls,
                   model_options=dict(model_options or {}),
                   cases=len(records), seconds=round(time.perf_counter() - start, 1),
                   out=str(Path(out)) if out else None)
    return summary
