"""System programs that built-in tools drive (espeak-ng, tesseract): find them, or say what to install."""

from __future__ import annotations

import asyncio
import shutil


class MissingSystemDependency(RuntimeError):
    """A program a tool needs is not installed; the message names the Debian package."""


def find_binary(binary: str) -> str | None:
    return shutil.which(binary)


def require_binary(binary: str, apt_package: str, tool: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise MissingSystemDependency(
            f"{tool} needs the program {binary!r}, which is not installed: run "
            f"`sudo apt-get install -y {apt_package}` (or `sudo scripts/install_system_deps.sh`, which installs "
            f"every tool's system packages)")
    return path


async def run_program(argv: list[str], *, stdin: bytes | None = None, timeout_s: float = 60.0) -> tuple[bytes, bytes]:
    """Run a program to completion; kill it on timeout or cancellation; raise on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE if stdin is not None else
                                                asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=timeout_s)
    except BaseException:  # timeout or the hub's own timeout cancelled us: never leave the program running
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()[-500:] or f"exit status {proc.returncode}"
        raise RuntimeError(f"{argv[0]} failed: {detail}")
    return out, err
