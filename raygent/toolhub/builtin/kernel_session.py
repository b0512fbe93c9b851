"""One session's Jupyter kernel behind the sandbox launcher: start, execute under wall-clock and CPU
limits, interrupt, clean up stray processes, restart, shut down. Used by the code interpreter tool.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_UID_BASE, _UID_SPAN = 2_000_000, 1_000_000


class SandboxLimits(BaseModel):
    """Per-execution wall and CPU time; per-process memory; processes per sandbox uid; file size.

    `cpu_s` is a soft limit re-armed before each execution; `session_cpu_s` is the hard limit over
    the kernel's life (code that raises its own soft limit still stops there, and at `wall_s`).
    """

    wall_s: float = 30.0
    cpu_s: float = 30.0
    session_cpu_s: float = 3600.0
    memory_mb: int = 2048
    max_processes: int = 64
    max_file_mb: int = 256
    max_open_files: int = 256
    tmpfs_mb: int = 64


def default_workspace_root() -> Path:
    """$RAYGENT_WORKSPACES, else <tmp>/raygent-ws (short: kernel Unix socket paths must stay < 108 bytes)."""
    explicit = os.environ.get("RAYGENT_WORKSPACES")
    return Path(explicit).expanduser() if explicit else Path(tempfile.gettempdir()) / "raygent-ws"


def session_uid(session_id: str) -> int:
    """A dedicated uid per session: its processes and files are its own (limits, kill, permissions)."""
    digest = int(hashlib.sha256(session_id.encode()).hexdigest()[:12], 16)
    return _UID_BASE + digest % _UID_SPAN


def _proc_state(pid: int | str) -> str | None:
    """The state letter in /proc/PID/stat (R, S, T, Z, X, ...); None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _pids_of_uid(uid: int, *, zombies: bool = True) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
            except OSError:
                continue
            if not zombies and _proc_state(entry.name) in ("Z", None):
                continue
            pids.append(int(entry.name))
    return pids


def _wait_exited(pids: set[int], *, timeout: float) -> None:
    """Wait until every pid has exited (gone, or a zombie waiting for its parent)."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _proc_state(p) not in (None, "Z", "X")}
        if alive:
            time.sleep(0.01)


def _ns_pid(pid: int) -> int | None:
    """The process's pid inside its own (innermost) PID namespace, from /proc/PID/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


# run in the kernel after its strays are killed: dead children stay zombies (and count against the
# process limit) until their parent, the kernel, waits for them
_REAP = ("import os as _o\nwhile True:\n    try:\n        if _o.waitpid(-1, _o.WNOHANG)[0] == 0: break\n"
         "    except ChildProcessError:\n        break\ndel _o")


class KernelCrashed(RuntimeError):
    pass


