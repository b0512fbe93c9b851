"""Agents served over Ray Serve HTTP (raygent.serve), against the same agent run in-process.

Parts (each prints its figures; `--parts` picks some):
- latency: one agent run (one calculator call, then an answer) at a time, N runs after a warm-up,
  on a rule-based scripted model (ToolThenAnswerModel: the model costs nothing, so the server is
  what is measured). The same run five ways, from the cheapest to the whole path:
    inproc       `Agent(...).run(text)` in this process: the model, the calculator built by the
                 AgentServer's own code (`build_tools`), the agent loop
    pool-handle  the same Agent here, its model the served pool (PooledLLM over the deployment
                 handle: two Serve calls per run)
    agent-handle the agent deployment's handle as the HTTP ingress calls it (ServedAgent.stream:
                 the run in the agent replica, its model calls to the pool replica)
    agent-run    the agent deployment's `run` through the handle (one unary Serve call)
    http         POST /v1/chat/completions with `model` = the agent, non-streaming, one keep-alive
                 connection (httpx, or `--client openai`: the official SDK): the proxy, the ingress
                 (FastAPI, security and metrics middleware) and everything above
  p50/p99 of each, and the added latency http - inproc at p50 and p99. Goal: <= 10 ms at p50.
  For scale, one hop alone: a Serve handle call that does nothing (the agent's card()) and
  GET /healthz (the HTTP proxy and the ingress, no Serve call behind).
- concurrent: C concurrent runs as server-sent events (POST /v1/runs, Accept: text/event-stream),
  events parsed until `end`; errors counted (goal: 0), then every run's record read back with
  GET /v1/runs/{id} (a lost or unfinished run counts as an error); p50/p99 run latency and runs/s.
  Against the same C runs in-process (asyncio.gather of Agent.run): runs/s, ratio served/in-process.
  The security layer's per-caller limits (concurrent runs, requests per minute) are raised for it.
- embedded: the seed's address example end to end over HTTP with the embedded default model
  (`raygent.serve.app.default_config()`: Qwen2.5-Coder-0.5B on llama.cpp and the agent
  `assistant`): deploy time, the first request's and a second request's wall time, the tool calls
  (the response's `raygent` extension) and whether the answer names 浙江 / 杭州 / 江干.

Everything runs on an embedded local Ray started here, Serve's HTTP proxy on a free 127.0.0.1 port,
RAYGENT_HOME and the state store (SQLite) in a temporary folder removed at the end.

Run: .venv/bin/python benchmarks/serve_agents.py [--parts latency,concurrent,embedded]
     [--runs 200] [--warmup 20] [--concurrency 200] [--waves 2] [--client httpx|openai]
     [--agent-replicas 1] [--max-ongoing 256] [--sessions] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _serving import stop_serving

TMP = Path(tempfile.mkdtemp(prefix="raygent-bench-serve-"))
# before raygent and Ray start: the replicas inherit it (keys, sessions, run records, the model file)
os.environ.setdefault("RAYGENT_HOME", str(TMP / "home"))
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402

from raygent import runtime  # noqa: E402

SCRIPTED_APP = "raygent-bench-serve"
EMBEDDED_APP = "raygent-bench-serve-embedded"
AGENT = "calc"
MODEL = "calc-model"
ADDRESS_TEXT = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expression(i: int) -> tuple[str, int]:
    """A distinct calculator input per run, and its value (checked in the answer)."""
    return f"{i}*7+3", i * 7 + 3


def answer_ok(answer: str | None, value: int) -> bool:
    return answer is not None and f'"result": {value}' in answer


def state_url() -> str:
    return f"sqlite://{TMP / 'state' / 'memory.sqlite'}"


def security(args: argparse.Namespace) -> dict[str, Any]:
    return {"require_keys": "never", "concurrent_runs": args.concurrent_runs_limit,
            "requests_per_minute": args.rpm_limit}


def scripted_config(args: argparse.Namespace) -> Any:
    from raygent.serve.app import ServeConfig

    return ServeConfig(**{
        "models": {MODEL: {"model": {"type": "scripted", "tool_then_answer": {"tool": "calculator",
                                                                              "argument": "expression"}},
                           "pool": {"num_replicas": args.pool_replicas, "num_cpus": 0,
                                    "max_ongoing_requests": args.max_ongoing, "max_queued_requests": -1}}},
        "agents": {AGENT: {"description": "Does arithmetic with the calculator.", "model": MODEL,
                           "tools": ["calculator"], "memory": args.sessions,
                           "deployment": {"num_replicas": args.agent_replicas, "num_cpus": 0,
                                          "max_ongoing_requests": args.max_ongoing}}},
        "default_model": MODEL, "default_agent": AGENT,
        "state": {"url": state_url()},
        "security": security(args),
    })


def describe(config: Any) -> str:
    agent = config.agents[AGENT]
    pool = config.models[MODEL].pool
    return (f"agent {AGENT!r}: {agent.deployment.num_replicas} replica(s), max_ongoing_requests "
            f"{agent.deployment.max_ongoing_requests}, sessions (memory) {'on' if agent.memory else 'off'}; "
            f"model {MODEL!r} (ToolThenAnswerModel calculator): {pool.num_replicas} replica(s), max_ongoing_requests "
            f"{pool.max_ongoing_requests}; security: require_keys={config.security.require_keys}, "
            f"concurrent_runs={config.security.concurrent_runs}, "
            f"requests_per_minute={config.security.requests_per_minute}; state {config.state.url}")


class InProcess:
    """The AgentServer's agent, built the way its replica builds one per request, in this process."""

    def __init__(self, config: Any, llm: Any = None):
        from raygent.llm_pool.config import build_chat_model
        from raygent.llm_pool.scripted import ToolThenAnswerModel
        from raygent.serve.agent_server import build_tools
        from raygent.toolhub.registry import ToolRegistry

        self.entry = config.agents[AGENT]
        # the model from its config entry, as the pool's replica builds it (a ToolThenAnswerModel)
        self.llm = llm if llm is not None else build_chat_model(config.models[MODEL].model, MODEL)
        assert llm is not None or isinstance(self.llm, ToolThenAnswerModel), self.llm
        self.tools = ToolRegistry(build_tools(self.entry.tools))

    def agent(self) -> Any:
        from raygent.actors.agent import Agent

        kwargs: dict[str, Any] = {}
        if self.entry.system is not None:
            kwargs["system"] = self.entry.system
        return Agent(self.llm, tools=self.tools, max_steps=self.entry.max_steps, **kwargs)

    async def run(self, text: str) -> str | None:
        result = await self.agent().run(text)
        return result.answer


