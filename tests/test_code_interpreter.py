"""Code interpreter: a stateful Jupyter kernel per session, and the escapes its sandbox must stop.

Escape results (root on Linux, as in CI): writing outside the workspace, reading or listing host
files (planted beside the checkout, in /var/tmp, /opt; /etc), a network connection to 127.0.0.1, a
memory bomb, a fork bomb, an infinite loop, a CPU burner, regaining root, seeing host processes: all
blocked.
Without root only the resource limits hold (documented in docs/toolhub.md); those tests are skipped.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import pytest_asyncio

from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.builtin.code_interpreter import CodeInterpreterTool, SandboxLimits, session_uid
from raygent.toolhub.hub import ToolHub

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox is Linux-only")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and uid switching need root")

LIMITS = SandboxLimits(wall_s=4, cpu_s=1.5, memory_mb=1500, max_processes=40)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def interpreter(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    tool = CodeInterpreterTool(workspace_root=root, limits=LIMITS, store=store)
    yield ToolHub("code", [tool]), tool
    await tool.aclose()


async def run(hub: ToolHub, code: str, session: str = "t") -> dict:
    result = await hub.call("code_interpreter", {"code": code}, {"session_id": session})
    assert result.ok, result.error
    out = {"stdout": "", "stderr": "", "error": "", **result.output, "_artifacts": result.artifacts}
    print(code[:60], "->", result.output)  # shown when a test fails
    return out


async def test_state_persists_and_figures_come_back_as_images(interpreter):
    hub, tool = interpreter
    assert (await run(hub, "x = 20\nprint('set')"))["stdout"] == "set\n"
    assert (await run(hub, "x * 2 + 2"))["result"] == "42"
    out = await run(hub, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()")
    art = out["_artifacts"][0]
    assert art.kind == "image" and art.mime_type == "image/png" and art.metadata["width"] > 100
    assert out["images"] == [art.uri]
    err = await run(hub, "1 / 0")
    assert "ZeroDivisionError" in err["error"] and "\x1b[" not in err["error"]
    await run(hub, "open('notes.txt', 'w').write('kept')")
    assert (tool.workspace_for("t") / "notes.txt").read_text() == "kept"  # files land in the workspace


@as_root
async def test_escapes_are_blocked(interpreter, tmp_path):
    hub, tool = interpreter
    report = await tool.sandbox_report("t")
    assert report["isolation"]["user"].startswith(f"uid {session_uid('t')} (unprivileged")
    assert report["isolation"]["network"].startswith("new network namespace")

    # 1. files outside the workspace: the checkout, /etc, root's home, /var/tmp are read-only
    targets = [Path(__file__).resolve().parent / "escape.txt", Path("/etc/escape.txt"), Path.home() / "escape.txt",
               Path("/var/tmp/raygent-escape.txt")]
    code = ("import errno\nfor p in %r:\n    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n"
            "    except OSError as e:\n        print('blocked', errno.errorcode[e.errno])\n"
            "open('/tmp/private.txt', 'w').write('x'); print('tmp ok')") % [str(t) for t in targets]
    out = (await run(hub, code))["stdout"].splitlines()
    # the checkout and /var/tmp are not in the sandbox's root at all; its /etc is read-only, and so is
    # /root where it leads to the Python install (pyenv), else it is absent too
    assert out[0] == "blocked ENOENT" and out[1] == "blocked EROFS" and out[3] == "blocked ENOENT"
    assert out[2] in ("blocked EROFS", "blocked ENOENT") and out[4] == "tmp ok"
    assert not targets[0].exists()
    assert not any(t.exists() for t in targets) and not Path("/tmp/private.txt").exists()  # /tmp is private

    # 2. no way back to root, no remount
    out = await run(hub, "import os, subprocess\ntry:\n    os.setuid(0)\nexcept PermissionError as e:\n"
                         "    print('setuid', e.errno)\n"
                         "print(subprocess.run(['mount', '-o', 'remount,rw', '/'], capture_output=True).returncode)")
    assert out["stdout"].split() == ["setuid", "1", "32"]  # EPERM; mount(8) exits 32 (mount failure)

    # 2b. host processes are out of sight: the kernel is PID 2 under its own init
    out = await run(hub, "import os\nprint(os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:2])")
    assert out["stdout"].strip() == "2 [1, 2]"

    # 3. network: a server the test listens on at 127.0.0.1 cannot be reached
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    port = server.getsockname()[1]
    out = await run(hub, f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                         f"    print('CONNECTED')\nexcept OSError as e:\n    print('blocked', e.errno)")
    assert out["stdout"].strip() == "blocked 101" and not accepted  # ENETUNREACH
    server.close()

    # 4. memory bomb: the address-space limit turns it into a MemoryError, the kernel lives
    out = await run(hub, "keep = 7\ntry:\n    hog = bytearray(3 * 1024 ** 3)\nexcept MemoryError:\n    print('MemoryError')")
    assert out["stdout"] == "MemoryError\n"
    assert (await run(hub, "keep"))["result"] == "7"

    # 5. fork bomb: forks stop at the process limit, the leftovers are killed, the session goes on
    out = await run(hub, "import os\nwhile True:\n    os.fork()")
    assert "BlockingIOError" in out["error"] or "timed out" in out["error"]
    assert "[sandbox]" in out["stderr"]  # its children were killed and/or reaped (or the kernel restarted)
    after = await run(hub, "print('after fork bomb')")
    assert after["stdout"] == "after fork bomb\n"
    # nothing was left for this cell to clean up: the bomb's processes had exited and were reaped
    # before its call returned (zombies count against the process limit and once failed this cell)
    assert after["stderr"] == "" and not after["error"]
    for _ in range(100):  # processes SIGKILLed a moment ago may still be exiting
        if not tool._sessions["t"].strays():
            break
        await asyncio.sleep(0.05)
    assert tool._sessions["t"].strays() == []


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def planted():
    """A world-readable secret in host folders a cell must not see: beside the checkout (another
    project on the machine), in /var/tmp and in /opt."""
    secret = f"raygent-secret-{uuid.uuid4().hex}"
    name = f"raygent-plant-{uuid.uuid4().hex[:8]}"
    folders = [REPO.parent / name, Path("/var/tmp") / name] + ([Path("/opt") / name] if Path("/opt").is_dir() else [])
    for folder in folders:
        folder.mkdir(mode=0o755)
        os.chmod(folder, 0o755)
        (folder / "secret.txt").write_text(secret)
        os.chmod(folder / "secret.txt", 0o644)
    yield secret, [str(f) for f in folders]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


# one line per attempt: what a cell got when it read or listed a host path
_PROBE = """import errno, os
def probe(what, fn):
    try:
        got = fn()
        print(what, 'GOT', repr(got) if isinstance(got, list) else repr(got)[:80])
    except OSError as e:
        print(what, errno.errorcode[e.errno])
