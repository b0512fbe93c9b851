"""Throughput of the LLM pool against raw llama.cpp, and the latency Serve adds per request.

8 agent sessions (one tool-calling question each: a tool call, then the answer) on the embedded
model, three ways:
  (a) raw llama.cpp in one process, sessions one after another;
  (b) raw llama.cpp in R processes (R = the pool's replicas), the sessions split between them;
  (c) through the pool: R Serve replicas, the 8 sessions concurrently through PooledLLM.
Each replica/process gets `--threads` llama.cpp threads (R x threads should equal the cores).
(b) and (c) run `--rounds` times, alternating, so that both see the same phases of a shared machine
(its speed was measured swinging 15 % between minutes); each round gives a c/b, and the median
decides. Prints generated tokens/s for each, the ratios c/a and c/b (goal c/b >= 0.95), and Serve's added
latency per request measured with a zero-time scripted model (pool round trip minus an in-process
call; goal < 10 ms). On Linux each timed part also prints where the CPU went (from /proc): the
model processes, Ray's and Serve's own processes, and the capacity left idle (cores x seconds),
which is what separates c from b.

Each replica decodes its concurrent requests together (`LlamaCppChatModel(parallel=N)`, continuous
batching; N = sessions per replica unless `--parallel` says otherwise, 1 = one request at a time);
(b)'s processes take their sessions one after another, as a raw llama.cpp process does.

Run: .venv/bin/python benchmarks/llm_pool.py [--sessions 8] [--replicas 2] [--threads 1] [--rounds 5] [--parallel N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Collection

QUESTIONS = ["What is 17*23?", "What is 1234+4321?", "What is 99*99?", "What is 2**10?", "What is 365*24?",
             "What is 81/9?", "What is 250-175?", "What is 12*12*12?", "What is 7*8*9?", "What is 1000-1?"]


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (command line, user + system CPU seconds) of every process; {} where /proc is absent."""
    found: dict[int, tuple[str, float]] = {}
    if not os.path.isdir("/proc"):
        return found
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        found[int(pid)] = (command, (int(fields[11]) + int(fields[12])) / tick)
    return found


def _is_ray_process(command: str) -> bool:
    """Ray's own processes: its workers and actors (`ray::...`), raylet, GCS, log monitor, agents (all
    run from the ray package). A plain "ray" substring also matched `raygent ...` commands (other
    work on the machine was counted as Ray/Serve's share)."""
    return command.startswith("ray::") or "/ray/" in command


def _cpu_report(before: dict[int, tuple[str, float]], elapsed: float, *, model_pids: Collection[int] = (),
                model_marker: str | None = None) -> str:
    """Where the machine's CPU went since `before`: the model processes (`model_pids`, or those whose
    command line holds `model_marker`), Ray's own processes, the rest, idle."""
    after = _cpu_seconds()
    if not after:
        return "CPU accounting needs /proc"
    capacity = (os.cpu_count() or 1) * elapsed
    shares = {"model": 0.0, "ray": 0.0, "other": 0.0}
    for pid, (command, seconds) in after.items():
        used = seconds - before.get(pid, (command, 0.0))[1]
        is_model = pid in model_pids or (model_marker is not None and model_marker in command)
        kind = ("model" if is_model else
                "ray" if _is_ray_process(command) else "other")
        shares[kind] += max(used, 0.0)
    idle = max(capacity - sum(shares.values()), 0.0)
    return (f"CPU: model processes {100 * shares['model'] / capacity:.1f} %, Ray/Serve processes "
            f"{100 * shares['ray'] / capacity:.1f} %, other (incl. this driver) {100 * shares['other'] / capacity:.1f} %, "
            f"idle {100 * idle / capacity:.1f} %")


def _model(threads: int, n_ctx: int):
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    return LlamaCppChatModel(n_threads=threads, n_ctx=n_ctx)


async def _session(llm, question: str) -> tuple[int, int, int]:
    """(generated, prompt, cached prompt) tokens of one agent run."""
    from raygent import Agent
    from raygent.toolhub.builtin import default_tools

    result = await Agent(llm=llm, tools=default_tools()).run(question, params={"max_tokens": 96})
    u = result.usage
    return u.completion_tokens, u.prompt_tokens, u.cached_prompt_tokens