def summary(label: str, seconds: list[float]) -> dict[str, float]:
    values = ms(seconds)
    out = {"p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99), "mean_ms": statistics.fmean(values)}
    print(f"latency {label:13s} p50 {out['p50_ms']:7.2f} ms  p99 {out['p99_ms']:7.2f} ms  "
          f"mean {out['mean_ms']:7.2f} ms  (n={len(values)})", flush=True)
    return out


async def probe(call: Any, runs: int, warmup: int) -> list[float]:
    """`await call()` one at a time (the first `warmup` untimed): the cost of one hop alone."""
    seconds = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        await call()
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


async def timed(call: Any, runs: int, warmup: int, offset: int) -> list[float]:
    """`await call(text)` one at a time (the first `warmup` untimed); every answer is checked."""
    seconds = []
    for i in range(warmup + runs):
        text, value = expression(offset + i)
        start = time.perf_counter()
        answer = await call(text)
        elapsed = time.perf_counter() - start
        if not answer_ok(answer, value):
            raise RuntimeError(f"run {i}: wrong answer {answer!r} for {text!r} (expected {value})")
        if i >= warmup:
            seconds.append(elapsed)
    return seconds


# -- latency ------------------------------------------------------------------------------------------------
async def part_latency(args: argparse.Namespace, base: str, config: Any) -> dict[str, Any]:
    from ray import serve

    from raygent.llm_pool.pool import PooledLLM
    from raygent.serve.agent_server import ServedAgent
    from raygent.serve.models import RunRequest

    # this driver's handles use the same transport as the replicas' (gRPC with the fast path): it
    # imported Serve before raygent chose, so it is set here explicitly
    by_reference = args.no_fast_path
    inproc = InProcess(config)
    pool_handle = serve.get_deployment_handle(MODEL, app_name=SCRIPTED_APP).options(_by_reference=by_reference)
    pool = InProcess(config, PooledLLM(pool_handle, name=MODEL))
    agent_handle = serve.get_deployment_handle(f"agent-{AGENT}", app_name=SCRIPTED_APP).options(
        _by_reference=by_reference)
    served = ServedAgent(AGENT, agent_handle)

    async def via_stream(text: str) -> str | None:
        result = None
        async for event in served.stream(RunRequest(agent=AGENT, input=text)):
            if event.type == "done":
                result = event.result
        return result.answer if result is not None else None

    async def via_run(text: str) -> str | None:
        result = await agent_handle.run.remote(RunRequest(agent=AGENT, input=text).model_dump(mode="json"))
        return result.answer

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        openai_client = None
        if args.client == "openai":
            import openai

            openai_client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0,
                                               http_client=client)

        async def via_http(text: str) -> str | None:
            messages = [{"role": "user", "content": text}]
            if openai_client is not None:
                reply = await openai_client.chat.completions.create(model=AGENT, messages=messages)
                extension = reply.model_extra.get("raygent") or {}
                assert [c["name"] for c in extension.get("tool_calls", [])] == ["calculator"], extension
                return reply.choices[0].message.content
            response = await client.post("/v1/chat/completions", json={"model": AGENT, "messages": messages})
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
            body = response.json()
            assert [c["name"] for c in body["raygent"]["tool_calls"]] == ["calculator"], body["raygent"]
            return body["choices"][0]["message"]["content"]

        ways = [("inproc", inproc.run), ("pool-handle", pool.run), ("agent-handle", via_stream),
                ("agent-run", via_run), (f"http ({args.client})", via_http)]
        out: dict[str, Any] = {}
        samples: dict[str, list[float]] = {}
        # interleaved rounds: a slow spell of the (shared) machine lands on every way alike
        rounds = max(1, args.latency_rounds)
        per_round = [args.runs // rounds + (1 if r < args.runs % rounds else 0) for r in range(rounds)]
        offset = 0
        for r, n in enumerate(per_round):
            for label, call in ways:
                samples.setdefault(label, []).extend(await timed(call, n, args.warmup if r == 0 else 2, offset))
                offset += n + args.warmup
        async def healthz() -> None:
            response = await client.get("/healthz")
            response.raise_for_status()

        async def card() -> None:
            await agent_handle.card.remote()

        hops = [("hop serve", card), ("hop http", healthz)]
        for label, call in hops:
            samples[label] = await probe(call, args.runs, args.warmup)
    for label, _ in ways:
        out[label.split()[0]] = summary(label, samples[label])
    print("latency one hop alone, for scale: `hop serve` = a Serve handle call to the agent replica that does "
          "nothing (card()), `hop http` = GET /healthz (proxy -> ingress, no Serve call behind it)", flush=True)
    for label, _ in hops:
        out[label.replace(" ", "_")] = summary(label, samples[label])
    http, local = out["http"], out["inproc"]
    added50, added99 = http["p50_ms"] - local["p50_ms"], http["p99_ms"] - local["p99_ms"]
    out["added_p50_ms"], out["added_p99_ms"] = added50, added99
    serve50 = out["agent-handle"]["p50_ms"] - local["p50_ms"]
    print(f"latency added by serving (http - inproc): p50 {added50:.2f} ms, p99 {added99:.2f} ms; "
          f"of it Serve (agent-handle - inproc) p50 {serve50:.2f} ms, HTTP+ingress (http - agent-handle) "
          f"p50 {added50 - serve50:.2f} ms", flush=True)
    print(f"latency goal: added p50 <= 10 ms: {'met' if added50 <= 10 else 'NOT met'} ({added50:.2f} ms)", flush=True)
    return out


# -- concurrent ---------------------------------------------------------------------------------------------
async def sse_run(client: httpx.AsyncClient, i: int, errors: list[str]) -> tuple[float, str | None]:
    """One run as SSE until `end`; returns (seconds, run id); problems go to `errors`."""
    text, value = expression(i)
    start = time.perf_counter()
    run_id: str | None = None
    try:
        async with client.stream("POST", "/v1/runs", json={"agent": AGENT, "input": text},
                                 headers={"Accept": "text/event-stream"}) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                errors.append(f"HTTP {response.status_code}: {body[:300]}")
                return time.perf_counter() - start, None
            name, data, answer, end = "message", [], None, None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    payload = json.loads("\n".join(data))
                    if name == "run":
                        run_id = payload["id"]
                    elif name == "done":
                        answer = (payload.get("result") or {}).get("answer")
                    elif name == "end":
                        end = payload
                        break
                    name, data = "message", []
            elapsed = time.perf_counter() - start
        if end is None:
            errors.append(f"run {run_id}: the stream closed without an `end` event")
        elif end.get("status") != "succeeded":
            errors.append(f"run {run_id}: ended {end.get('status')}: {end.get('error')}")
        elif not answer_ok(answer, value):
            errors.append(f"run {run_id}: wrong answer {answer!r} for {text!r}")
        return elapsed, run_id
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        return time.perf_counter() - start, run_id


async def served_wave(client: httpx.AsyncClient, n: int, offset: int) -> dict[str, Any]:
    errors: list[str] = []
    start = time.perf_counter()
    results = await asyncio.gather(*(sse_run(client, offset + i, errors) for i in range(n)))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "seconds": [s for s, _ in results], "ids": [r for _, r in results if r], "errors": errors}


