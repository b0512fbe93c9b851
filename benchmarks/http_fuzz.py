"""HTTP fuzzing of raygent's served API with Schemathesis, from its published OpenAPI spec.

The real server: Ray Serve's HTTP proxy on 127.0.0.1, the RaygentIngress (FastAPI, security and
metrics middleware), the agent deployments, the pool replicas, the SQLite state and key store. The
models are rule-based (ToolThenAnswerModel: each calls its tool, then answers from the result), so a
run costs milliseconds and everything but the LLM is what runs in production.

Schemathesis reads `/openapi.json` and generates requests for every operation (valid bodies and,
in the negative phase, invalid ones). Each generated request is sent four ways:

- key A (a valid key): Schemathesis's checks must pass: no 5xx (`not_a_server_error`), every status
  and content type and header the spec declares (`status_code_conformance`,
  `content_type_conformance`, `response_headers_conformance`), every body matching its schema
  (`response_schema_conformance`), invalid input refused (`negative_data_rejection`);
- no key, a well-formed but unknown key, a `Basic` scheme: every route but the open ones
  (`/healthz`, agent cards) must answer 401 (anything else is an "unauthorised answer");
- key B against A's resources: the path parameters are A's session, run and artifact ids, and
  A's session id in request bodies: every answer must be a 404 that does not contain A's data
  (anything else is a "cross-key leak"); afterwards A still sees its session, run and artifact
  unchanged.

A2A (`/a2a/...`, mounted apart from the FastAPI routes and absent from the spec) is probed without a
key too.

Run: .venv/bin/python benchmarks/http_fuzz.py [--examples 100] [--json FILE]
The short version runs in CI: tests/test_http_fuzz.py (a few examples per operation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _serving import stop_serving

#: routes that answer without a key (docs/security.md)
OPEN_ROUTES = {("GET", "/healthz"), ("HEAD", "/healthz")}
APP_NAME = "raygent-http-fuzz"
MARKER = "zq-secret-of-key-a"  # text only key A's resources contain (a leak shows it)
EXPRESSION_OF_A, ANSWER_OF_A = "6*7+1234567", "1234609"  # A's calculation and its result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fuzz_config(state_url: str) -> dict[str, Any]:
    """calc (calculator, sessions), painter (image_generate: artifacts, no memory) on rule-based
    models; keys are required (they exist), limits high enough not to get in the fuzzer's way."""

    def model(tool: str, argument: str) -> dict[str, Any]:
        return {"model": {"type": "scripted", "tool_then_answer": {"tool": tool, "argument": argument}},
                "pool": {"num_cpus": 0, "max_ongoing_requests": 64}}

    return {
        "models": {"calc-model": model("calculator", "expression"), "paint-model": model("image_generate", "prompt")},
        "agents": {"calc": {"description": "Does arithmetic with the calculator.", "model": "calc-model",
                            "tools": ["calculator"], "deployment": {"num_cpus": 0}},
                   "painter": {"model": "paint-model", "tools": ["image_generate"], "memory": False,
                               "deployment": {"num_cpus": 0}}},
        "default_model": "calc-model", "default_agent": "calc",
        "state": {"url": state_url},
        "security": {"require_keys": "always", "requests_per_minute": 1_000_000, "concurrent_runs": 1000},
    }


def make_keys(state_url: str) -> dict[str, str]:
    """Keys A and B in the server's key store (what `raygent keys create` does)."""
    from raygent.serve.keys import open_key_store

    async def create() -> dict[str, str]:
        store = open_key_store(state_url)
        try:
            return {name: (await store.create(name=name)).key for name in ("a", "b")}
        finally:
            await store.close()

    return asyncio.run(create()) if not _loop_running() else _in_thread(create)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _in_thread(factory: Any) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def deploy(state_url: str, port: int) -> str:
    """The fuzzed app on the connected Ray, Serve's proxy on 127.0.0.1:port; returns the base URL."""
    from ray import serve

    from raygent.serve.app import ServeConfig, build_app

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(ServeConfig(**fuzz_config(state_url))), name=APP_NAME, route_prefix="/")
    return f"http://127.0.0.1:{port}"