for folder in {folders!r}:
    probe('read', lambda: open(folder + '/secret.txt').read())
    probe('list', lambda: os.listdir(folder))
for folder in {hidden!r}:
    probe('list', lambda: os.listdir(folder))
for path in ['/etc/shadow', '/proc/1/environ', {this!r}]:
    probe('read', lambda: open(path).read())
"""


def _probe_code(folders: list[str]) -> str:
    hidden = ["/work", "/home", "/root", "/var/tmp", "/opt", str(REPO), str(REPO.parent), str(REPO / "raygent")]
    return _PROBE.format(folders=folders, hidden=hidden, this=__file__)


def _all_blocked(text: str, visible: list[str | Path]) -> None:
    """Every read and listing failed, except listings of a folder above what the cell is given (the
    Python runtime, its workspace), which show only the folders leading there: with the checkout
    under /tmp, the cell's own /tmp holds the empty mount points `fresh1/` and `pytest-of-root/`."""
    lines = text.splitlines()
    assert len(lines) > 10, text
    leading = {part for path in visible for part in Path(path).parts[1:]}
    for line in lines:
        if " GOT " not in line:
            assert line.split()[-1] in ("ENOENT", "EACCES"), text
            continue
        what, _, listed = line.split(" ", 2)
        assert what == "list", text  # nothing may be read
        names = ast.literal_eval(listed)
        assert set(names) <= leading and not any("raygent-plant" in n for n in names), text


@as_root
async def test_cell_sees_only_the_python_runtime_and_its_workspace(interpreter, planted):
    hub, tool = interpreter
    secret, folders = planted
    out = await run(hub, _probe_code(folders), session="seer")
    _all_blocked(out["stdout"], [sys.prefix, sys.base_prefix, tool.workspace_for("seer")])
    assert secret not in str(out)
    # what is there: the Python install, system libraries, a few /etc files of its own, the workspace
    out = await run(hub, "import os, socket, json\nprint(json.dumps({'/': os.listdir('/'), 'etc': os.listdir('/etc'), "
                         "'passwd': open('/etc/passwd').read(), "
                         "'hostname': [socket.gethostname(), open('/etc/hostname').read()]}))", session="seer")
    seen = json.loads(out["stdout"])
    runtime = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix, tool.workspace_for("seer"))}
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "tmp", "var"}
    assert set(seen["/"]) <= system | runtime and not {"home", "opt", "srv", "mnt", "media"} & set(seen["/"])
    assert set(seen["etc"]) <= {"passwd", "group", "hosts", "hostname", "nsswitch.conf", "ld.so.cache", "localtime",
                                "fonts", "alternatives"}
    assert [line.split(":")[0] for line in seen["passwd"].splitlines()] == ["root", "sandbox", "nobody"]
    assert seen["hostname"] == ["sandbox", "sandbox\n"]
    # and it is enough: stdlib, numpy, a plot, the workspace
    out = await run(hub, "import numpy as np, sqlite3, matplotlib.pyplot as plt\nplt.plot(np.arange(3))\nplt.show()\n"
                         "open('w.txt', 'w').write('ok')\nprint(np.arange(5).sum(), open('w.txt').read())",
                    session="seer")
    assert out["stdout"] == "10 ok\n" and out["images"] and not out["error"]
    report = await tool.sandbox_report("seer")
    assert report["isolation"]["filesystem"].startswith("own root")
    assert str(tool.workspace_for("seer")) in report["visible"]["writable"]