class KernelSession:
    """One session's kernel: start, execute with limits, interrupt, restart, shut down."""

    def __init__(self, session_id: str, workspace: Path, limits: SandboxLimits, isolate: bool):
        self.session_id = session_id
        self.workspace = workspace
        self.limits = limits
        self.isolate = isolate and os.geteuid() == 0 and sys.platform == "linux"
        self.uid = session_uid(session_id) if self.isolate else None
        self.km: Any = None
        self.kc: Any = None
        self.lock = asyncio.Lock()
        self.restarts = 0

    @property
    def state_dir(self) -> Path:
        return self.workspace / ".k"

    @property
    def pid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        return getattr(provisioner, "pid", None) if provisioner is not None else None

    def sandbox_status(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "sandbox.json").read_text())
        except (OSError, ValueError):
            return {}

    def _prepare_workspace(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        for sub in ("mpl", "ipython", "tmp"):
            (self.state_dir / sub).mkdir(exist_ok=True)
        for stale in ("sandbox.json", "init-error.txt"):  # what a previous kernel recorded
            (self.state_dir / stale).unlink(missing_ok=True)
        if self.uid is not None:
            for root, dirs, files in os.walk(self.workspace):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(root, name), self.uid, self.uid)
            os.chown(self.workspace, self.uid, self.uid)
            os.chmod(self.workspace, 0o700)

    def _kernel_env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.workspace), "LANG": "C.UTF-8",
            "USER": "sandbox", "LOGNAME": "sandbox",
            "TMPDIR": "/tmp" if self.isolate else str(self.state_dir / "tmp"),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline", "MPLCONFIGDIR": str(self.state_dir / "mpl"),
            "IPYTHONDIR": str(self.state_dir / "ipython"), "JUPYTER_RUNTIME_DIR": str(self.state_dir),
            "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }
        if "VIRTUAL_ENV" in os.environ:
            env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
        env["JPY_PARENT_PID"] = str(os.getpid())  # the kernel exits when this process goes away
        return env

    def _launcher_config(self) -> Path:
        import site

        keep = {sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parent),
                *site.getsitepackages()}
        limits = self.limits.model_dump()
        limits["cpu_s"] = self.limits.cpu_s + 60  # headroom for start-up; re-armed before every execution
        config = {"workspace": str(self.workspace), "isolate": self.isolate, "uid": self.uid, "gid": self.uid,
                  "limits": limits, "tmpfs_mb": self.limits.tmpfs_mb, "keep_paths": sorted(keep),
                  "env": self._kernel_env()}
        path = self.state_dir / "launcher.json"
        path.write_text(json.dumps(config))
        os.chmod(path, 0o600)
        return path

    async def start(self) -> None:
        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

        self._prepare_workspace()
        if len(str(self.state_dir / "s-00")) > 100:
            raise ValueError(f"workspace path {self.workspace} is too long for the kernel's Unix sockets; "
                             f"set RAYGENT_WORKSPACES to a short folder")
        argv = [sys.executable, "-m", "raygent.toolhub.builtin.sandbox", str(self._launcher_config()), "--",
                sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = KernelSpec(argv=argv, display_name="raygent sandbox", language="python", interrupt_mode="signal")

        class _Specs(KernelSpecManager):
            def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
                return spec

        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[3])  # the launcher must import this checkout of raygent
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.km = AsyncKernelManager(kernel_name="raygent-sandbox", kernel_spec_manager=_Specs(), transport="ipc",
                                     ip=str(self.state_dir / "s"), connection_file=str(self.state_dir / "conn.json"))
        log = open(self.state_dir / "kernel.log", "ab")  # the kernel's own stdout/stderr, for debugging
        try:
            await self.km.start_kernel(env=env, stdout=log, stderr=log)
        finally:
            log.close()  # the child keeps its copy
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=60)
        except RuntimeError as exc:
            status = self.sandbox_status()
            try:  # the sandbox's init failed before it could record its status (e.g. pivot_root refused)
                status = status or {"init_error": (self.state_dir / "init-error.txt").read_text()}
            except OSError:
                pass
            await self.shutdown()
            raise RuntimeError(f"the code interpreter kernel did not start: {exc}; sandbox: {status}") from exc

    async def is_alive(self) -> bool:
        return self.km is not None and await self.km.is_alive()

    def strays(self) -> list[int]:
        """Processes of the session's uid other than the kernel (children a cell left running)."""
        if self.uid is None:
            return []
        # in the sandbox's PID namespace the init is 1 and the kernel 2; without one the kernel is ours
        keep = {self.pid}
        pids = _pids_of_uid(self.uid, zombies=False)
        nested = {p: _ns_pid(p) for p in pids}
        if any(n not in (None, p) for p, n in nested.items()):
            keep |= {p for p, n in nested.items() if n in (1, 2)}
        return [p for p in pids if p not in keep]

    def zombies(self) -> bool:
        """Whether exited children wait to be reaped (they count against the process limit)."""
        if self.uid is None:
            return False
        return len(_pids_of_uid(self.uid)) > len(_pids_of_uid(self.uid, zombies=False))

    def kill_strays(self) -> int:
        """SIGKILL the processes a cell left behind, keeping the kernel. They are frozen (SIGSTOP)
        first, round after round, so a fork bomb cannot replace its children faster than we kill."""
        stopped: set[int] = set()
        quiet = 0
        for _ in range(200):
            fresh = [p for p in self.strays() if p not in stopped]
            if not fresh:
                quiet += 1
                if quiet == 3:  # three empty scans in a row, 20 ms apart: a fork in flight has surfaced
                    break
                time.sleep(0.02)
                continue
            quiet = 0
            for p in fresh:
                try:
                    os.kill(p, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
                stopped.add(p)
        for p in stopped:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # a SIGKILLed process counts against the process limit until it has exited and been reaped;
        # reaping before it has exited leaves a zombie that fails the next cell's thread or fork
        _wait_exited(stopped, timeout=2.0)
        return len(stopped)

    async def reap(self) -> None:
        """Reap the killed children, and check the kernel still delivers output: a fork bomb can
        leave it unable to start the threads that publish output (then RuntimeError: restart it)."""
        token = f"raygent-alive-{time.monotonic_ns()}"
        seen: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["header"]["msg_type"] == "stream":
                seen.append(msg["content"].get("text", ""))

        await self.kc.execute_interactive(_REAP + f"\nprint({token!r})", store_history=False, timeout=5,
                                          output_hook=hook)
        if token not in "".join(seen):
            raise RuntimeError("the kernel no longer publishes output")
        for _ in range(50):  # orphans are reaped by the sandbox's init, a moment later
            if not self.zombies():
                break
            await asyncio.sleep(0.01)

    def kill_all(self) -> int:
        """SIGKILL every process of the session's uid, the kernel included, fork bombs too.

        A helper forked from this (root) process takes the sandbox uid and calls kill(-1, SIGKILL),
        which the OS applies to all processes of that uid at once, so none can fork away in between.
        """
        if self.uid is None:
            return 0
        before = len(_pids_of_uid(self.uid))
        # strays first, while the sandbox's init is alive to reap them (a torn-down namespace's
        # processes go to the host's PID 1, which may be slow to reap: zombies count against the limit)
        self.kill_strays()
        deadline = time.monotonic() + 0.5
        while self.zombies() and time.monotonic() < deadline:
            time.sleep(0.02)
        for p in _pids_of_uid(self.uid):  # the sandbox's init: the OS kills its whole namespace with it
            if _ns_pid(p) == 1 and p != 1:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.02)
        for _ in range(20):
            if not _pids_of_uid(self.uid):
                break
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the helper child
                try:
                    os.setgid(self.uid)
                    os.setuid(self.uid)
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
            time.sleep(0.02)
        return before

    async def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            try:
                await self.km.shutdown_kernel(now=True)
            except Exception:  # already dead
                pass
        self.kill_all()
        self.km = self.kc = None

    async def restart(self) -> None:
        await self.shutdown()
        self.restarts += 1
        await self.start()

    async def _arm_cpu_limit(self) -> None:
        """Soft RLIMIT_CPU = CPU used so far + cpu_s, set from inside the kernel (raising another
        process's limit from outside needs CAP_SYS_RESOURCE, which containers often drop)."""
        snippet = ("import os as _o, resource as _r\n"
                   "_h = _r.getrlimit(_r.RLIMIT_CPU)[1]\n"
                   f"_s = int(sum(_o.times()[:2]) + {self.limits.cpu_s:g}) + 1\n"
                   "_r.setrlimit(_r.RLIMIT_CPU, (_s if _h == _r.RLIM_INFINITY else min(_s, _h), _h))\n"
                   "del _o, _r, _h, _s")
        await self.kc.execute_interactive(snippet, silent=True, store_history=False, timeout=10)

    async def execute(self, code: str, on_output: Any) -> dict[str, Any]:
        """Run `code`; returns the execute_reply content. Raises TimeoutError or KernelCrashed."""
        await self._arm_cpu_limit()
        run = asyncio.ensure_future(self.kc.execute_interactive(code, timeout=None, output_hook=on_output,
                                                                allow_stdin=False, stop_on_error=True))

        async def watch() -> None:
            while await self.km.is_alive():
                await asyncio.sleep(0.1)

        watcher = asyncio.ensure_future(watch())
        done, _ = await asyncio.wait({run, watcher}, timeout=self.limits.wall_s, return_when=asyncio.FIRST_COMPLETED)
        if run in done:
            watcher.cancel()
            return run.result()["content"]
        if watcher in done:
            run.cancel()
            raise KernelCrashed(self._death_reason())
        watcher.cancel()
        await self.km.interrupt_kernel()  # SIGINT: KeyboardInterrupt in the cell
        try:
            await asyncio.wait_for(asyncio.shield(run), timeout=3)
        except (asyncio.TimeoutError, Exception):
            run.cancel()
            raise TimeoutError("interrupt ignored") from None
        raise TimeoutError("interrupted")

    def _death_reason(self) -> str:
        code = getattr(getattr(self.km.provisioner, "process", None), "returncode", None)
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            if sig in (signal.SIGXCPU, signal.SIGKILL) and self.limits.cpu_s:
                return f"killed by {sig.name} (CPU time limit of {self.limits.cpu_s:g} s per execution)"
            return f"killed by {sig.name}"
        return f"exited with status {code}" if code is not None else "died"
