"""A real redis-server (the system binary) on a free 127.0.0.1 port, for the Redis log's tests.

`RedisServer` starts it with its data (append-only file) in a temporary directory, waits until it
answers PING, and stops it. The `redis_server` fixture (session scope) yields its URL; import it
into a test module (`from _redis_server import redis_server`) or a conftest. Where redis-server is
not installed the fixture fails (never skips), naming the package to install.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

INSTALL_HINT = ("redis-server is not installed: apt-get install redis-server "
                "(or run scripts/install_system_deps.sh as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; `url` once started. `persist=False` keeps nothing on disk."""

    def __init__(self, *, persist: bool = True, binary: str | None = None):
        self.binary = binary or shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
        self.persist = persist
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> str:
        if self.binary is None:
            raise RuntimeError(INSTALL_HINT)
        self._dir = tempfile.TemporaryDirectory(prefix="raygent-redis-")
        for _ in range(3):  # a port taken between choosing and binding: try another
            self.port = _free_port()
            args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
                    "--save", "", "--daemonize", "no", "--loglevel", "warning",
                    "--logfile", str(Path(self._dir.name) / "redis.log")]
            args += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else ["--appendonly", "no"]
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _ping(self.port):
                    return self.url
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout:.0f} s")
        log = Path(self._dir.name) / "redis.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"redis-server did not start: {detail}")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server():
    """The URL of a redis-server started for this test session (fails if it is not installed)."""
    server = RedisServer()
    if server.binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server.start()
    yield server.url
    server.stop()
