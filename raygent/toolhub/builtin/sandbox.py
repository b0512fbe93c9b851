"""Launcher that confines a process (the code interpreter's Jupyter kernel) before exec'ing it.

    python -m raygent.toolhub.builtin.sandbox CONFIG.json -- python -m ipykernel_launcher -f CONN.json

What it can do depends on the privileges it starts with; it writes what actually holds to
`<workspace>/.k/sandbox.json` so the tool can report it:

* as root (Linux): new mount, network, UTS and PID namespaces. The kernel gets a root of its own
  (pivot_root into a tmpfs; the host's tree is detached) holding only what it needs: the Python
  installation it runs and the site-packages it imports, the system programs and libraries (/usr/bin,
  /usr/lib, ...), fonts and time zones, all read-only; a few /etc files written for it (passwd, group,
  hosts, ld.so.cache, ...); /dev/null, zero, full, random, urandom, a private /dev/pts; a fresh /proc
  of its PID namespace; size-limited tmpfs /tmp and /dev/shm; and its workspace, writable. The rest of
  the host (the rest of /etc and /var, /home, /opt, other projects, the raygent checkout around the
  venv) does not exist for it; folders on the way to what it sees (/root on the way to a pyenv) can
  be passed through, not listed. No network interface is up (no connection can be made, not even to
  127.0.0.1; the kernel talks to the client over Unix sockets in the workspace). The PID namespace's
  init (PID 1, this module) reaps every exited process and takes the namespace down with it; then it
  drops to an unprivileged uid (dedicated per session) with no capabilities and `no_new_privs`. The
  launcher itself stays outside, waits, and exits with the kernel's status.
* as any user: resource limits (address space, CPU seconds, processes per uid, file size, open files)
  and a scrubbed environment (no API keys). Without root there is no filesystem or network isolation:
  the kernel can read and write what the calling user can and open network connections. This fallback
  is reported as such (`isolation` in sandbox.json) rather than pretended away.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUTS = 0x04000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
_FLAG_NAMES = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}

# what of the host a kernel sees besides its Python installation (read-only, where it exists): programs
# and shared libraries (top-level ones are symlinks into /usr on merged-/usr systems), time zones,
# fonts for plots (matplotlib asks fontconfig: /etc/fonts) and /etc/alternatives (Debian's tool links)
SYSTEM_PATHS = ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec",
                "/usr/share/zoneinfo", "/usr/share/fonts", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                "/etc/fonts", "/var/cache/fontconfig", "/etc/alternatives")
DEVICES = ("null", "zero", "full", "random", "urandom")
NEW_ROOT = "/tmp"  # mount point of the new root's tmpfs: private to the namespace, sources are held open

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mounts_below(point: str) -> list[tuple[str, int]]:
    """(mount point, per-mount flags to preserve) of the topmost mount at `point` and of every mount
    under it, parents first, from /proc/self/mountinfo: followed by parent id, so that mounts hidden
    beneath it that merely share its path prefix are left out."""
    rows = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        flags = 0
        for opt in fields[5].split(","):
            flags |= _FLAG_NAMES.get(opt, 0)
        rows[int(fields[0])] = (int(fields[1]), fields[4].encode().decode("unicode_escape"), flags)
    at_point = {mid for mid, (_, path, _) in rows.items() if path == point}
    # a mount stacked on another at the same point has that one as its parent
    level = [mid for mid in at_point if not any(rows[o][0] == mid for o in at_point)]
    out = []
    while level:
        out += [rows[mid][1:] for mid in level]
        level = [mid for mid, (parent, _, _) in rows.items() if parent in level and mid not in level]
    return out


def _exposed(keep: list[Path]) -> tuple[list[str], dict[str, str]]:
    """What to bind read-only (real paths, none under another) and the symlinks that lead to them."""
    real: set[str] = set()
    links: dict[str, str] = {}
    for p in [*SYSTEM_PATHS, *map(str, keep)]:
        p = os.path.abspath(p)
        if not os.path.exists(p):
            continue
        target = os.path.realpath(p)
        real.add(target)
        if target != p:  # e.g. /lib -> usr/lib, a venv's path through a symlinked folder
            links[p] = target
    tops = sorted(p for p in real if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in real))
    return tops, links


def build_root(workspace: Path, keep: list[Path], tmpfs_mb: int, uid: int | None, gid: int | None,
               status: dict[str, Any]) -> str:
    """Root only, inside a fresh private mount namespace: assemble the kernel's root at NEW_ROOT (see
    the module docstring) without entering it; `enter_root` does that once /proc is mounted."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    tops, links = _exposed(keep)
    # hold every source open first: NEW_ROOT's tmpfs would hide those below it (e.g. a venv under /tmp)
    held = {p: os.open(p, os.O_PATH) for p in tops}
    devices = {f"/dev/{d}": os.open(f"/dev/{d}", os.O_PATH) for d in DEVICES if os.path.exists(f"/dev/{d}")}
    ws_fd = os.open(workspace, os.O_PATH)
    etc = _etc_files(workspace, uid, gid)
    root = NEW_ROOT
    umask = os.umask(0o022)
    try:
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for d in ("dev", "etc", "proc", "tmp", "dev/shm", "dev/pts"):
            os.mkdir(f"{root}/{d}", 0o755)
        mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmpfs_mb}m")
        mount("tmpfs", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmpfs_mb}m")
        # a pty instance of its own: none of the host's terminals
        mount("devpts", f"{root}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
        for name, target in {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                             "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}.items():
            os.symlink(target, f"{root}/dev/{name}")
        for name, data in etc.items():
            Path(f"{root}/etc/{name}").write_bytes(data)
        for path, fd in sorted({**held, **devices, str(workspace): ws_fd}.items(), key=lambda kv: kv[0].count("/")):
            target = f"{root}{path}"
            is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
            _mkdirs(target if is_dir else os.path.dirname(target))
            if not is_dir:
                open(target, "a").close()
            mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | (0 if fd == ws_fd else MS_REC))
            os.close(fd)
        # a bind mount copies the source mount's flags: the workspace's may be read-only
        mount(None, f"{root}{workspace}", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
        for path, target in links.items():
            if not os.path.lexists(f"{root}{path}") and not any(path.startswith(t + "/") for t in tops):
                _mkdirs(os.path.dirname(f"{root}{path}"))
                os.symlink(target, f"{root}{path}")
    finally:
        os.umask(umask)
    writable = {f"{root}/tmp", f"{root}/dev/shm", f"{root}/dev/pts", f"{root}{workspace}"}
    failed = []
    for point, flags in mounts_below(root):
        if point in writable:
            continue
        # devices stay usable (writing to /dev/null is I/O, not a change to the filesystem)
        extra = MS_NOEXEC if point.startswith(f"{root}/dev/") else MS_NODEV
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | extra | flags)
        except OSError:
            failed.append(point[len(root):] or "/")
    if failed:
        raise OSError(f"could not make read-only: {', '.join(failed)}")
    status["visible"] = {"read-only": [*tops, *sorted(links), *sorted(f"/etc/{n}" for n in etc)],
                         "devices": sorted(devices), "writable": [str(workspace), "/tmp", "/dev/shm"]}
    return root


def _mkdirs(path: str) -> None:
    """Create the missing folders of `path` mode 0711: a folder that only leads to something exposed
    (/work on the way to a venv, /root on the way to a pyenv) can be passed through, not listed."""
    if not os.path.isdir(path):
        _mkdirs(os.path.dirname(path))
        os.mkdir(path, 0o711)


def _etc_files(workspace: Path, uid: int | None, gid: int | None) -> dict[str, bytes]:
    """The /etc a kernel gets: its own user and host names, the linker's cache and the time zone."""
    me = uid if uid is not None else os.getuid()
    group = gid if gid is not None else os.getgid()
    files = {
        "passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{me}:{group}:sandbox:{workspace}:/bin/sh\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n").encode(),
        "group": f"root:x:0:\nsandbox:x:{group}:\nnogroup:x:65534:\n".encode(),
        "hostname": b"sandbox\n",
        "hosts": b"127.0.0.1\tlocalhost sandbox\n::1\tlocalhost\n",
        "nsswitch.conf": b"passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
    }
    for name in ("ld.so.cache", "localtime"):
        try:
            files[name] = Path(f"/etc/{name}").read_bytes()
        except OSError:
            pass
    return files


