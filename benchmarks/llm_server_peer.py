"""raygent's OpenAI endpoint against llama-cpp-python's own OpenAI server, on the same cores.

What a user would pick instead of `raygent serve` for a local GGUF model is
`python -m llama_cpp.server --model FILE --n_threads 2`. This benchmark runs both on the embedded
Qwen2.5-Coder-0.5B GGUF, one after the other (never at the same time), and drives each with the
official `openai` async client:

  text:  16 concurrent chat requests without tools (max_tokens 64, temperature 0): completion
         tokens per second and wall time;
  tools: 8 concurrent requests offering a calculator tool (tool_choice auto, temperature 0):
         how many replies call the calculator with an expression worth the right answer.

raygent serves the same GGUF with its LoRA adapter off (`lora: null`: the peer has none;
cluster/serve_openai.yaml leaves `lora` at its default, the shipped adapter; `--model-option
lora='"multistep"'` puts it back), in three layouts:
  (i)   1 replica x 2 threads, parallel 1 (one request at a time, like llama_cpp.server);
  (ii)  1 replica x 2 threads, parallel 4 (continuous batching);
  (iii) 2 replicas x 1 thread, parallel 2 (cluster/serve_openai.yaml's layout);
and, when named in --configs: (yaml) the same with n_threads left to the model's default, as
cluster/serve_openai.yaml has it, or any REPLICASxTHREADSpPARALLEL[cCPUS] (1x2p8: 1 replica x 2
threads, parallel 8; 2x2p2c1: 2 threads in each of 2 replicas reserving 1 CPU each).
Each round measures the peer first (Ray not running), then starts Ray/Serve and measures the
layouts; the ratios to the peer are taken within the round, because the machine's speed swings
between minutes. On CPUs with AMX both sides load the weights without llama.cpp's extra buffer
types (llama.cpp's AMX path segfaults on this Q4_K_M model; raygent.llm_pool.llama_cpp
._extra_buffers_safe): the peer is started through a wrapper that applies the same load setting.

Run: .venv/bin/python benchmarks/llm_server_peer.py [--rounds 3] [--configs i,ii,iii] [--peer-threads 2]
     [--peer-chat-format chatml-function-calling] [--text 16] [--tools 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import operator
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_pool import _cpu_seconds, _is_ray_process  # noqa: E402  (the pool benchmark's /proc accounting)

TEXT_PROMPTS = [
    "Explain what a hash table is and when to use one.",
    "Write a short story about a robot learning to paint.",
    "What are the main differences between TCP and UDP?",
    "Describe how photosynthesis works.",
    "Give me some tips for writing clean Python code.",
    "Explain recursion to a beginner programmer.",
    "What causes the seasons on Earth?",
    "Describe the water cycle in simple terms.",
    "What is the difference between a list and a tuple in Python?",
    "Explain how a binary search works.",
    "Write a poem about the ocean at night.",
    "What are the benefits of unit testing?",
    "Explain what an operating system does.",
    "Describe how vaccines train the immune system.",
    "What is a REST API? Explain with an example.",
    "Explain the difference between a process and a thread.",
]

TOOL_QUESTIONS = [("What is 17*23?", 391), ("What is 1234+4321?", 5555), ("What is 99*99?", 9801),
                  ("What is 2**10?", 1024), ("What is 365*24?", 8760), ("What is 81/9?", 9),
                  ("What is 250-175?", 75), ("What is 12*12*12?", 1728), ("What is 7*8*9?", 504),
                  ("What is 1000-1?", 999)]

CALCULATOR = {"type": "function", "function": {
    "name": "calculator",
    "description": "Evaluate an arithmetic expression and return the result.",
    "parameters": {"type": "object",
                   "properties": {"expression": {"type": "string",
                                                 "description": "the expression, e.g. 2*(3+4)"}},
                   "required": ["expression"]}}}

# the peer: llama_cpp.server's own entry point, its model loaded with raygent's load setting for
# llama.cpp's extra buffer types (off on AMX CPUs), so both sides run the same weights layout
_PEER_WRAPPER = """
import sys
from raygent.llm_pool.llama_cpp import _extra_buffers_safe, _model_loading
extra = _extra_buffers_safe()
print(f"peer: llama.cpp extra buffer types {'on' if extra else 'off'}", file=sys.stderr, flush=True)
sys.argv[0] = "llama_cpp.server"
with _model_loading(extra_buffers=extra):
    from llama_cpp.server.__main__ import main
    main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError(f"server exited with {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
            time.sleep(0.3)


# -- the workloads ---------------------------------------------------------------------------------------
@dataclass
class Result:
    wall: float = 0.0
    completion: list[int] = field(default_factory=list)
    prompt: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)  # prompt tokens the server says it had in its KV cache
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    correct: int = 0
    calls: int = 0
    cpu: str = ""

    @property
    def tok_s(self) -> float:
        return sum(self.completion) / self.wall if self.wall else 0.0


