"""Launcher that confines a process (the code interpreter's Jupyter kernel) before exec'ing it.

    python -m raygent.toolhub.builtin.sandbox CONFIG.json -- python -m ipykernel_launcher -f CONN.json

What it can do depends on the privileges it starts with; it writes what actually holds to
`<workspace>/.k/sandbox.json` so the tool can report it:

* as root (Linux): a new mount namespace in which every mount is re-mounted read-only, /tmp and
  /dev/shm are fresh size-limited tmpfs, directories the sandbox user could not traverse (e.g.
  /root, home of the Python install) are replaced by an empty tmpfs with only the needed subtrees
  bound back (which also hides the rest of them), and the workspace is bound writable; a new
  network namespace (no interface but a down loopback: no connection can be made, not even to
  127.0.0.1; the kernel talks to the client over Unix sockets in the workspace); a PID namespace
  whose init (PID 1, this module) reaps every exited process and takes the whole namespace down with
  it; then it drops to an unprivileged uid (dedicated per session) with no capabilities and
  `no_new_privs`. The launcher itself stays outside, waits, and exits with the kernel's status.
* as any user: resource limits (address space, CPU seconds, processes per uid, file size, open files)
  and a scrubbed environment (no API keys). Without root there is no filesystem or network isolation:
  the kernel can write what the calling user can write and open network connections. This fallback is
  reported as such (`isolation` in sandbox.json) rather than pretended away.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
_FLAG_NAMES = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount_points() -> list[tuple[str, int]]:
    """(mount point, per-mount flags to preserve) from /proc/self/mountinfo, parents first."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        flags = 0
        for opt in fields[5].split(","):
            flags |= _FLAG_NAMES.get(opt, 0)
        out.append((point, flags))
    return sorted(out, key=lambda p: p[0].count("/") if p[0] != "/" else 0)


def _traversable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o001)
    except OSError:
        return False