def _sum(items) -> tuple[int, int, int]:
    return tuple(sum(x) for x in zip(*items)) if items else (0, 0, 0)


async def _sequential(llm, questions: list[str]) -> tuple[int, int, int]:
    return _sum([await _session(llm, q) for q in questions])


_LOADED = None  # the model of this (b) worker process, loaded by the pool's initializer


def _load_worker(threads: int, n_ctx: int) -> None:
    global _LOADED
    _LOADED = _model(threads, n_ctx)
    _LOADED.load()


def _worker(questions: list[str]) -> tuple[int, int, int]:
    return asyncio.run(_sequential(_LOADED, questions))


def raw_one_process(questions: list[str], threads: int, n_ctx: int) -> tuple[float, int]:
    llm = _model(threads, n_ctx)
    llm.load()
    start = time.perf_counter()
    tokens = asyncio.run(_sequential(llm, questions))
    return time.perf_counter() - start, tokens


def raw_processes(questions: list[str], processes: int, threads: int, n_ctx: int) -> tuple[float, tuple, str]:
    """(seconds, token counts, CPU report) of the sessions split between `processes` workers."""
    shares = [questions[i::processes] for i in range(processes)]
    # each process loads its model before the timer starts (the pool's replicas are loaded before
    # serving too); until 2026-11-24 14:40 the timed part loaded a second copy, slowing (b) by seconds
    with mp.get_context("spawn").Pool(processes, initializer=_load_worker, initargs=(threads, n_ctx)) as pool:
        workers = pool.map(_ready, range(processes), chunksize=1)  # every initializer has finished
        before = _cpu_seconds()
        start = time.perf_counter()
        tokens = _sum(pool.map(_worker, shares, chunksize=1))
        elapsed = time.perf_counter() - start
        cpu = _cpu_report(before, elapsed, model_pids=workers)  # while the workers still exist
    return elapsed, tokens, cpu


def _ready(_: int) -> int:
    time.sleep(0.5)  # holds this worker, so that each process takes one of these tasks
    assert _LOADED is not None
    return os.getpid()