# -- key A's resources ---------------------------------------------------------------------------------------
@dataclass
class Owned:
    """What key A made before the fuzzing: B must never reach any of it."""

    session_id: str
    run_id: str
    artifact_id: str
    session_messages: int
    artifact_bytes: bytes

    def ids(self) -> list[str]:
        return [self.session_id, self.run_id, self.artifact_id]


def make_resources(base: str, key_a: str) -> Owned:
    import httpx

    auth = {"Authorization": f"Bearer {key_a}"}
    session = f"sess-a-{secrets.token_hex(4)}"
    with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
        run = http.post("/v1/runs?wait=true", json={"agent": "calc", "input": EXPRESSION_OF_A, "session_id": session})
        assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
        painted = http.post("/v1/runs?wait=true", json={"agent": "painter", "input": f"a red kite {MARKER}"})
        assert painted.status_code == 200 and painted.json()["status"] == "succeeded", painted.text
        artifact = painted.json()["result"]["artifacts"][0]["metadata"]["artifact_id"]
        messages = http.get(f"/v1/sessions/{session}").json()["messages"]
        content = http.get(f"/v1/artifacts/{artifact}").content
    return Owned(session_id=session, run_id=run.json()["id"], artifact_id=artifact,
                 session_messages=len(messages), artifact_bytes=content)


def check_resources_intact(base: str, key_a: str, owned: Owned) -> list[str]:
    """After B's attempts: A's session, run and artifact are all still there, unchanged."""
    import httpx

    problems = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key_a}"}, timeout=60) as http:
        session = http.get(f"/v1/sessions/{owned.session_id}")
        if session.status_code != 200 or len(session.json()["messages"]) != owned.session_messages:
            problems.append(f"A's session changed: {session.status_code} {session.text[:200]}")
        run = http.get(f"/v1/runs/{owned.run_id}")
        if run.status_code != 200 or run.json()["status"] != "succeeded":
            problems.append(f"A's run changed: {run.status_code} {run.text[:200]}")
        artifact = http.get(f"/v1/artifacts/{owned.artifact_id}")
        if artifact.status_code != 200 or artifact.content != owned.artifact_bytes:
            problems.append(f"A's artifact changed: {artifact.status_code}")
    return problems


# -- the fuzzing ---------------------------------------------------------------------------------------------
@dataclass
class RouteTotals:
    requests: int = 0
    server_errors: int = 0
    violations: int = 0
    unauthorised: int = 0
    leaks: int = 0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Report:
    routes: dict[str, RouteTotals] = field(default_factory=lambda: defaultdict(RouteTotals))
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        out = {"requests": 0, "server_errors": 0, "violations": 0, "unauthorised": 0, "leaks": 0}
        for r in self.routes.values():
            out["requests"] += r.requests
            out["server_errors"] += r.server_errors
            out["violations"] += r.violations
            out["unauthorised"] += r.unauthorised
            out["leaks"] += r.leaks
        return out

    def fail(self, text: str) -> None:
        if len(self.failures) < 200:
            self.failures.append(text)

    def print(self, out: Any = None) -> None:
        out = out or sys.stdout
        print(f"{'route':42s} {'requests':>8s} {'5xx':>5s} {'spec':>5s} {'unauth':>6s} {'leaks':>5s}  statuses",
              file=out)
        for name in sorted(self.routes):
            r = self.routes[name]
            statuses = " ".join(f"{s}x{n}" for s, n in sorted(r.statuses.items()))
            print(f"{name:42s} {r.requests:8d} {r.server_errors:5d} {r.violations:5d} {r.unauthorised:6d} "
                  f"{r.leaks:5d}  {statuses}", file=out)
        t = self.totals()
        print(f"{'TOTAL':42s} {t['requests']:8d} {t['server_errors']:5d} {t['violations']:5d} "
              f"{t['unauthorised']:6d} {t['leaks']:5d}  ({self.seconds:.1f} s)", file=out)
        for f in self.failures[:30]:
            print(f"  failure: {f}", file=out)