def expose(paths: list[Path], report: list[str]) -> None:
    """Make every path in `paths` reachable for an unprivileged uid: a directory on the way that
    others cannot traverse is covered by an empty tmpfs into which only the needed children are
    bound back (so the rest of it is hidden too)."""
    needed: dict[Path, set[str]] = {}
    for p in paths:
        p = p.resolve()
        for ancestor in [*reversed(p.parents)][1:] + [p]:
            parent = ancestor.parent
            if not _traversable_by_others(parent):
                needed.setdefault(parent, set()).add(ancestor.name)
    for parent in sorted(needed, key=lambda q: len(q.parts)):
        fds = {name: os.open(parent / name, os.O_PATH) for name in needed[parent] if (parent / name).exists()}
        mount("tmpfs", str(parent), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for name, fd in fds.items():
            target = parent / name
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                target.mkdir()
            else:
                target.touch()
            mount(f"/proc/self/fd/{fd}", str(target), None, MS_BIND | MS_REC)
            os.close(fd)
        report.append(f"{parent} hidden except {', '.join(sorted(fds))}")


def isolate_filesystem(workspace: Path, keep: list[Path], tmpfs_mb: int, report: list[str]) -> None:
    """Root only, inside a fresh mount namespace: read-only everything, private tmpfs, writable workspace."""
    ws_fd = os.open(workspace, os.O_PATH)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    expose([workspace, *keep], report)
    failed = []
    for point, flags in mount_points():
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            failed.append(point)
    if failed:
        report.append(f"could not make read-only: {', '.join(failed)}")
    # needed paths under the private tmpfs mounts (e.g. a checkout and its venv under /tmp) would
    # vanish behind them: hold them open now, bind them back (read-only, as their source) after
    private = ("/tmp", "/dev/shm")
    under = sorted({Path(os.path.realpath(p)) for p in keep
                    if any(Path(os.path.realpath(p)).is_relative_to(t) for t in private) and os.path.exists(p)})
    tops = [p for p in under if not any(p != q and p.is_relative_to(q) for q in under)]
    held = [(p, os.open(p, os.O_PATH)) for p in tops]
    for point in private:
        if os.path.isdir(point):
            mount("tmpfs", point, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmpfs_mb}m")
    for path, fd in held:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", str(path), None, MS_BIND | MS_REC)
        os.close(fd)
        report.append(f"{path} kept visible under the private {next(t for t in private if path.is_relative_to(t))}")
    os.makedirs(workspace, exist_ok=True)  # it may lie under the fresh /tmp
    mount(f"/proc/self/fd/{ws_fd}", str(workspace), None, MS_BIND)
    os.close(ws_fd)
    # a bind mount copies the source mount's flags (now read-only): make this one writable
    mount(None, str(workspace), None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)


def set_limits(limits: dict[str, Any]) -> dict[str, Any]:
    applied = {}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files in the workspace
    table = {"memory_mb": (resource.RLIMIT_AS, 1024 * 1024), "cpu_s": (resource.RLIMIT_CPU, 1),
             "max_processes": (resource.RLIMIT_NPROC, 1), "max_file_mb": (resource.RLIMIT_FSIZE, 1024 * 1024),
             "max_open_files": (resource.RLIMIT_NOFILE, 1)}
    for key, (res, unit) in table.items():
        value = limits.get(key)
        if value:
            n = int(value * unit)
            # CPU: the soft limit (SIGXCPU) is moved before every execution from inside the kernel, which
            # can only happen below the hard limit, the session's total CPU budget
            hard = int(limits.get("session_cpu_s") or n) if key == "cpu_s" else n
            resource.setrlimit(res, (min(n, hard), hard))
            applied[key] = value
    return applied


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: python -m raygent.toolhub.builtin.sandbox CONFIG.json -- COMMAND...")
    split = argv.index("--")
    config = json.loads(Path(argv[0]).read_text())
    command = argv[split + 1:]
    workspace = Path(config["workspace"])
    state_dir = workspace / ".k"
    report: list[str] = []
    status: dict[str, Any] = {"root": os.geteuid() == 0, "isolation": {}}
    isolate = config.get("isolate", True) and os.geteuid() == 0 and sys.platform == "linux"
    uid, gid = config.get("uid"), config.get("gid")
    if isolate:
        try:
            unshare(CLONE_NEWNS | CLONE_NEWNET)
            status["isolation"]["network"] = "new network namespace (no interfaces up)"
            isolate_filesystem(workspace, [Path(p) for p in config.get("keep_paths", [])],
                               int(config.get("tmpfs_mb", 64)), report)
            status["isolation"]["filesystem"] = "read-only mounts; writable workspace; private /tmp and /dev/shm"
        except OSError as exc:
            report.append(f"namespace isolation failed: {exc}")
            status["isolation"].setdefault("network", "none")
            status["isolation"].setdefault("filesystem", "none")
    else:
        status["isolation"] = {"network": "none (needs root)", "filesystem": "none (needs root)"}
    conn = next((command[i + 1] for i, a in enumerate(command[:-1]) if a == "-f"), None)
    if uid is not None and os.geteuid() == 0:
        for path in [state_dir] + ([Path(conn)] if conn else []):
            os.chown(path, uid, gid)
    if isolate and status["isolation"].get("filesystem", "none") != "none":
        try:
            unshare(CLONE_NEWPID)
        except OSError as exc:
            report.append(f"no PID namespace: {exc}")
        else:
            status["isolation"]["processes"] = ("own PID namespace: an init reaps every exited process, and all "
                                                "of them die with the kernel")
            child = os.fork()
            if child == 0:  # PID 1 of the new namespace
                _init(config, command, workspace, state_dir, status, report, uid, gid)
            _supervise(child)  # never returns
    _confine_and_record(config, workspace, state_dir, status, report, uid, gid)
    os.chdir(workspace)
    os.execve(command[0], command, config.get("env", {}))


def _confine_and_record(config: dict[str, Any], workspace: Path, state_dir: Path, status: dict[str, Any],
                        report: list[str], uid: int | None, gid: int | None) -> None:
    """Limits, then the unprivileged uid and no_new_privs; then write what holds to sandbox.json."""
    status["limits"] = set_limits(config.get("limits", {}))
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # real, effective and saved ids: no way back; capabilities are cleared
        status["isolation"]["user"] = f"uid {uid} (unprivileged, no capabilities)"
    else:
        status["isolation"]["user"] = f"uid {os.getuid()} (unchanged)"
    try:
        _check(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
        status["isolation"]["no_new_privs"] = True
    except (AttributeError, OSError):
        status["isolation"]["no_new_privs"] = False
    status["notes"] = report
    (state_dir / "sandbox.json").write_text(json.dumps(status))


def _supervise(child: int) -> None:
    """The launcher, outside the PID namespace: wait for its init and exit the same way, so the
    kernel manager sees the kernel's exit status or signal (e.g. SIGXCPU)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts reach the kernel through the process group
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    parent = os.getppid()
    while True:  # poll, so that the sandbox also dies when the process that started it is gone
        pid, code = os.waitpid(child, os.WNOHANG)
        if pid == child:
            break
        if os.getppid() != parent:
            os.kill(child, signal.SIGKILL)
        time.sleep(0.1)
    exit_code = os.waitstatus_to_exitcode(code)
    signum = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
    if signum in signal.valid_signals():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # re-raised for its status, not for a core file
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(exit_code)


def _init(config: dict[str, Any], command: list[str], workspace: Path, state_dir: Path, status: dict[str, Any],
          report: list[str], uid: int | None, gid: int | None) -> None:
    """PID 1 of the sandbox: mounts its own /proc, confines itself, starts the kernel as PID 2 and
    reaps every process until the kernel exits, then exits with the kernel's status (128 + signal
    when it was killed); the OS then kills whatever is left in the namespace."""
    try:
        _check(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # only this namespace's processes
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _confine_and_record(config, workspace, state_dir, status, report, uid, gid)
        kernel = os.fork()
        if kernel == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.chdir(workspace)
            # its parent is this init (PID 1), which a Jupyter kernel takes for "parent gone": the
            # launcher watches the real parent instead
            env = {k: v for k, v in config.get("env", {}).items() if k != "JPY_PARENT_PID"}
            os.execve(command[0], command, env)
        while True:
            try:
                pid, code = os.wait()
            except ChildProcessError:
                os._exit(0)
            except InterruptedError:
                continue
            if pid == kernel:
                exit_code = os.waitstatus_to_exitcode(code)
                os._exit(exit_code if exit_code >= 0 else 128 - exit_code)
    except BaseException as exc:  # never fall back into the launcher's code path
        try:
            (state_dir / "init-error.txt").write_text(repr(exc))
        finally:
            os._exit(70)


if __name__ == "__main__":
    main(sys.argv[1:])
