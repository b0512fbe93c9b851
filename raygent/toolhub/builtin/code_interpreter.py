"""Code interpreter: a stateful, confined Jupyter (IPython) kernel per session, in a workspace folder.

Variables and imports persist across calls of the same session (ToolContext.session_id); files
persist in the session's workspace. Every execution has a wall-clock limit (the kernel is
interrupted, then restarted if it does not stop) and a CPU-seconds limit (the kernel is killed by
SIGXCPU and restarted); the kernel has memory, process, file-size limits, and where the process runs
as root, no network, a root of its own that holds only its Python runtime and system libraries
(read-only) and its workspace, nothing else of the host, and an unprivileged uid of its own (see
`sandbox.py`, which writes what actually holds to `<workspace>/.k/sandbox.json`).
Matplotlib figures come back as PNG artifacts. A crashed kernel is restarted on the next call.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from raygent.schema import Artifact, ToolExample
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.builtin.kernel_session import (  # noqa: F401  (re-exported)
    KernelCrashed,
    KernelSession,
    SandboxLimits,
    default_workspace_root,
    session_uid,
)
from raygent.toolhub.context import current_context

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CodeInterpreterTool(Tool):
    name = "code_interpreter"
    description = ("Run Python code in a stateful Jupyter kernel (variables persist between calls) in a private "
                   "workspace folder; prints, the last expression's value and matplotlib figures come back. No "
                   "network. 代码解释器。")
    parameters = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 1, "description": "Python code to run"},
            "reset": {"type": "boolean", "default": False,
                      "description": "restart the kernel first (forget all variables; files stay)"},
        },
        "required": ["code"],
    }
    domain = "code"
    idempotent = False  # code may have effects (files, state)
    examples = [ToolExample(query="用python计算1到100的和", arguments={"code": "sum(range(1, 101))"})]

    def __init__(self, workspace_root: str | os.PathLike[str] | None = None, limits: SandboxLimits | None = None, *,
                 isolate: bool = True, store: ArtifactStore | None = None, max_output_chars: int = 20000):
        self.workspace_root = Path(workspace_root) if workspace_root else None
        self.limits = limits or SandboxLimits()
        self.isolate = isolate
        self.store = store
        self.max_output_chars = max_output_chars
        self.timeout_s = self.limits.wall_s + 90  # the hub's timeout also covers a kernel (re)start
        self._sessions: dict[str, KernelSession] = {}

    def __getstate__(self) -> dict[str, Any]:  # kernels stay with the process that started them
        state = dict(self.__dict__)
        state["_sessions"] = {}
        return state

    def workspace_for(self, session_id: str) -> Path:
        root = self.workspace_root or default_workspace_root()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:24]
        return root / f"{safe}-{hashlib.sha256(session_id.encode()).hexdigest()[:8]}"

    async def session(self, session_id: str) -> KernelSession:
        s = self._sessions.get(session_id)
        if s is None:
            root = self.workspace_root or default_workspace_root()
            root.mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o711)  # sandbox uids may traverse into their own workspace, not list others
            s = KernelSession(session_id, self.workspace_for(session_id), self.limits, self.isolate)
            self._sessions[session_id] = s
        if not await s.is_alive():
            if s.km is not None:
                await s.restart()
            else:
                await s.start()
        return s

    async def call(self, code: str, reset: bool = False) -> ToolOutput:
        s = await self.session(current_context().session_id)
        async with s.lock:
            if reset:
                await s.restart()
            outputs: dict[str, Any] = {"stdout": [], "stderr": [], "result": None, "images": []}
            artifacts: list[Artifact] = []
            store = self.store or default_store()

            def on_output(msg: dict[str, Any]) -> None:
                kind, content = msg["header"]["msg_type"], msg["content"]
                if kind == "stream":
                    outputs[content["name"] if content["name"] in ("stdout", "stderr") else "stdout"].append(
                        content["text"])
                elif kind in ("execute_result", "display_data"):
                    data = content.get("data", {})
                    if "image/png" in data:
                        art = store.save_bytes(base64.b64decode(data["image/png"]), mime_type="image/png",
                                               metadata={"source": "code_interpreter"})
                        artifacts.append(art)
                        outputs["images"].append(art.uri)
                    elif kind == "execute_result":
                        outputs["result"] = data.get("text/plain")
                    elif "text/plain" in data:
                        outputs["stdout"].append(data["text/plain"] + "\n")
                elif kind == "error":
                    outputs["error"] = _ANSI.sub("", "\n".join(content.get("traceback", [])))[-4000:] or \
                        f"{content.get('ename')}: {content.get('evalue')}"

            error: str | None = None
            try:
                reply = await s.execute(code, on_output)
                if reply.get("status") == "error" and "error" not in outputs:
                    outputs["error"] = f"{reply.get('ename')}: {reply.get('evalue')}"
            except TimeoutError as exc:
                if str(exc) == "interrupt ignored" or not await s.is_alive():
                    s.kill_all()
                    await s.restart()
                    error = (f"execution timed out after {self.limits.wall_s:g} s (wall clock) and did not stop when "
                             f"interrupted: the kernel was restarted (variables lost, workspace files kept)")
                else:
                    error = (f"execution timed out after {self.limits.wall_s:g} s (wall clock) and was interrupted; "
                             f"variables are kept")
            except KernelCrashed as exc:
                s.kill_all()
                await s.restart()
                error = (f"the kernel died ({exc}); it was restarted: variables are lost, files in the workspace "
                         f"are kept")
            # processes a cell leaves running (forgotten children, a fork bomb's) do not outlive it
            leftovers = s.kill_strays() if await s.is_alive() else 0
            if leftovers or s.zombies():
                note = (f"[sandbox] {leftovers} process(es) left running by this code were killed" if leftovers
                        else "[sandbox] exited child processes were reaped")
                try:
                    await s.reap()
                except (TimeoutError, RuntimeError):  # e.g. a fork bomb left the kernel unable to start threads
                    s.kill_all()
                    await s.restart()
                    note += "; the kernel stopped responding and was restarted (variables lost, files kept)"
                outputs["stderr"].append(note + "\n")
            result: dict[str, Any] = {k: v for k, v in {
                "stdout": self._clip("".join(outputs["stdout"])), "stderr": self._clip("".join(outputs["stderr"])),
                "result": outputs["result"], "images": outputs["images"],
                "error": error or outputs.get("error"),
            }.items() if v}
            return ToolOutput(result, artifacts)

    def _clip(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[:self.max_output_chars] + f"\n... [{len(text) - self.max_output_chars} more characters]"

    async def sandbox_report(self, session_id: str = "default") -> dict[str, Any]:
        """What confinement holds for this session's kernel (as the launcher recorded it)."""
        return (await self.session(session_id)).sandbox_status()

    async def aclose(self) -> None:
        for s in self._sessions.values():
            await s.shutdown()
        self._sessions.clear()

    @staticmethod
    def remove_workspace(path: str | os.PathLike[str]) -> None:
        shutil.rmtree(path, ignore_errors=True)