def load_schema(base: str, key: str) -> Any:
    """The spec the server publishes (behind a key, like every route but /healthz and agent cards)."""
    import httpx
    import schemathesis

    response = httpx.get(f"{base}/openapi.json", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    response.raise_for_status()
    spec = response.json()
    return schemathesis.openapi.from_dict(spec)


def with_credentials(base: str, key: str) -> Any:
    """The spec, Schemathesis told the key to send (a request with it is then not a negative case
    for the bearer scheme the spec declares)."""
    schema = load_schema(base, key)
    schema.config.update(headers={"Authorization": f"Bearer {key}"})
    return schema


def _operations(schema: Any) -> list[Any]:
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())
    return ops


def _label(op: Any) -> str:
    return f"{op.method.upper()} {op.path}"


def _checks() -> list[Any]:
    from schemathesis import checks

    return [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
            checks.response_headers_conformance, checks.response_schema_conformance,
            checks.negative_data_rejection]


def _drive(op: Any, strategy: Any, examples: int, send: Any, seed: int | None = None) -> None:
    """Draw up to `examples` cases from `strategy` and `send` each (failures are counted, not raised:
    no shrinking, every example counts)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from hypothesis import seed as with_seed

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=seed is None)
    @given(case=strategy)
    def run(case: Any) -> None:
        send(case)

    if seed is not None:
        run = with_seed(seed)(run)
    try:
        run()
    except Unsatisfiable:  # nothing to generate (no invalid input for an operation without parameters)
        pass


def _call(case: Any, base: str, headers: dict[str, str], timeout: float) -> Any:
    """Send the case with this phase's credentials (or none) in place of any the generator made up."""
    if case.headers:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "authorization"}
    return case.call(base_url=base, headers=headers, timeout=timeout)


def fuzz_valid_key(schema: Any, base: str, key: str, examples: int, report: Report, timeout: float = 60) -> None:
    """Key A, positive and negative cases: Schemathesis's checks (no 5xx, conformance to the spec)."""
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup

    headers = {"Authorization": f"Bearer {key}"}
    checks = _checks()
    for op in _operations(schema):
        label = _label(op)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            def send(case: Any, label: str = label) -> None:
                totals = report.routes[label]
                response = _call(case, base, headers, timeout)
                totals.requests += 1
                totals.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    totals.server_errors += 1
                    report.fail(f"{label}: {response.status_code} {response.text[:300]} for {_describe(case)}")
                try:
                    case.validate_response(response, checks=checks, headers=headers)
                except FailureGroup as group:
                    names = sorted({type(e).__name__ + ": " + (getattr(e, 'title', '') or '') for e in group.exceptions})
                    if any("ServerError" not in n for n in names):
                        totals.violations += 1
                        report.fail(f"{label} [{mode.value}]: {names} -> {response.status_code} "
                                    f"{response.text[:200]!r} for {_describe(case)}")
                except AssertionError as exc:
                    totals.violations += 1
                    report.fail(f"{label} [{mode.value}]: {exc} for {_describe(case)}")

            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Exception as exc:  # an operation without invalid input to generate, say
                report.fail(f"{label} [{mode.value}]: no strategy: {type(exc).__name__}: {exc}")
                continue
            _drive(op, strategy, examples, send)


def _describe(case: Any) -> str:
    parts = [f"path={case.path_parameters}" if case.path_parameters else "",
             f"query={case.query}" if case.query else "",
             f"body={json.dumps(case.body, default=str)[:200]}" if case.body is not None and
             type(case.body).__name__ != "NotSet" else ""]
    return " ".join(p for p in parts if p) or "(no input)"