def _value(expression: str) -> float | None:
    """The arithmetic value of a tool call's expression (None if it is not plain arithmetic)."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        raise ValueError(expression)

    try:
        return ev(ast.parse(expression.replace("^", "**").replace("×", "*"), mode="eval").body)
    except (ValueError, SyntaxError, ZeroDivisionError, TypeError, OverflowError):
        return None


async def run_text(base_url: str, model: str, n: int, max_tokens: int, model_pids=None, marker=None) -> Result:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-none", timeout=900, max_retries=0)
    prompts = [TEXT_PROMPTS[i % len(TEXT_PROMPTS)] for i in range(n)]
    out = Result()

    async def one(prompt: str) -> None:
        t = time.perf_counter()
        try:
            r = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                     max_tokens=max_tokens, temperature=0)
        except Exception as exc:  # noqa: BLE001 - counted and shown
            out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        out.latencies.append(time.perf_counter() - t)
        out.completion.append(r.usage.completion_tokens)
        out.prompt.append(r.usage.prompt_tokens)
        details = getattr(r.usage, "prompt_tokens_details", None)
        out.cached.append(getattr(details, "cached_tokens", None) or 0)

    before = _cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    out.wall = time.perf_counter() - start
    out.cpu = _cpu_split(before, out.wall, model_pids, marker)
    await client.close()
    return out


async def run_tools(base_url: str, model: str, n: int) -> Result:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-none", timeout=900, max_retries=0)
    questions = [TOOL_QUESTIONS[i % len(TOOL_QUESTIONS)] for i in range(n)]
    out = Result()

    async def one(question: str, answer: float) -> None:
        t = time.perf_counter()
        try:
            r = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                     tools=[CALCULATOR], tool_choice="auto", max_tokens=96,
                                                     temperature=0)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        out.latencies.append(time.perf_counter() - t)
        out.completion.append(r.usage.completion_tokens)
        out.prompt.append(r.usage.prompt_tokens)
        calls = r.choices[0].message.tool_calls or []
        out.calls += bool(calls)
        for call in calls[:1]:
            try:
                args = json.loads(call.function.arguments or "{}")
            except ValueError:
                continue
            value = _value(str(args.get("expression", ""))) if isinstance(args, dict) else None
            if call.function.name == "calculator" and value is not None and abs(value - answer) < 1e-6:
                out.correct += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(q, a) for q, a in questions))
    out.wall = time.perf_counter() - start
    await client.close()
    return out


def _cpu_split(before: dict, elapsed: float, model_pids, marker: str | None) -> str:
    """Where the CPU went: the model processes, the ingress and Serve's proxy, the rest of Ray, this
    driver (the openai client), anything else, idle (as % of cores x wall)."""
    after = _cpu_seconds()
    if not after:
        return ""
    capacity = (os.cpu_count() or 1) * elapsed
    shares = {"model": 0.0, "ingress+proxy": 0.0, "ray other": 0.0, "client": 0.0, "other": 0.0}
    for pid, (command, seconds) in after.items():
        used = max(seconds - before.get(pid, (command, 0.0))[1], 0.0)
        if (model_pids and pid in model_pids) or (marker and marker in command):
            kind = "model"
        elif pid == os.getpid():
            kind = "client"
        elif "raygent-ingress" in command or "ProxyActor" in command:
            kind = "ingress+proxy"
        elif _is_ray_process(command):
            kind = "ray other"
        else:
            kind = "other"
        shares[kind] += used
    idle = max(capacity - sum(shares.values()), 0.0)
    parts = [f"{k} {100 * v / capacity:.1f} %" for k, v in shares.items() if v or k == "model"]
    return "CPU: " + ", ".join(parts) + f", idle {100 * idle / capacity:.1f} %"


# -- the two servers -------------------------------------------------------------------------------------
def start_peer(model_path: str, threads: int, chat_format: str | None, n_ctx: int, log: Path
               ) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    args = [sys.executable, "-c", _PEER_WRAPPER, "--model", model_path, "--host", "127.0.0.1", "--port", str(port),
            "--n_threads", str(threads), "--n_ctx", str(n_ctx), "--model_alias", "peer"]
    if chat_format:
        args += ["--chat_format", chat_format]
    with open(log, "ab") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    _wait_http(url + "/models", 120, proc, log)
    return proc, url


def stop_peer(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Layout:
    name: str
    replicas: int
    threads: int | None  # None: the model's own default (cluster/serve_openai.yaml sets none)
    parallel: int
    cpus: int = 1  # what each replica reserves from Ray

    def label(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}" if self.threads else \
            f"default threads ({self.cpus} CPU reserved)"
        return f"({self.name}) {self.replicas} replica{'s' if self.replicas > 1 else ''} x {threads}, " \
               f"parallel {self.parallel}"


LAYOUTS = {"i": Layout("i", 1, 2, 1, 2), "ii": Layout("ii", 1, 2, 4, 2), "iii": Layout("iii", 2, 1, 2, 1),
           # cluster/serve_openai.yaml as written: n_threads left to LlamaCppChatModel's default
           "yaml": Layout("yaml", 2, None, 2, 1)}
MODEL = "qwen2.5-coder-0.5b-instruct"
RAY_TEMP_DIR = "/tmp/rg-peer-bench"


def _layout(spec: str) -> Layout:
    """A named layout, or one written REPLICASxTHREADSpPARALLEL (e.g. 1x2p8)."""
    if spec in LAYOUTS:
        return LAYOUTS[spec]
    import re

    m = re.fullmatch(r"(\d+)x(\d+)p(\d+)(?:c(\d+))?", spec)
    if not m:
        raise SystemExit(f"unknown layout {spec!r}: use i, ii, iii, yaml or e.g. 1x2p8 (c1: reserve 1 CPU each)")
    replicas, threads, parallel = map(int, m.groups()[:3])
    return Layout(spec, replicas, threads, parallel, int(m.group(4) or threads))


def raygent_config(layout: Layout, extra_model: dict[str, Any]):
    from raygent.serve.app import ModelEntry, SecurityConfig, ServeConfig

    model = {"type": "llama_cpp", "model": MODEL, "lora": None, "parallel": layout.parallel, **extra_model}
    if layout.threads:
        model["n_threads"] = layout.threads
    pool = {"num_replicas": layout.replicas, "num_cpus": layout.cpus,
            "max_ongoing_requests": max(2, layout.parallel), "max_queued_requests": 64}
    return ServeConfig(models={MODEL: ModelEntry(model=model, pool=pool)}, default_model=MODEL,
                       security=SecurityConfig(require_keys="never", requests_per_minute=100000,
                                               concurrent_runs=1000))


def start_ray(port: int) -> None:
    from ray import serve

    from raygent import runtime

    for attempt in range(3):  # Ray restarted in one process now and then fails to start (see llm_pool.py)
        try:
            # a temp dir of its own: ray.init() without an address joins the cluster named in
            # <temp dir>/ray_current_cluster when there is one, and other clusters run on this machine
            runtime.init(log_to_driver=False, _temp_dir=RAY_TEMP_DIR)
            break
        except RuntimeError as exc:
            print(f"starting Ray failed ({exc}); trying again", flush=True)
            runtime.shutdown()
            time.sleep(2.0)
    else:
        raise RuntimeError("could not start Ray three times in a row")
    serve.start(http_options={"host": "127.0.0.1", "port": port})


def deploy_raygent(layout: Layout, port: int, extra_model: dict[str, Any]) -> str:
    from ray import serve

    from raygent.serve.app import APP_NAME, build_app

    serve.run(build_app(raygent_config(layout, extra_model)), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1"
    _wait_http(url.replace("/v1", "/healthz"), 60)
    return url


def undeploy_raygent() -> None:
    from ray import serve

    from raygent.serve.app import APP_NAME

    serve.delete(APP_NAME)


def stop_ray() -> None:
    from ray import serve

    from raygent import runtime

    serve.shutdown()
    runtime.shutdown()


def _warm(url: str, model: str) -> None:
    """One short request, so that each side's first-request costs (imports, grammar set-up) are
    outside the timed part."""
    asyncio.run(run_text(url, model, 1, 4))


def _line(tag: str, r: Result, ref: float | None) -> str:
    n = len(r.completion)
    text = (f"{tag}: {sum(r.completion)} completion tokens in {r.wall:.1f} s = {r.tok_s:.2f} tok/s; "
            f"prompt tokens/request {statistics.mean(r.prompt) if n else 0:.1f} "
            f"({statistics.mean(r.cached) if n else 0:.1f} reported cached), "
            f"completion/request {statistics.mean(r.completion) if n else 0:.1f}, "
            f"latency p50 {statistics.median(r.latencies) if n else 0:.1f} s")
    if ref:
        text += f"; ratio to llama_cpp.server {r.tok_s / ref:.2f}"
    if r.errors:
        text += f"; {len(r.errors)} errors, first: {r.errors[0]}"
    return text


def _tool_line(tag: str, r: Result, n: int) -> str:
    text = (f"{tag}: {r.correct}/{n} correct calculator calls ({r.calls} replies with a tool call) in "
            f"{r.wall:.1f} s; prompt tokens/request {statistics.mean(r.prompt) if r.prompt else 0:.1f}")
    if r.errors:
        text += f"; {len(r.errors)} errors, first: {r.errors[0]}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default="i,ii,iii",
                        help="raygent layouts to run: i, ii, iii, yaml, or REPLICASxTHREADSpPARALLEL[cCPUS] "
                             "(e.g. 1x2p8; 2x2p2c1: 2 threads in replicas reserving 1 CPU)")
    parser.add_argument("--text", type=int, default=16, help="concurrent text requests")
    parser.add_argument("--tools", type=int, default=8, help="concurrent tool requests (0: skip)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--peer-threads", type=int, default=2)
    parser.add_argument("--peer-chat-format", default="chatml-function-calling",
                        help="llama_cpp.server's --chat_format ('' for the GGUF's own template)")
    parser.add_argument("--peer-n-ctx", type=int, default=2048)
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=JSON",
                        help="extra LlamaCppChatModel option for raygent's model entry, e.g. n_batch=512")
    parser.add_argument("--log", default="/tmp/llm_server_peer.log", help="the peer's output")
    a = parser.parse_args()
    layouts = [_layout(c.strip()) for c in a.configs.split(",") if c.strip()]
    extra = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.model_option)}

    from raygent.llm_pool.embedded import DEFAULT_MODEL, resolve_model_path
    from raygent.llm_pool.llama_cpp import _extra_buffers_safe

    model_path = str(resolve_model_path(DEFAULT_MODEL))
    extra_buffers = _extra_buffers_safe()
    print(f"machine: {platform.machine()} cpus={os.cpu_count()}; model {Path(model_path).name}; llama.cpp extra "
          f"buffer types {'on' if extra_buffers else 'OFF (AMX CPU)'} on both sides; text: {a.text} concurrent "
          f"requests, max_tokens {a.max_tokens}, temperature 0; tools: {a.tools} concurrent calculator requests; "
          f"peer: llama_cpp.server --n_threads {a.peer_threads} --chat_format {a.peer_chat_format or '(GGUF)'}; "
          f"raygent: adapter off{'; ' + str(extra) if extra else ''}", flush=True)
    peer_rates: list[float] = []
    rates: dict[str, list[float]] = {l.name: [] for l in layouts}
    ratios: dict[str, list[float]] = {l.name: [] for l in layouts}
    for r in range(1, a.rounds + 1):
        proc, url = start_peer(model_path, a.peer_threads, a.peer_chat_format or None, a.peer_n_ctx, Path(a.log))
        try:
            _warm(url, "peer")
            peer = asyncio.run(run_text(url, "peer", a.text, a.max_tokens, model_pids={proc.pid}))
            print(_line(f"round {r} llama_cpp.server text", peer, None), flush=True)
            print("    " + peer.cpu, flush=True)
            if a.tools:
                tools = asyncio.run(run_tools(url, "peer", a.tools))
                print(_tool_line(f"round {r} llama_cpp.server tools", tools, a.tools), flush=True)
        finally:
            stop_peer(proc)
        peer_rates.append(peer.tok_s)
        port = _free_port()
        start_ray(port)
        try:
            for layout in layouts:
                url = deploy_raygent(layout, port, extra)
                _warm(url, MODEL)
                time.sleep(1.0)
                ours = asyncio.run(run_text(url, MODEL, a.text, a.max_tokens,
                                            marker=f"ServeReplica:raygent:{MODEL}"))
                print(_line(f"round {r} raygent {layout.label()} text", ours, peer.tok_s), flush=True)
                print("    " + ours.cpu, flush=True)
                rates[layout.name].append(ours.tok_s)
                ratios[layout.name].append(ours.tok_s / peer.tok_s if peer.tok_s else 0.0)
                if a.tools:
                    tools = asyncio.run(run_tools(url, MODEL, a.tools))
                    print(_tool_line(f"round {r} raygent {layout.label()} tools", tools, a.tools), flush=True)
                undeploy_raygent()
        finally:
            stop_ray()
    print(f"summary over {a.rounds} rounds: llama_cpp.server {', '.join(f'{x:.2f}' for x in peer_rates)} tok/s")
    for layout in layouts:
        print(f"  raygent {layout.label()}: {', '.join(f'{x:.2f}' for x in rates[layout.name])} tok/s; ratio to "
              f"llama_cpp.server {', '.join(f'{x:.2f}' for x in ratios[layout.name])} "
              f"(median {statistics.median(ratios[layout.name]):.2f})")


if __name__ == "__main__":
    main()