async def check_records(client: httpx.AsyncClient, ids: list[str]) -> list[str]:
    """Every run's record, read back: a run not found or not succeeded is lost."""
    gate = asyncio.Semaphore(16)
    problems: list[str] = []

    async def one(run_id: str) -> None:
        async with gate:
            try:
                response = await client.get(f"/v1/runs/{run_id}")
                record = response.json()
                if response.status_code != 200 or record.get("status") != "succeeded":
                    problems.append(f"record {run_id}: HTTP {response.status_code} {str(record)[:200]}")
            except Exception as exc:
                problems.append(f"record {run_id}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(r) for r in ids))
    return problems


async def part_concurrent(args: argparse.Namespace, base: str, config: Any) -> dict[str, Any]:
    n = args.concurrency
    inproc = InProcess(config)
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=n + 16, max_keepalive_connections=n + 16)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(args.timeout_s), limits=limits) as client:
        warm = await served_wave(client, min(n, args.concurrent_warmup), 1_000_000)
        if warm["errors"]:
            print(f"concurrent warm-up: {len(warm['errors'])} error(s), first: {warm['errors'][0]}", flush=True)
        waves = []
        for w in range(args.waves):
            wave = await served_wave(client, n, 2_000_000 + w * n)
            lost = await check_records(client, wave["ids"])
            missing = n - len(wave["ids"])
            wave["errors"] += lost
            waves.append(wave)
            print(f"concurrent served wave {w + 1}: {n} SSE runs in {wave['wall_s']:.2f} s = "
                  f"{n / wave['wall_s']:.1f} runs/s; run latency p50 {pct(ms(wave['seconds']), 0.5):.1f} ms "
                  f"p99 {pct(ms(wave['seconds']), 0.99):.1f} ms; errors {len(wave['errors'])} "
                  f"(of which records not succeeded {len(lost)}, runs without an id {missing})", flush=True)
            for e in wave["errors"][:5]:
                print(f"    error: {e}", flush=True)
    seconds = [s for w in waves for s in w["seconds"]]
    errors = sum(len(w["errors"]) for w in waves)
    served_rps = statistics.median(n / w["wall_s"] for w in waves)
    local_rps, local_lat = [], []

    async def one(i: int) -> float:
        text, value = expression(i)
        t = time.perf_counter()
        answer = await inproc.run(text)
        if not answer_ok(answer, value):
            raise RuntimeError(f"in-process run: wrong answer {answer!r}")
        return time.perf_counter() - t

    for r in range(max(1, args.inproc_repeats)):
        start = time.perf_counter()
        local_lat.extend(await asyncio.gather(*(one(3_000_000 + r * n + i) for i in range(n))))
        local_rps.append(n / (time.perf_counter() - start))
    inproc_rps = statistics.median(local_rps)
    out.update(runs=n * len(waves), errors=errors, served_runs_per_s=served_rps,
               served_p50_ms=pct(ms(seconds), 0.5), served_p99_ms=pct(ms(seconds), 0.99),
               inproc_runs_per_s=inproc_rps, inproc_p50_ms=pct(ms(local_lat), 0.5),
               inproc_p99_ms=pct(ms(local_lat), 0.99), ratio=served_rps / inproc_rps)
    print(f"concurrent served   {n} concurrent SSE runs x {len(waves)} wave(s): {served_rps:8.1f} runs/s (median wave), "
          f"run latency p50 {out['served_p50_ms']:.1f} ms p99 {out['served_p99_ms']:.1f} ms, errors {errors} "
          f"(goal 0: {'met' if errors == 0 else 'NOT met'})", flush=True)
    print(f"concurrent inproc   {n} concurrent Agent.run x {len(local_rps)}: {inproc_rps:8.1f} runs/s (median), "
          f"run latency p50 {out['inproc_p50_ms']:.1f} ms p99 {out['inproc_p99_ms']:.1f} ms", flush=True)
    print(f"concurrent ratio served/inproc runs/s = {out['ratio']:.3f}", flush=True)
    return out


