"""A real multi-node Ray cluster on this host, for tests: a head and a worker raylet from `ray start`.

Two raylets on one host need distinct node IPs (Ray rewrites 127.0.0.1, so 127.0.0.2 and
127.0.0.3; every 127/8 address is loopback on Linux) and token authentication (RAY_AUTH_MODE=token;
the token is made here, per cluster, and never written to ~/.ray). Each node gets its own temp dir
and every port Ray would otherwise take at a fixed default (GCS 6379, dashboard 8265, client
server 10001, dashboard agent 52365) is a free one, so the cluster coexists with other Ray
clusters on the machine. Each `ray start --block` runs in its own session: its process group is
that node's raylet, GCS (head), dashboard, agents and log monitor, so `kill(node)` is one killpg.

The cluster's processes carry a marker variable (RAYGENT_TEST_CLUSTER=<id>): worker processes
(actors, Serve replicas) run in process groups of their own, and teardown finds any of them still
alive by that marker and ends them by PID. Nothing here runs `ray stop`.

The GCS is told to notice a dead raylet within a few seconds (health checks every 0.5 s, 4 misses)
instead of Ray's ~15-30 s, so node-failure tests finish quickly; `health_check` overrides that.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEAD_IP = "127.0.0.2"
WORKER_IP = "127.0.0.3"
MARKER = "RAYGENT_TEST_CLUSTER"
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")

#: GCS settings for a fast verdict on a dead raylet (read from the environment by the GCS)
FAST_HEALTH_CHECK = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                     "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "4"}

_NODES_SNIPPET = """
import json, os, sys, time
import ray
ray.init(log_to_driver=False)
want, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while True:
    nodes = [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
              "resources": n["Resources"]} for n in ray.nodes()]
    if sum(n["alive"] for n in nodes) >= want or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print("NODES " + json.dumps(nodes))
