"""Per-call timeouts that stay cheap when a hub runs many calls at once.

`asyncio.timeout` schedules and cancels one timer per call: 13 µs of a hub call's ~33 µs of
overhead on the 2-core benchmark machine. Here calls whose deadlines fall in the same 10 ms window
share one timer; when it fires it cancels the calls still running, and each converts its own
cancellation into `asyncio.TimeoutError`, exactly as `asyncio.timeout` would. A deadline may fire
up to 10 ms late; a cancellation that did not come from a deadline passes through untouched.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

_WINDOW_S = 0.01


class _Entry:
    __slots__ = ("task", "expired")

    def __init__(self, task: asyncio.Task[Any]):
        self.task = task
        self.expired = False


class _Deadlines:
    """The pending deadlines of one event loop, grouped into 10 ms windows with one timer each."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._windows: dict[int, set[_Entry]] = {}

    def add(self, task: asyncio.Task[Any], timeout: float) -> tuple[int, _Entry]:
        window = math.ceil((self._loop.time() + timeout) / _WINDOW_S)
        entries = self._windows.get(window)
        if entries is None:
            entries = self._windows[window] = set()
            self._loop.call_at(window * _WINDOW_S, self._expire, window)
        entry = _Entry(task)
        entries.add(entry)
        return window, entry

    def remove(self, window: int, entry: _Entry) -> None:
        entries = self._windows.get(window)
        if entries is not None:
            entries.discard(entry)

    def _expire(self, window: int) -> None:
        for entry in self._windows.pop(window, ()):
            if not entry.task.done():
                entry.expired = True
                entry.task.cancel()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()


async def run_with_deadline(coro: Any, timeout: float) -> Any:
    """Await `coro`; raise asyncio.TimeoutError if it runs past `timeout` seconds (it is cancelled)."""
    task = asyncio.current_task()
    if task is None or not hasattr(task, "uncancel"):  # Python 3.10: no way to undo our cancel
        return await asyncio.wait_for(coro, timeout=timeout)
    loop = task.get_loop()
    deadlines = _by_loop.get(loop)
    if deadlines is None:
        deadlines = _by_loop[loop] = _Deadlines(loop)
    window, entry = deadlines.add(task, timeout)
    try:
        result = await coro
    except asyncio.CancelledError:
        if not entry.expired:
            raise  # someone else cancelled the call: not a timeout
        task.uncancel()
        raise asyncio.TimeoutError from None
    finally:
        deadlines.remove(window, entry)
    if entry.expired:  # the call swallowed the cancellation and returned after its deadline
        task.uncancel()
        raise asyncio.TimeoutError
    return result