# -- embedded -----------------------------------------------------------------------------------------------
async def part_embedded(args: argparse.Namespace, base: str) -> dict[str, Any]:
    from ray import serve

    from raygent.llm_pool.embedded import DEFAULT_MODEL, ensure_embedded_model
    from raygent.serve.app import DEFAULT_AGENT, SecurityConfig, StateConfig, build_app, default_config

    start = time.perf_counter()
    ensure_embedded_model(DEFAULT_MODEL)  # assembled once into RAYGENT_HOME (the replica finds it there)
    assemble_s = time.perf_counter() - start
    config = default_config().model_copy(update={"state": StateConfig(url=state_url()),
                                                 "security": SecurityConfig(**security(args))})
    start = time.perf_counter()
    serve.run(build_app(config), name=EMBEDDED_APP, route_prefix="/")
    deploy_s = time.perf_counter() - start
    print(f"embedded model {DEFAULT_MODEL} on llama.cpp (pool: {config.models[DEFAULT_MODEL].pool.num_replicas} "
          f"replica, {config.models[DEFAULT_MODEL].pool.num_cpus} CPU), agent {DEFAULT_AGENT!r} with tools "
          f"{config.agents[DEFAULT_AGENT].tools}", flush=True)
    print(f"embedded model file ready in {assemble_s:.1f} s; app deployed (model loaded) in {deploy_s:.1f} s", flush=True)
    out: dict[str, Any] = {"assemble_s": assemble_s, "deploy_s": deploy_s, "requests": []}
    async with httpx.AsyncClient(base_url=base, timeout=args.embedded_timeout_s) as client:
        for label in ("first", "second"):
            start = time.perf_counter()
            response = await client.post("/v1/chat/completions", json={
                "model": DEFAULT_AGENT, "messages": [{"role": "user", "content": ADDRESS_TEXT}]})
            wall = time.perf_counter() - start
            if response.status_code != 200:
                print(f"embedded {label} request: HTTP {response.status_code} after {wall:.2f} s: "
                      f"{response.text[:500]}", flush=True)
                out["requests"].append({"label": label, "status": response.status_code, "wall_s": wall})
                continue
            body = response.json()
            answer = body["choices"][0]["message"]["content"] or ""
            extension = body.get("raygent") or {}
            calls = [{"name": c.get("name"), "arguments": c.get("arguments"),
                      "result": c.get("result"), "error": c.get("error")} for c in extension.get("tool_calls", [])]
            found = {w: w in answer for w in ("浙江", "杭州", "江干")}
            out["requests"].append({"label": label, "wall_s": wall, "tool_calls": calls, "answer": answer,
                                    "error": extension.get("error"),
                                    "found": found, "steps": extension.get("steps"),
                                    "stop_reason": extension.get("stop_reason"), "usage": body.get("usage")})
            print(f"embedded {label} request: {wall:.2f} s, steps {extension.get('steps')}, "
                  f"stop {extension.get('stop_reason')}, usage {body.get('usage')}"
                  + (f", error: {extension['error']}" if extension.get("error") else ""), flush=True)
            for c in calls:
                print(f"    tool call {c['name']}({json.dumps(c['arguments'], ensure_ascii=False)}) -> "
                      f"{json.dumps(c['result'], ensure_ascii=False)[:300]}"
                      + (f" error {c['error']}" if c["error"] else ""), flush=True)
            print(f"    answer: {answer[:400]!r}", flush=True)
            print(f"    answer contains 浙江 {found['浙江']}, 杭州 {found['杭州']}, 江干 {found['江干']}"
                  f" -> {'all three' if all(found.values()) else 'NOT all three'}", flush=True)
    timed_ok = [r for r in out["requests"] if "tool_calls" in r]
    if len(timed_ok) == 2:
        print(f"embedded first request {timed_ok[0]['wall_s']:.2f} s vs second {timed_ok[1]['wall_s']:.2f} s "
              f"(first/second {timed_ok[0]['wall_s'] / timed_ok[1]['wall_s']:.2f})", flush=True)
    serve.delete(EMBEDDED_APP)
    return out