async def through_pool(questions: list[str], replicas: int, threads: int, n_ctx: int,
                       imbalance_threshold: int, parallel: int) -> tuple[float, tuple, str]:
    """(seconds, token counts, CPU report) of the sessions run concurrently through the pool."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.llm_pool.pool import delete_model, serve_model

    # parallel > 1: each replica decodes its concurrent requests together (continuous batching);
    # 1: one at a time, with a session cache of interleaved conversations' KV states
    cache = {"parallel": parallel} if parallel > 1 else {"session_cache": 8}
    pool = serve_model("bench-llm", LlamaCppChatModel, n_threads=threads, n_ctx=n_ctx, **cache,
                       pool={"num_replicas": replicas, "num_cpus": threads, "max_ongoing_requests": 8,
                             "imbalance_threshold": imbalance_threshold})
    await asyncio.sleep(2.0)  # let the start-up work of the fresh Ray/Serve settle, as (b) waits for its workers
    before = _cpu_seconds()
    start = time.perf_counter()
    tokens = _sum(await asyncio.gather(*(_session(pool, q) for q in questions)))
    elapsed = time.perf_counter() - start
    cpu = _cpu_report(before, elapsed, model_marker="ServeReplica")
    delete_model("bench-llm")
    return elapsed, tokens, cpu


async def serve_added_latency(requests: int) -> tuple[float, float]:
    from raygent.llm_pool.pool import delete_model, serve_model
    from raygent.llm_pool.scripted import ScriptedChatModel
    from raygent.schema import Message

    messages = [Message.user("ping")]
    local = ScriptedChatModel(["pong"] * (requests + 20))
    pool = serve_model("bench-latency", ScriptedChatModel, ["pong"] * (requests + 20), pool={"num_cpus": 0})
    for _ in range(10):
        await pool.chat(messages)
        await local.chat(messages)
    pooled, direct = [], []
    for _ in range(requests):
        t = time.perf_counter()
        await pool.chat(messages)
        pooled.append(time.perf_counter() - t)
        t = time.perf_counter()
        await local.chat(messages)
        direct.append(time.perf_counter() - t)
    delete_model("bench-latency")
    return statistics.median(pooled) * 1000, statistics.median(direct) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per replica/process")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--imbalance-threshold", type=int, default=None,
                        help="the pool's imbalance_threshold (default: the pool's own default)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating (b)/(c) rounds; the median c/b counts")
    parser.add_argument("--parallel", type=int, default=None,
                        help="sequences each replica decodes together (default: sessions per replica; 1: off)")
    a = parser.parse_args()
    if a.rounds < 1:
        parser.error("--rounds must be at least 1")
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(a.sessions)]
    parallel = a.parallel or max(1, -(-a.sessions // a.replicas))

    print(f"machine: {platform.machine()} cpus={os.cpu_count()}; sessions={a.sessions} replicas={a.replicas} "
          f"threads/replica={a.threads} parallel/replica={parallel}")
    ta, (ka, pa, ca) = raw_one_process(questions, a.threads * a.replicas, a.n_ctx)
    print(f"(a) raw llama.cpp, 1 process x {a.threads * a.replicas} threads, sequential: "
          f"{ka} tokens in {ta:.1f} s = {ka / ta:.2f} tok/s (prompt tokens evaluated {pa - ca} of {pa})")
    ra = ka / ta
    from raygent.llm_pool.pool import PoolConfig

    threshold = PoolConfig().imbalance_threshold if a.imbalance_threshold is None else a.imbalance_threshold
    bs, cs = [], []
    for r in range(1, a.rounds + 1):
        tb, (kb, pb, cb), cpu_b = raw_processes(questions, a.replicas, a.threads, a.n_ctx)
        print(f"(b) round {r}: raw llama.cpp, {a.replicas} processes x {a.threads} threads: {kb} tokens in "
              f"{tb:.1f} s = {kb / tb:.2f} tok/s (prompt tokens evaluated {pb - cb} of {pb})")
        print("    " + cpu_b)
        _start_serve()  # Ray runs only during (c): its background work must not slow (b) down
        tc, (kc, pc, cc), cpu_c = asyncio.run(through_pool(questions, a.replicas, a.threads, a.n_ctx, threshold,
                                                              parallel))
        if r == 1:  # in this Ray session: starting Ray once more at the end was seen to fail
            latency = asyncio.run(serve_added_latency(a.latency_requests))
        _stop_serve()
        print(f"(c) round {r}: pool, {a.replicas} Serve replicas x {a.threads} threads, concurrent sessions: "
              f"{kc} tokens in {tc:.1f} s = {kc / tc:.2f} tok/s (prompt tokens evaluated {pc - cc} of {pc}); "
              f"c/b = {(kc / tc) / (kb / tb):.2f}")
        print("    " + cpu_c)
        bs.append(kb / tb)
        cs.append(kc / tc)
    rc = statistics.median(cs)
    ratio_cb = statistics.median(c / b for b, c in zip(bs, cs))
    print(f"ratios: c/a = {rc / ra:.2f}, c/b = {ratio_cb:.2f} (median of {a.rounds} rounds; goal c/b >= 0.95)")
    pooled_ms, direct_ms = latency
    print(f"Serve added latency per request: {pooled_ms - direct_ms:.2f} ms (pool round trip {pooled_ms:.2f} ms, "
          f"in-process call {direct_ms:.3f} ms; goal < 10 ms)")


def _start_serve() -> None:
    from ray import serve

    from raygent import runtime

    for attempt in range(3):  # Ray 2.60 restarted in one process now and then never starts its GCS
        try:
            runtime.init(log_to_driver=False)
            break
        except RuntimeError as exc:
            print(f"starting Ray failed ({exc}); trying again")
            runtime.shutdown()
            time.sleep(2.0)
    else:
        raise RuntimeError("could not start Ray three times in a row")
    # agents reach the pool through handles here; the HTTP proxy (its own actor) is not started
    serve.start(proxy_location="Disabled")


def _stop_serve() -> None:
    from ray import serve

    from raygent import runtime

    serve.shutdown()
    runtime.shutdown()


if __name__ == "__main__":
    main()