"""


class ClusterError(RuntimeError):
    pass


def two_loopback_nodes_possible() -> bool:
    """Whether this host can give the head and the worker their own loopback addresses (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    for ip in (HEAD_IP, WORKER_IP):
        try:
            with socket.socket() as s:
                s.bind((ip, 0))
        except OSError:
            return False
    return True


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    ip: str
    resources: dict[str, float]
    num_cpus: int
    temp_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    node_id: str | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # start_new_session: the `ray start` process leads its own group

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class LocalCluster:
    """A head (HEAD_IP) and a worker (WORKER_IP) on this host; see the module docstring."""

    def __init__(self, root: Path | None = None, *, head_resources: dict[str, float],
                 worker_resources: dict[str, float], num_cpus: int = 2, dashboard: bool = True,
                 object_store_mb: int = 128, health_check: dict[str, str] | None = None,
                 env: dict[str, str] | None = None):
        # Ray's Unix sockets live under the temp dir, and a socket path may have at most 107 bytes:
        # a short directory of our own (removed by stop) instead of pytest's long tmp_path
        self.root = Path(tempfile.mkdtemp(prefix="rgc-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.keep_logs = Path(root) if root is not None else None
        self.id = secrets.token_hex(6)
        self.token = secrets.token_hex(16)
        self.gcs_port = free_port(HEAD_IP)
        self.dashboard_port = free_port(HEAD_IP)
        self.dashboard = dashboard
        self.object_store_bytes = object_store_mb * 1024 * 1024
        self.head = Node("head", HEAD_IP, dict(head_resources), num_cpus, self.root / "head", self.root / "head.log")
        self.worker = Node("worker", WORKER_IP, dict(worker_resources), num_cpus, self.root / "worker",
                           self.root / "worker.log")
        self.start_s: float | None = None
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_health_check", "RAY_JOB"))}
        self.env = {**base, **(FAST_HEALTH_CHECK if health_check is None else health_check), **(env or {}),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, MARKER: self.id,
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_enable_metrics_collection": "0",
                    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        if not self.dashboard:
            raise ClusterError("this cluster was started without a dashboard")
        return f"http://{HEAD_IP}:{self.dashboard_port}"

    def driver_env(self, **extra: str) -> dict[str, str]:
        """The environment for a driver process of this cluster (RAY_ADDRESS and the auth token)."""
        return {**self.env, "RAY_ADDRESS": self.address, **extra}

    # -- life cycle --------------------------------------------------------------------------------
    def _start_node(self, node: Node, args: list[str], timeout_s: float) -> None:
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        cmd = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", node.ip,
               "--num-cpus", str(node.num_cpus), "--resources", json.dumps(node.resources),
               "--temp-dir", str(node.temp_dir), "--object-store-memory", str(self.object_store_bytes),
               "--dashboard-agent-listen-port", str(free_port(node.ip)), *args]
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True, cwd=self.root)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not node.running():
                raise ClusterError(f"`ray start` for the {node.name} exited ({node.proc.returncode}):\n"
                                   f"{node.log_tail()}")
            if "Ray runtime started" in node.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise ClusterError(f"the {node.name} did not start within {timeout_s:.0f} s:\n{node.log_tail()}")

    def start(self, timeout_s: float = 90.0) -> LocalCluster:
        t0 = time.monotonic()
        head_args = ["--head", "--port", str(self.gcs_port), "--ray-client-server-port", str(free_port(HEAD_IP))]
        # without the dashboard UI Ray still starts its dashboard process (minimal), on 8265 by default
        head_args += ["--include-dashboard", "true" if self.dashboard else "false", "--dashboard-host", HEAD_IP,
                      "--dashboard-port", str(self.dashboard_port)]
        try:
            self._start_node(self.head, head_args, timeout_s)
            self._start_node(self.worker, ["--address", self.address], timeout_s)
            nodes = self.nodes(want_alive=2, timeout_s=max(5.0, timeout_s - (time.monotonic() - t0)))
            for node in (self.head, self.worker):
                match = [n for n in nodes if n["ip"] == node.ip and n["alive"]]
                if not match:
                    raise ClusterError(f"the {node.name} ({node.ip}) is not alive in the cluster: {nodes}\n"
                                       f"{node.log_tail()}")
                node.node_id = match[0]["node_id"]
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - t0
        return self

    def nodes(self, want_alive: int = 0, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The cluster's nodes as Ray sees them (asked from a separate driver process), waiting
        until at least `want_alive` are alive or `timeout_s` passes."""
        out = subprocess.run([sys.executable, "-c", _NODES_SNIPPET, str(want_alive), str(timeout_s)],
                             env=self.driver_env(), capture_output=True, text=True, timeout=timeout_s + 60)
        for line in out.stdout.splitlines():
            if line.startswith("NODES "):
                return json.loads(line[6:])
        raise ClusterError(f"could not list the nodes (rc {out.returncode}):\n{out.stdout[-2000:]}\n"
                           f"{out.stderr[-3000:]}")

    def kill(self, node: Node) -> None:
        """SIGKILL the node's process group: its raylet (and, for the head, the GCS) die at once."""
        if node.running():
            os.killpg(node.pgid, signal.SIGKILL)
            node.proc.wait(10)

    def marked_pids(self) -> list[int]:
        """Live processes that belong to this cluster (they carry its marker)."""
        needle = f"{MARKER}={self.id}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def stop(self, grace_s: float = 1.0, timeout_s: float = 10.0) -> None:
        """SIGTERM each node's group (worker first), SIGKILL the groups after `grace_s`, then end any
        process of this cluster still alive after `timeout_s` (worker processes live in groups of
        their own and normally exit with their raylet) by PID. The logs are copied to the root
        given to the constructor, if any, and the temp dir removed."""
        for node in (self.worker, self.head):
            if node.running():
                try:
                    os.killpg(node.pgid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        for node in (self.worker, self.head):
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(node.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            node.proc.wait()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.marked_pids():
            time.sleep(0.1)
        for pid in self.marked_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for node in (self.head, self.worker):
                if node.log_path.exists():
                    shutil.copy(node.log_path, self.keep_logs / node.log_path.name)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextmanager
def two_node_cluster(root: Path | None = None, **options: Any) -> Iterator[LocalCluster]:
    """A started LocalCluster (head tagged {"llm": 1}, worker {"tools": 1} unless given), stopped after."""
    options.setdefault("head_resources", {"llm": 1})
    options.setdefault("worker_resources", {"tools": 1})
    cluster = LocalCluster(root, **options).start()
    try:
        yield cluster
    finally:
        cluster.stop()
