"""The socket lane: calls from a process to an actor on the same node over a Unix socket.

A Ray actor call costs 1.2-1.6 ms round trip on a 2-core machine (task submission, gRPC, thread
hops on both sides); a framed message over a Unix socket, served on the actor's own event loop,
costs under 0.1 ms. Ray still places, restarts and kills the actor: the lane only carries calls
(every `ActorProxy` to an actor on its node, unless `fast_lane=False`), so a component sees
exactly the calls it would see through Ray, on the same event loop.

Wire: request `!QI` (request id, length) + pickle of (method, args, kwargs); reply `!QBI`
(request id, status 0 = value / 1 = exception, length) + pickle. Requests are multiplexed: many
calls may be in flight on one connection, each answered when it finishes.

Security: the socket lives in a folder only the actor's user can enter (mode 0700), the same trust
boundary as the node's Ray processes themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import secrets
import struct
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("!QI")
_REPLY = struct.Struct("!QBI")
_DRAIN_ABOVE = 1 << 20  # bytes buffered for the socket before a writer waits for it to drain


class LaneClosedError(ConnectionError):
    """The actor's end of the socket went away (the actor died or was restarted)."""


def _socket_dir() -> str:
    """A fresh 0700 folder for one actor's socket: under Ray's session folder (cleaned with it)
    when the path stays short enough for a Unix socket, else under the temp folder."""
    base = None
    try:
        import ray

        base = os.path.join(ray._private.worker._global_node.get_session_dir_path(), "sockets")
    except Exception:  # noqa: BLE001 - a private Ray API: fall back to the temp folder
        base = None
    name = f"raygent-{os.getpid()}-{secrets.token_hex(4)}"
    if base is None or len(os.path.join(base, name, "lane")) > 100:  # sun_path holds 104-108 bytes
        return tempfile.mkdtemp(prefix="raygent-lane-")
    path = os.path.join(base, name)
    os.makedirs(path, mode=0o700)
    return path


def _pack_error(exc: BaseException) -> bytes:
    """The exception itself when it pickles (the caller catches it by its own class), with the
    actor-side traceback attached as a note; otherwise a RuntimeError that names it."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised in the actor, pid {os.getpid()})\n{tb}")
    try:
        return pickle.dumps(exc, protocol=5)
    except Exception:  # noqa: BLE001 - e.g. an exception holding a lock or a socket
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}\n(raised in the actor, pid {os.getpid()})"
                                         f"\n{tb}"), protocol=5)


class LaneServer:
    """The actor's end: a Unix socket server on the actor's event loop that runs each request
    through `invoke(method, args, kwargs)`, the same entry Ray's calls use."""

    def __init__(self, invoke: Callable[[str, tuple, dict], Awaitable[Any]], pack: Callable[[Any], bytes]):
        self._invoke = invoke
        self._pack = pack
        self._server: asyncio.AbstractServer | None = None
        self.path: str | None = None

    async def start(self) -> str:
        if self._server is None:
            path = os.path.join(_socket_dir(), "lane")
            self._server = await asyncio.start_unix_server(self._serve, path=path)
            self.path = path
        assert self.path is not None
        return self.path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                rid, size = _REQUEST.unpack(await reader.readexactly(_REQUEST.size))
                blob = await reader.readexactly(size)
                task = asyncio.ensure_future(self._answer(rid, blob, writer))
                running.add(task)
                task.add_done_callback(running.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the caller closed its end (its process ended, or it closed the proxy)
        finally:
            writer.close()

    async def _answer(self, rid: int, blob: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            method, args, kwargs = pickle.loads(blob)
            status, payload = 0, self._pack(await self._invoke(method, args, kwargs))
        except Exception as exc:  # the component's own error travels back to the caller
            status, payload = 1, _pack_error(exc)
        if writer.is_closing():
            return
        writer.write(_REPLY.pack(rid, status, len(payload)) + payload)
        if writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
            try:
                await writer.drain()
            except ConnectionError:
                pass


class SocketLane:
    """The caller's end, bound to the event loop of its first call (other loops, and forked
    children, use normal actor calls). `call` returns the packed result or raises the
    component's exception; `LaneClosedError` when the actor went away with the call in flight."""

    def __init__(self, path: str):
        self.path = path
        self._pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._next_id = 0
        self.calls = 0  # answered over the socket (tests and benchmarks check the lane was used)

    @property
    def connected(self) -> bool:
        writer, loop = self._writer, self._loop
        if writer is None or loop is None:
            return False
        return not writer.is_closing() and not loop.is_closed()

    def usable_here(self) -> bool:
        if os.getpid() != self._pid:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        # a loop that has ended (asyncio.run returned) gives its place to the next one
        return self._loop is None or self._loop is loop or self._loop.is_closed()

    async def connect(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(self.path)
        self._loop = asyncio.get_running_loop()
        self._reader_task = self._loop.create_task(self._read(reader))

    async def call(self, blob: bytes) -> bytes:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise LaneClosedError("the lane is closed")
        self._next_id += 1
        rid = self._next_id
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            writer.write(_REQUEST.pack(rid, len(blob)) + blob)
            if writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                await writer.drain()
            status, payload = await future
        finally:
            self._pending.pop(rid, None)
        self.calls += 1
        if status == 0:
            return payload
        raise pickle.loads(payload)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        why: BaseException | None = None
        try:
            while True:
                rid, status, size = _REPLY.unpack(await reader.readexactly(_REPLY.size))
                payload = await reader.readexactly(size)
                future = self._pending.get(rid)
                if future is not None and not future.done():
                    future.set_result((status, payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            why = exc
        except asyncio.CancelledError:  # the loop is ending, or close()
            why = None
            raise
        finally:
            self._fail_pending(why)

    def _fail_pending(self, why: BaseException | None) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        detail = "the actor closed the connection" if isinstance(why, asyncio.IncompleteReadError) or why is None \
            else f"{type(why).__name__}: {why}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LaneClosedError(detail))

    def close(self) -> None:
        """Close the connection (from any thread; a no-op once closed or when its loop ended)."""
        loop, task = self._loop, self._reader_task
        if task is None or loop is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                task.cancel()
                return
        except RuntimeError:
            pass
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop closed meanwhile
            pass