def enter_root(root: str, *, proc: bool) -> None:
    """pivot_root into `root` and detach the host's tree. With `proc`, first mount a /proc of the
    caller's PID namespace there, while the host's is still visible (inside a user namespace the
    kernel refuses a new proc mount otherwise)."""
    if proc:
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(38, f"pivot_root: no syscall number known for {platform.machine()}")
    os.chdir(root)
    _check(_libc.syscall(ctypes.c_long(number), b".", b"."), "pivot_root")  # the old root now lies on top
    _check(_libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")


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
    new_root = None
    conn = next((command[i + 1] for i, a in enumerate(command[:-1]) if a == "-f"), None)
    if uid is not None and os.geteuid() == 0:
        for path in [state_dir] + ([Path(conn)] if conn else []):
            os.chown(path, uid, gid)
    state_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)  # reachable whichever root is current
    if isolate:
        try:
            unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS)
            _check(_libc.sethostname(b"sandbox", 7), "sethostname")
        except OSError as exc:  # e.g. root in a container without CAP_SYS_ADMIN: limits only, reported
            report.append(f"namespace isolation failed: {exc}")
            status["isolation"].update(network="none", filesystem="none")
        else:
            status["isolation"]["network"] = "new network namespace (no interfaces up)"
            try:
                new_root = build_root(workspace, [Path(p) for p in config.get("keep_paths", [])],
                                      int(config.get("tmpfs_mb", 64)), uid, gid, status)
            except OSError as exc:  # half-built: never run the kernel with the host's files in view
                _fail(state_fd, exc)
            status["isolation"]["filesystem"] = ("own root: only the Python runtime and system libraries "
                                                 "(read-only), the workspace, private /tmp and /dev/shm")
    else:
        status["isolation"] = {"network": "none (needs root)", "filesystem": "none (needs root)"}
    if new_root is not None:
        try:
            unshare(CLONE_NEWPID)
        except OSError as exc:
            report.append(f"no PID namespace: {exc}; no /proc")
            enter_root(new_root, proc=False)
        else:
            status["isolation"]["processes"] = ("own PID namespace: an init reaps every exited process, and all "
                                                "of them die with the kernel")
            child = os.fork()
            if child == 0:  # PID 1 of the new namespace
                _init(config, command, workspace, state_dir, status, report, uid, gid, new_root, state_fd)
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
          report: list[str], uid: int | None, gid: int | None, new_root: str, state_fd: int) -> None:
    """PID 1 of the sandbox: mounts its own /proc, enters the sandbox's root, confines itself, starts
    the kernel as PID 2 and reaps every process until the kernel exits, then exits with the kernel's
    status (128 + signal when it was killed); the OS then kills whatever is left in the namespace."""
    try:
        _check(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        enter_root(new_root, proc=True)  # a /proc of this namespace's processes only
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
        _fail(state_fd, exc)


def _fail(state_fd: int, exc: BaseException) -> None:
    """Record why the sandbox could not be set up (init-error.txt, for the tool's error) and exit."""
    try:
        fd = os.open("init-error.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=state_fd)
        os.write(fd, repr(exc).encode())
    finally:
        os._exit(70)


if __name__ == "__main__":
    main(sys.argv[1:])
