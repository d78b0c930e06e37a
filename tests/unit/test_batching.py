"""MicroBatcher's batch formation, with a batch function whose time per batch is known."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.batching import SETTLE_FRACTION, WAIT_FRACTION, MicroBatcher


class Recorder:
    """A batch function taking `seconds` per batch; records each batch's start and items."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[tuple[float, list[int]]] = []
        self.running = False
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        assert not self.running, "batches overlapped"
        self.running = True
        self.started.set()
        self.batches.append((asyncio.get_running_loop().time(), items))
        await asyncio.sleep(self.seconds)
        self.running = False
        return [item * 2 for item in items]


def adaptive(recorder: Recorder, per_batch: float, size: int = 8) -> MicroBatcher[int, int]:
    batcher = MicroBatcher(recorder, size, max_wait=None)
    batcher.observe(per_batch)  # the model's time per batch, as its warm-up measures it
    return batcher


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def test_a_lone_item_starts_once_nothing_more_arrives() -> None:
    recorder = Recorder()
    batcher = adaptive(recorder, per_batch=40.0)  # settles after 0.4 s, deadline 10 s

    async def scenario() -> float:
        submitted = asyncio.get_running_loop().time()
        assert await batcher.submit(21) == 42
        return recorder.batches[0][0] - submitted

    waited = run(scenario)
    assert 40.0 * SETTLE_FRACTION - 0.05 <= waited < 40.0 * WAIT_FRACTION / 3


def test_images_being_decoded_join_the_batch_they_are_announced_for() -> None:
    """Arrivals further apart than the settle time still fill one batch: each was announced
    (incoming) while it was being decoded."""
    recorder = Recorder()
    batcher = adaptive(recorder, per_batch=20.0)  # settles after 0.2 s, deadline 5 s

    async def caller(item: int, decoding: float) -> int:
        with batcher.incoming():
            await asyncio.sleep(decoding)
        return await batcher.submit(item)

    async def scenario() -> tuple[float, list[int]]:
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(caller(i, 0.3 * i) for i in range(4)))
        return started, results

    started, results = run(scenario)
    assert results == [0, 2, 4, 6]
    assert [items for _, items in recorder.batches] == [[0, 1, 2, 3]]
    assert recorder.batches[0][0] - started < 0.9 + 1.0  # the last arrival, not the deadline


def test_an_announced_image_that_never_comes_is_waited_for_until_the_deadline() -> None:
    recorder = Recorder()
    batcher = adaptive(recorder, per_batch=4.0)  # deadline 1 s

    async def scenario() -> float:
        with batcher.incoming():  # decoding, and it will fail: never submitted
            submitted = asyncio.get_running_loop().time()
            await batcher.submit(1)
        return recorder.batches[0][0] - submitted

    waited = run(scenario)
    assert 4.0 * WAIT_FRACTION - 0.05 <= waited < 4.0 * WAIT_FRACTION + 1.5


def test_items_arriving_while_a_batch_runs_form_the_next_one() -> None:
    recorder = Recorder(seconds=0.3)
    batcher = adaptive(recorder, per_batch=0.3)

    async def scenario() -> None:
        first = asyncio.create_task(batcher.submit(0))
        await recorder.started.wait()
        await asyncio.gather(first, *(batcher.submit(i) for i in range(1, 6)))

    run(scenario)
    assert [items for _, items in recorder.batches] == [[0], [1, 2, 3, 4, 5]]
    assert batcher.batches_run == 2 and batcher.items_done == 6


def test_a_full_batch_starts_at_once_even_with_a_long_wait() -> None:
    recorder = Recorder()
    batcher = adaptive(recorder, per_batch=1000.0, size=3)

    async def scenario() -> list[int]:
        with batcher.incoming():
            return list(await asyncio.gather(*(batcher.submit(i) for i in range(3))))

    assert run(scenario) == [0, 2, 4]
    assert [items for _, items in recorder.batches] == [[0, 1, 2]]


@settings(max_examples=25, deadline=None)
@given(
    arrivals=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=12),
    announced=st.booleans(),
    batch_ms=st.integers(min_value=0, max_value=20),
    size=st.integers(min_value=1, max_value=5),
)
def test_every_caller_gets_its_own_result_from_batches_that_never_overlap(
    arrivals: list[int], announced: bool, batch_ms: int, size: int
) -> None:
    recorder = Recorder(seconds=batch_ms / 1000)
    batcher = adaptive(recorder, per_batch=batch_ms / 1000 + 0.01, size=size)

    async def caller(item: int, delay_ms: int) -> int:
        if announced:
            with batcher.incoming():
                await asyncio.sleep(delay_ms / 1000)
        else:
            await asyncio.sleep(delay_ms / 1000)
        return await batcher.submit(item)

    async def scenario() -> list[int]:
        return list(await asyncio.gather(*(caller(i, d) for i, d in enumerate(arrivals))))

    assert run(scenario) == [2 * i for i in range(len(arrivals))]
    sizes = [len(items) for _, items in recorder.batches]
    assert sum(sizes) == len(arrivals) and max(sizes) <= size
    assert sorted(i for _, items in recorder.batches for i in items) == list(range(len(arrivals)))
