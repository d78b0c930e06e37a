"""Polling helper for tests: no sleeps-and-hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met in time",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises ``AssertionError(message)`` (with the last value seen) at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (after {timeout}s; last value: {last!r})")
        time.sleep(interval)


async def eventually(
    predicate: Callable[[], Any],
    within: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met in time",
) -> Any:
    """`wait_until` for a test running on the event loop (the loop keeps running)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (last := predicate()):
        if loop.time() >= deadline:
            raise AssertionError(f"{message} (after {within}s; last value: {last!r})")
        await asyncio.sleep(interval)
    return last
