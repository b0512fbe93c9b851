"""Shared-timer deadlines for tool calls: same behaviour as asyncio.timeout, one timer per 10 ms."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from raygent.toolhub.deadlines import run_with_deadline

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 uses asyncio.wait_for")


async def test_a_call_past_its_deadline_times_out_and_others_finish():
    async def nap(s: float) -> float:
        await asyncio.sleep(s)
        return s

    # as ratios, so a slow or busy machine cannot flip the outcome: the quick naps take a 25th of the
    # deadline, the slow one 20 deadlines; being cut means finishing in a small part of its nap
    start = time.perf_counter()
    results = await asyncio.gather(*(run_with_deadline(nap(s), 0.5) for s in (0.01, 10.0, 0.02)),
                                   return_exceptions=True)
    assert results[0] == 0.01 and results[2] == 0.02 and isinstance(results[1], asyncio.TimeoutError)
    assert time.perf_counter() - start < 10.0 / 4  # the slow one was cut at its deadline, not run out
    # the timer is shared: many calls with the same deadline window, one expiry for all of them
    many = await asyncio.gather(*(run_with_deadline(nap(10), 0.05) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, asyncio.TimeoutError) for r in many)


async def test_a_cancellation_from_outside_is_not_a_timeout():
    task = asyncio.ensure_future(run_with_deadline(asyncio.sleep(5), 10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.current_task().cancelling() == 0


async def test_nested_deadlines_blame_the_one_that_expired():
    async def inner() -> str:
        try:
            await run_with_deadline(asyncio.sleep(5), 10)  # long deadline: must not be blamed
        except asyncio.TimeoutError:
            return "inner timed out (wrong)"
        return "inner finished (wrong)"

    with pytest.raises(asyncio.TimeoutError):
        await run_with_deadline(inner(), 0.05)
    assert asyncio.current_task().cancelling() == 0  # our cancel was undone: the task goes on
    assert await run_with_deadline(asyncio.sleep(0, "after"), 1) == "after"


async def test_a_call_that_swallows_the_cancellation_still_reports_the_timeout():
    async def stubborn() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "ignored the cancel"
        return "slept"

    with pytest.raises(asyncio.TimeoutError):
        await run_with_deadline(stubborn(), 0.03)
    assert asyncio.current_task().cancelling() == 0