def _header(response: Any, name: str) -> str | None:
    value = {k.lower(): v for k, v in response.headers.items()}.get(name)
    return value[0] if isinstance(value, list) and value else value


def bad_credentials() -> dict[str, dict[str, str]]:
    return {"no key": {},
            "unknown key": {"Authorization": f"Bearer rgk_{secrets.token_urlsafe(32)}"},
            "malformed key": {"Authorization": "Bearer sk-placeholder"},
            "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"}}


def fuzz_without_key(schema: Any, base: str, examples: int, report: Report, timeout: float = 60) -> None:
    """Every operation, each way of not having a valid key: 401 unless the route is open."""
    credentials = bad_credentials()
    for op in _operations(schema):
        label = _label(op)
        open_route = (op.method.upper(), op.path) in OPEN_ROUTES
        for how, headers in credentials.items():
            def send(case: Any, label: str = label, headers: dict[str, str] = headers, how: str = how) -> None:
                totals = report.routes[f"{label} (no valid key)"]
                response = _call(case, base, headers, timeout)
                totals.requests += 1
                totals.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    totals.server_errors += 1
                    report.fail(f"{label} ({how}): {response.status_code} {response.text[:200]}")
                if not open_route and response.status_code != 401 and response.status_code != 413:
                    totals.unauthorised += 1
                    report.fail(f"{label} ({how}): answered {response.status_code} without a valid key: "
                                f"{response.text[:200]!r} for {_describe(case)}")
                elif not open_route and response.status_code == 401 \
                        and _header(response, "www-authenticate") != "Bearer":
                    totals.violations += 1
                    report.fail(f"{label} ({how}): 401 without WWW-Authenticate: Bearer")

            _drive(op, op.as_strategy(), max(1, examples // 2), send)
    # A2A lives outside the spec (mounted apart): its routes need a key too, its cards are open
    import httpx

    probes = [("POST", "/a2a/calc/", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}),
              ("POST", "/a2a/calc", {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}),
              ("POST", "/a2a/painter/", {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}),
              ("GET", "/a2a/calc/v1/tasks/t-1", None), ("POST", "/a2a/nobody/", {}), ("GET", "/a2a/", None),
              ("GET", "/metrics", None), ("GET", "/docs", None), ("GET", "/nowhere", None), ("PUT", "/v1/runs", {})]
    with httpx.Client(base_url=base, timeout=timeout) as http:
        for method, path, body in probes:
            for how, headers in credentials.items():
                label = f"{method} {path.rstrip('/') or '/'} (extra)"
                totals = report.routes[label]
                response = http.request(method, path, json=body, headers=headers)
                totals.requests += 1
                totals.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    totals.server_errors += 1
                if response.status_code not in (401, 413) and path != "/docs":
                    totals.unauthorised += 1
                    report.fail(f"{label} ({how}): answered {response.status_code} without a valid key")
        for path in ("/a2a/calc/.well-known/agent-card.json", "/healthz"):
            response = http.get(path)
            totals = report.routes[f"GET {path} (open)"]
            totals.requests += 1
            totals.statuses[response.status_code] += 1
            if response.status_code != 200:
                totals.violations += 1
                report.fail(f"GET {path}: an open route answered {response.status_code}")


def fuzz_cross_key(schema: Any, base: str, key_b: str, owned: Owned, examples: int, report: Report,
                   timeout: float = 60) -> None:
    """Key B with A's ids: in the path of every operation that takes one, and as `session_id` in the
    bodies of the run-starting routes. B must get no 2xx and no byte of A's data (its run and
    artifact ids, the marker in its prompts, its answer); A's session id B sent may come back only in
    the 404 that says it does not exist."""
    headers = {"Authorization": f"Bearer {key_b}"}
    values = {"run_id": owned.run_id, "session_id": owned.session_id, "artifact_id": owned.artifact_id}
    secrets_of_a = [MARKER, ANSWER_OF_A, owned.run_id, owned.artifact_id]

    for op in _operations(schema):
        label = _label(op)
        names = [p.name for p in op.path_parameters if p.name in values]
        body_session = op.method.upper() == "POST" and op.path in ("/v1/runs", "/v1/chat/completions")
        if not names and not body_session:
            continue

        def send(case: Any, label: str = label, body_session: bool = body_session, path: str = op.path) -> None:
            totals = report.routes[f"{label} (key B)"]
            if body_session:
                if not isinstance(case.body, dict):
                    return
                case.body["session_id"] = owned.session_id
                case.body["agent" if path == "/v1/runs" else "model"] = "calc"
            response = _call(case, base, headers, timeout)
            totals.requests += 1
            totals.statuses[response.status_code] += 1
            if response.status_code >= 500:
                totals.server_errors += 1
                report.fail(f"{label} (B on A's): {response.status_code} {response.text[:200]}")
            sent = set((case.path_parameters or {}).values())  # B may read back the id it sent in a 404
            found = next((s for s in secrets_of_a if s in response.text and s not in sent), None)
            if 200 <= response.status_code < 300 or found:
                totals.leaks += 1
                report.fail(f"{label} (B on A's): {response.status_code} {response.text[:200]!r} "
                            f"for {_describe(case)}")

        strategy = op.as_strategy(path_parameters={n: values[n] for n in names}) if names else op.as_strategy()
        _drive(op, strategy, examples, send)


def run_fuzz(base: str, keys: dict[str, str], examples: int, *, timeout: float = 60,
             log: Any = None) -> tuple[Report, list[str]]:
    """The whole suite against a running server; returns the report and problems with A's resources."""
    log = log or (lambda text: print(text, flush=True))
    report = Report()
    start = time.perf_counter()
    owned = make_resources(base, keys["a"])
    schema = load_schema(base, keys["a"])
    ops = _operations(schema)
    log(f"spec: {len(ops)} operations: {', '.join(_label(o) for o in ops)}")
    phase = time.perf_counter()
    fuzz_valid_key(with_credentials(base, keys["a"]), base, keys["a"], examples, report,
                   timeout)
    log(f"phase valid key: {time.perf_counter() - phase:.1f} s")
    phase = time.perf_counter()
    fuzz_without_key(schema, base, examples, report, timeout)
    log(f"phase without a valid key: {time.perf_counter() - phase:.1f} s")
    phase = time.perf_counter()
    fuzz_cross_key(schema, base, keys["b"], owned, examples, report, timeout)
    log(f"phase key B on A's resources: {time.perf_counter() - phase:.1f} s")
    intact = check_resources_intact(base, keys["a"], owned)
    report.seconds = time.perf_counter() - start
    return report, intact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per operation and generation mode")
    parser.add_argument("--json", help="also write the totals to this JSON file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="raygent-fuzz-"))
    os.environ.setdefault("RAYGENT_HOME", str(tmp / "home"))
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from raygent import runtime

    load = os.getloadavg()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared), load average {load[0]:.2f}", flush=True)
    try:
        runtime.init(log_to_driver=False)
        state = f"sqlite://{tmp / 'state' / 'memory.sqlite'}"
        (tmp / "state").mkdir(parents=True, exist_ok=True)
        keys = make_keys(state)
        start = time.perf_counter()
        base = deploy(state, free_port())
        print(f"deployed in {time.perf_counter() - start:.1f} s at {base}", flush=True)
        report, intact = run_fuzz(base, keys, args.examples)
        report.print()
        print(f"key A's resources after key B's attempts: {'intact' if not intact else intact}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"totals": report.totals(), "intact": not intact,
                                                   "routes": {k: {**v.__dict__, "statuses": dict(v.statuses)}
                                                              for k, v in report.routes.items()}}, indent=2))
        t = report.totals()
        return 0 if not intact and not (t["server_errors"] or t["violations"] or t["unauthorised"] or t["leaks"]) else 1
    finally:
        stop_serving(tmp)


if __name__ == "__main__":
    sys.exit(main())