@as_root
def test_cli_cell_cannot_read_another_project(planted, tmp_path):
    """As a user would: `raygent tools call code_interpreter --args '{"code": ...}'`."""
    secret, folders = planted
    env = {**os.environ, "RAYGENT_WORKSPACES": str(tmp_path / "ws"), "RAYGENT_ARTIFACTS": str(tmp_path / "a")}
    args = json.dumps({"code": _probe_code(folders)})
    done = subprocess.run([sys.executable, "-m", "raygent.cli", "tools", "call", "code_interpreter", "--args", args],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert secret not in done.stdout + done.stderr
    _all_blocked(json.loads(done.stdout)["stdout"], [sys.prefix, sys.base_prefix, tmp_path / "ws"])


async def test_infinite_loop_is_interrupted_and_state_survives(interpreter):
    hub, _ = interpreter
    await run(hub, "y = 'still here'")
    out = await run(hub, "import time\nwhile True:\n    time.sleep(0.05)")
    assert out["error"] == "execution timed out after 4 s (wall clock) and was interrupted; variables are kept"
    assert (await run(hub, "y"))["result"] == "'still here'"


async def test_cpu_burner_and_crash_restart_the_kernel(interpreter):
    hub, tool = interpreter
    await run(hub, "z = 1", session="burn")
    out = await run(hub, "while True:\n    pass", session="burn")
    # the soft CPU limit (SIGXCPU) usually fires first; on a loaded machine the wall clock may
    assert "CPU time limit of 1.5 s" in out["error"] or "timed out after 4 s" in out["error"]
    crash = await run(hub, "import os\nos._exit(3)", session="burn")
    assert crash["error"].startswith("the kernel died (exited with status 3); it was restarted")
    after = await run(hub, "'z' in dir()", session="burn")
    assert after["result"] == "False"  # a fresh kernel
    assert tool._sessions["burn"].restarts >= 1


@as_root
async def test_sessions_are_separate_kernels_users_and_workspaces(interpreter):
    hub, tool = interpreter
    await run(hub, "secret = 'a'\nopen('a.txt', 'w').write('a')", session="alice")
    out = await run(hub, "import os\nprint('secret' in dir(), os.getuid())\ntry:\n"
                         f"    open({str(tool.workspace_for('alice') / 'a.txt')!r}).read()\n"
                         "except OSError as e:\n    print('blocked', e.errno)", session="bob")
    assert out["stdout"].split() == ["False", str(session_uid("bob")), "blocked", "2"]  # not even there: ENOENT


async def test_reset_forgets_variables(interpreter):
    hub, _ = interpreter
    await run(hub, "w = 5", session="r")
    out = await hub.call("code_interpreter", {"code": "'w' in dir()", "reset": True}, "r")
    assert out.output["result"] == "False"


async def test_fallback_without_isolation_reports_it_and_keeps_the_limits(tmp_path):
    tool = CodeInterpreterTool(workspace_root=tmp_path / "ws", limits=LIMITS, isolate=False,
                               store=ArtifactStore(tmp_path / "a"))
    try:
        report = await tool.sandbox_report("plain")
        assert report["isolation"]["network"].startswith("none") and report["isolation"]["filesystem"].startswith("none")
        assert report["limits"]["memory_mb"] == 1500
        hub = ToolHub("code", [tool])
        out = await run(hub, "try:\n    b = bytearray(3 * 1024 ** 3)\nexcept MemoryError:\n    print('MemoryError')",
                        session="plain")
        assert out["stdout"] == "MemoryError\n"
    finally:
        await tool.aclose()


@pytest.mark.ray
async def test_interpreter_in_a_hub_actor_keeps_state_per_session(ray_cluster, tmp_path):
    from raygent import runtime
    from raygent.toolhub.hub import deploy_hub

    hub = deploy_hub("code", [CodeInterpreterTool(workspace_root=tmp_path / "ws", limits=LIMITS,
                                                  store=ArtifactStore(tmp_path / "a"))], num_cpus=0)
    try:
        first = await hub.call("code_interpreter", {"code": "import os\nn = 41\nos.getpid()"}, "remote")
        second = await hub.call("code_interpreter", {"code": "n + 1"}, "remote")
        assert first.ok and second.ok, (first.error, second.error)
        assert second.output["result"] == "42"
    finally:
        await hub.close()
        runtime.kill(hub.proxy)