# -- main ---------------------------------------------------------------------------------------------------
def start_ray(show_logs: bool, ingress: str = "proxy", fast_path: bool = True) -> None:
    options: dict[str, Any] = {"ingress": ingress, "serve_fast_path": fast_path}
    for _ in range(3):  # Ray restarted in one process now and then never starts its GCS
        try:
            runtime.init(log_to_driver=show_logs, **options)
            return
        except RuntimeError as exc:
            print(f"starting Ray failed ({exc}); trying again", flush=True)
            runtime.shutdown()
            time.sleep(2.0)
    raise RuntimeError("could not start Ray three times in a row")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from ray import serve

    from raygent.serve.app import build_app

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"latency", "concurrent", "embedded"}
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; parts: latency, concurrent, embedded")
    load = os.getloadavg()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average {load[0]:.2f}, "
          f"python {platform.python_version()}", flush=True)
    print(f"RAYGENT_HOME {os.environ['RAYGENT_HOME']}, state {state_url()}", flush=True)
    start_ray(args.ray_logs, args.ingress, not args.no_fast_path)
    import ray

    print(f"ray {ray.__version__}, cluster CPUs {ray.cluster_resources().get('CPU')}, HTTP ingress {args.ingress}, "
          f"Serve fast path (gRPC handles, same-loop replicas) {'off' if args.no_fast_path else 'on'}", flush=True)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    if {"latency", "concurrent"} & set(parts):
        config = scripted_config(args)
        start = time.perf_counter()
        serve.run(build_app(config), name=SCRIPTED_APP, route_prefix="/")
        print(f"scripted app deployed in {time.perf_counter() - start:.1f} s at {base}", flush=True)
        print(f"config: {describe(config)}", flush=True)
        if "latency" in parts:
            results["latency"] = await part_latency(args, base, config)
        if "concurrent" in parts:
            results["concurrent"] = await part_concurrent(args, base, config)
        serve.delete(SCRIPTED_APP)
    if "embedded" in parts:
        results["embedded"] = await part_embedded(args, base)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="latency,concurrent,embedded")
    parser.add_argument("--runs", type=int, default=200, help="latency: timed runs per way")
    parser.add_argument("--warmup", type=int, default=20, help="latency: untimed runs per way first")
    parser.add_argument("--latency-rounds", type=int, default=4,
                        help="latency: the ways take turns in this many rounds (a slow spell hits all alike)")
    parser.add_argument("--client", choices=("httpx", "openai"), default="httpx", help="latency: the HTTP client")
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent: runs in flight at once")
    parser.add_argument("--waves", type=int, default=2, help="concurrent: measured waves of --concurrency runs")
    parser.add_argument("--concurrent-warmup", type=int, default=50, help="concurrent: runs of the warm-up wave")
    parser.add_argument("--inproc-repeats", type=int, default=3, help="concurrent: in-process waves (median)")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="concurrent: per-request timeout")
    parser.add_argument("--agent-replicas", type=int, default=1)
    parser.add_argument("--pool-replicas", type=int, default=1)
    parser.add_argument("--max-ongoing", type=int, default=256,
                        help="max_ongoing_requests of the agent deployment and of the scripted model's pool")
    parser.add_argument("--sessions", action="store_true",
                        help="the served agent keeps sessions (memory on: each /v1/runs run gets a SQLite session)")
    parser.add_argument("--concurrent-runs-limit", type=int, default=1000, help="security.concurrent_runs")
    parser.add_argument("--rpm-limit", type=int, default=100_000, help="security.requests_per_minute")
    parser.add_argument("--embedded-timeout-s", type=float, default=600.0)
    parser.add_argument("--ingress", choices=("proxy", "haproxy"), default="proxy",
                        help="what receives HTTP: Ray Serve's proxy actor or Serve's HAProxy ingress")
    parser.add_argument("--no-fast-path", action="store_true",
                        help="start Ray without raygent's Serve fast path (Ray's defaults: handles over actor "
                             "calls, replicas' user code on a second thread) to measure what it gives")
    parser.add_argument("--ray-logs", action="store_true", help="show the replicas' logs")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args()


if __name__ == "__main__":
    try:
        args_global = parse_args()
        figures = asyncio.run(main(args_global))
        if args_global.json:
            Path(args_global.json).write_text(json.dumps(figures, indent=2, ensure_ascii=False, default=str))
    finally:
        stop_serving(TMP)
