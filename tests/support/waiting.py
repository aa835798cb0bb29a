"""The one way a test waits for something: poll a check until it holds, or fail saying what.

Every bound is a hang guard with slack for a loaded CI box, never a speed target (figures are
measured by ``bench/``). A timeout is an ``AssertionError``: it reads like any failed assert and
passes through an event loop or a worker thread unchanged. The async twin is for checks that
await (a worker loop running in the test's own event loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["wait_for", "wait_for_async"]


def wait_for(
    check: Callable[[], bool],
    within: float = 20.0,
    what: str = "the condition holds",
    every: float = 0.1,
) -> float:
    """Poll ``check`` until true; returns the seconds it took. Fails after ``within`` seconds."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within:.0f}s waiting until {what}")
        time.sleep(every)
    return time.monotonic() - started


async def wait_for_async(
    check: Callable[[], Awaitable[bool]],
    within: float = 20.0,
    what: str = "the condition holds",
    every: float = 0.02,
) -> float:
    """:func:`wait_for` for a check that awaits; sleeps without blocking the event loop."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within:.0f}s waiting until {what}")
        await asyncio.sleep(every)
    return time.monotonic() - started
