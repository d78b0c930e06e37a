"""How long the model may take (README, `CAPTION_TIMEOUT`): each request to it ends within
CAPTION_TIMEOUT, and a description's requests together by one deadline, DESCRIPTION_TIMEOUTS ×
CAPTION_TIMEOUT after it starts. A later request gets only the time left, and none starts with
less than LEAST_SHARE of CAPTION_TIMEOUT left: the description then ends with what it has."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
DESCRIPTION_TIMEOUTS = 2  # a description's time, in CAPTION_TIMEOUTs
LEAST_SHARE = 0.1  # no request starts with less than this share of CAPTION_TIMEOUT left


class OutOfTime(TimeoutError):
    """The description's deadline came before a request it needed could start or end. A
    TimeoutError: where the description cannot do without the request, it is a timeout."""


def description_time(caption_timeout: float) -> float:
    """A description's time in seconds."""
    return DESCRIPTION_TIMEOUTS * caption_timeout


async def within(
    call: Callable[[], Awaitable[T]], caption_timeout: float, deadline: float | None = None
) -> T:
    """One request: cut at `caption_timeout` (TimeoutError), or at `deadline` (event-loop
    time) when that comes first (OutOfTime); not started (OutOfTime) when less than
    LEAST_SHARE of `caption_timeout` is left before `deadline`."""
    left = None if deadline is None else deadline - asyncio.get_running_loop().time()
    if left is None or left >= caption_timeout:
        bound = asyncio.timeout(caption_timeout)
        cut: TimeoutError = TimeoutError(f"captioner timed out after {caption_timeout:g}s")
    elif left < LEAST_SHARE * caption_timeout:
        raise OutOfTime(f"{_spent(caption_timeout)} left no time for another request")
    else:
        bound = asyncio.timeout(left)
        cut = OutOfTime(f"{_spent(caption_timeout)} ran out during a request to the model")
    try:
        async with bound:
            return await call()
    except TimeoutError:
        if bound.expired():
            raise cut from None
        raise


def _spent(caption_timeout: float) -> str:
    seconds = description_time(caption_timeout)
    return f"the description's {seconds:g}s ({DESCRIPTION_TIMEOUTS} × CAPTION_TIMEOUT)"
