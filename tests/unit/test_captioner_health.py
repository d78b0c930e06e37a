"""The worker's pause, probe and resume (app/pipeline/health.py) and its backoff
(app/pipeline/backoff.py), in process with a scripted probe: whose fault a failure is, one
pause per outage, a wait that grows with jitter up to its ceiling, and a configuration
re-check at least every minute."""

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import metrics
from app.core.config import Settings
from app.core.errors import (
    CaptionerAway,
    ConfigurationError,
    Failure,
    PermanentError,
    RetryableError,
)
from app.pipeline.backoff import backoff_delay
from app.pipeline.health import RECHECK_MAX_SECONDS, CaptionerHealth


def settings(base: float = 2.0, ceiling: float = 600.0) -> Settings:
    return Settings(_env_file=None, retry_base_seconds=base, retry_max_seconds=ceiling)  # type: ignore[call-arg]


@given(
    attempts=st.integers(0, 40),
    base=st.floats(0.01, 100),
    ceiling=st.floats(0.01, 10_000),
    hint=st.none() | st.floats(0, 1e6),
)
def test_backoff_grows_to_its_ceiling_and_honours_the_hint_up_to_it(attempts, base, ceiling, hint):
    exponential = min(ceiling, base * 2 ** max(attempts - 1, 0))

    delay = backoff_delay(attempts, settings(base, ceiling), hint)

    assert delay <= max(exponential, min(hint or 0, ceiling)) <= ceiling
    assert delay >= exponential / 2
    if hint is not None:
        assert delay >= min(hint, ceiling)


def test_backoff_is_jittered_over_the_upper_half():
    random.seed(7)
    delays = [backoff_delay(3, settings(base=10)) for _ in range(200)]  # ceiling 40

    assert min(delays) < 25 and max(delays) > 35 and len(set(delays)) == 200


Script = list[BaseException | None]


def scripted(outcomes: Script) -> tuple[Callable[[bool], Awaitable[None]], list[bool]]:
    """A probe answering `outcomes` in turn (None: it captions); records `resolve` per call."""
    calls: list[bool] = []

    async def probe(resolve: bool) -> None:
        calls.append(resolve)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if outcome is not None:
            raise outcome

    return probe, calls


def health(outcomes: Script, **config: float) -> tuple[CaptionerHealth, list[bool]]:
    probe, calls = scripted(outcomes)
    return CaptionerHealth(object(), settings(**config), probe), calls  # type: ignore[arg-type]


def run(coroutine: Awaitable[object]) -> object:
    async def main() -> object:
        return await coroutine

    return asyncio.run(main())


def delay_of(state: CaptionerHealth) -> float:
    async def main() -> float:
        return state.resume_delay()  # loop time is the monotonic clock, in any loop

    return asyncio.run(main())


def judged(outcomes: Script, error: BaseException) -> tuple[object, CaptionerHealth, list[bool]]:
    async def main() -> tuple[object, CaptionerHealth, list[bool]]:
        state, calls = health(outcomes)
        loop = asyncio.get_running_loop()
        return await state.judge(error, loop.time()), state, calls

    return asyncio.run(main())  # type: ignore[return-value]


@pytest.mark.parametrize("error", [PermanentError("bad image"), KeyError("bug")])
def test_the_images_fault_and_bugs_never_probe(error):
    verdict, state, calls = judged([None], error)

    assert verdict is None and calls == [] and state.problem is None


def test_a_captioner_that_says_it_is_away_is_believed_without_a_probe():
    away = CaptionerAway("503 loading", 30.0, "loading")

    verdict, state, calls = judged([None], away)

    assert verdict is away and calls == [] and state.problem is away
    assert 30.0 - 1 <= delay_of(state) <= 30.0  # the server's own wait


@pytest.mark.parametrize(
    "error",
    [RetryableError("timed out", kind="timeout"), ConfigurationError("401", "HF_TOKEN")],
)
def test_an_ambiguous_failure_is_the_images_while_the_probe_captions(error):
    verdict, state, calls = judged([None], error)

    assert verdict is None and calls == [False] and state.problem is None


@pytest.mark.parametrize(
    ("probe_says", "failure"),
    [
        (ConfigurationError("401", "HF_TOKEN"), Failure.CONFIGURATION),
        (RetryableError("timed out", kind="timeout"), Failure.TRANSIENT),
        (PermanentError("refused"), Failure.CONFIGURATION),  # no image is at fault
        (RuntimeError("surprise"), Failure.TRANSIENT),
    ],
)
def test_when_the_probe_fails_too_its_failure_is_the_captioners(probe_says, failure):
    verdict, state, _ = judged([probe_says], RetryableError("timed out", kind="timeout"))

    assert verdict is state.problem and verdict is not None
    assert verdict.failure == failure  # type: ignore[attr-defined]
    assert state.paused is (verdict if failure == Failure.CONFIGURATION else None)


def test_jobs_failing_together_share_one_probe_and_one_pause():
    away_before = metrics.PAUSES.labels(Failure.TRANSIENT)._value.get()

    async def main() -> tuple[list[object], list[bool], CaptionerHealth]:
        state, calls = health([RetryableError("timed out", kind="timeout")])
        started = asyncio.get_running_loop().time()
        errors = [RetryableError(f"timeout {n}", kind="timeout") for n in range(8)]
        verdicts = await asyncio.gather(*(state.judge(e, started) for e in errors))
        later = await state.judge(RetryableError("one more"), started)  # while paused
        return [*verdicts, later], calls, state

    verdicts, calls, state = asyncio.run(main())  # type: ignore[misc]

    assert calls == [False]
    assert all(v is state.problem for v in verdicts)
    assert metrics.PAUSES.labels(Failure.TRANSIENT)._value.get() == away_before + 1


def rounds_of_recovery(state: CaptionerHealth, rounds: int) -> list[float]:
    """The wait before each probe of `rounds` re-checks (the clock jumped over each wait)."""
    waits = []

    async def main() -> None:
        for _ in range(rounds):
            waits.append(state.resume_delay())
            state._due = 0.0  # the wait has passed
            await state.recover(asyncio.Event())

    asyncio.run(main())
    return waits


def test_a_configuration_pause_rechecks_at_least_every_minute_resolving_the_route():
    problem = ConfigurationError("401", "HF_TOKEN")
    state, calls = health([problem], base=100.0, ceiling=6000.0)
    run(state.judge(problem, 0.0))

    waits = rounds_of_recovery(state, 6)

    assert all(0 < wait <= RECHECK_MAX_SECONDS for wait in waits[1:])
    assert calls[1:] == [True] * 6 and state.paused is problem


def test_an_outage_backs_off_beyond_a_minute_and_never_probes_in_a_tight_loop():
    away = CaptionerAway("connection refused", kind="unreachable")
    state, calls = health([away], base=100.0, ceiling=6000.0)
    run(state.judge(away, 0.0))

    waits = rounds_of_recovery(state, 4)

    assert all(wait >= 50 for wait in waits)  # base / 2 at least: no tight loop
    assert max(waits) > RECHECK_MAX_SECONDS  # the minute cap is configuration's only
    assert calls == [False] * 4 and state.paused is None


def test_a_configuration_recheck_that_finds_the_captioner_merely_away_stops_saying_paused():
    state, calls = health([ConfigurationError("401", "HF_TOKEN"), CaptionerAway("503")])
    run(state.judge(RetryableError("x"), 0.0))
    assert state.paused is not None

    rounds_of_recovery(state, 1)

    assert state.paused is None and isinstance(state.problem, CaptionerAway)
    assert calls == [False, True]


def test_a_probe_that_captions_releases_the_backlog():
    state, _ = health([None])  # away is believed without a probe: the first probe captions
    run(state.judge(CaptionerAway("503"), 0.0))

    rounds_of_recovery(state, 1)

    assert state.problem is None and delay_of(state) == 0.0


def test_probes_are_counted_from_zero_one_per_probe():
    state, calls = health([RetryableError("x"), None])
    assert state.probes == 0

    run(state.judge(RetryableError("timed out"), 0.0))
    rounds_of_recovery(state, 1)

    assert state.probes == len(calls) == 2


def test_the_first_round_of_an_outage_waits_one_base_delay():
    away = CaptionerAway("refused", kind="unreachable")
    state, _ = health([None], base=100.0, ceiling=6000.0)

    run(state.judge(away, 0.0))

    assert 50 - 1 <= delay_of(state) <= 100  # attempts 1: between base / 2 and base


def test_nothing_waits_once_a_probe_captions_or_its_time_has_come():
    state, _ = health([None], base=100.0)
    run(state.judge(CaptionerAway("refused"), 0.0))
    assert delay_of(state) > 49

    async def probe_now() -> None:
        await state._start_probe(resolve=False).task

    asyncio.run(probe_now())
    assert state.problem is None and delay_of(state) == 0.0

    paused, _ = health([None])
    run(paused.judge(CaptionerAway("refused"), 0.0))
    paused._due = 0.0  # long past
    assert delay_of(paused) == 0.0


def test_a_hint_seen_while_paused_pushes_the_next_probe_back_up_to_the_ceiling():
    state, _ = health([None], base=1.0, ceiling=600.0)
    run(state.judge(CaptionerAway("refused"), 0.0))

    run(state.judge(CaptionerAway("429", 300.0), 0.0))
    assert 299 <= delay_of(state) <= 300
    run(state.judge(CaptionerAway("429", 1e9), 0.0))
    assert 599 <= delay_of(state) <= 600


def test_recovery_stops_at_once_when_the_worker_stops():
    state, calls = health([None], base=100.0)
    run(state.judge(CaptionerAway("refused"), 0.0))
    stopping = asyncio.Event()
    stopping.set()

    run(state.recover(stopping))

    assert calls == [] and state.problem is not None


def test_aclose_cancels_a_probe_in_flight():
    async def main() -> tuple[bool, bool]:
        blocked = asyncio.Event()

        async def hang(resolve: bool) -> None:
            blocked.set()
            await asyncio.Event().wait()

        state = CaptionerHealth(object(), settings(), hang)  # type: ignore[arg-type]
        probing = state._start_probe(resolve=False)
        await blocked.wait()
        await asyncio.wait_for(state.aclose(), 5)
        await asyncio.wait_for(state.aclose(), 5)  # twice is fine
        return probing.task.cancelled(), probing.task.done()

    assert asyncio.run(main()) == (True, True)


def probe_counts() -> dict[str, float]:
    labels = ("ok", *(failure.value for failure in Failure))
    return {label: metrics.PROBES.labels(label)._value.get() for label in labels}


def test_each_probe_is_counted_by_its_verdict_and_the_pause_gauge_follows():
    before = probe_counts()
    state, _ = health([ConfigurationError("401", "HF_TOKEN"), CaptionerAway("503"), None])
    run(state.judge(RetryableError("x"), 0.0))
    assert metrics.PAUSED.labels(Failure.CONFIGURATION)._value.get() == 1
    rounds_of_recovery(state, 1)
    assert metrics.PAUSED.labels(Failure.CONFIGURATION)._value.get() == 0  # away now
    rounds_of_recovery(state, 1)

    after = probe_counts()
    grown = {
        label: after[label] - before[label] for label in after if after[label] != before[label]
    }
    assert grown == {"configuration": 1, "away": 1, "ok": 1}
    assert metrics.PAUSED.labels(Failure.CONFIGURATION)._value.get() == 0


class FakeCaptioner:
    """What the default probe uses: `resolve` (a route) and `caption`."""

    model = "fake"

    def __init__(self) -> None:
        self.resolved = 0
        self.images: list[object] = []

    async def resolve(self) -> None:
        self.resolved += 1

    async def caption(self, image: object) -> str:
        self.images.append(image)
        return "a house"


def test_the_default_probe_captions_the_probe_image_resolving_the_route_on_a_recheck():
    from app.core.images import probe_image

    captioner = FakeCaptioner()
    state = CaptionerHealth(captioner, settings())  # type: ignore[arg-type]

    async def main() -> None:
        await state._start_probe(resolve=False).task
        await state._start_probe(resolve=True).task

    asyncio.run(main())

    assert captioner.images == [probe_image(), probe_image()]
    assert captioner.resolved == 1 and state.problem is None


def test_the_wait_doubles_each_failed_round_and_starts_over_after_a_success():
    away = CaptionerAway("refused", kind="unreachable")
    state, _ = health([away, away, None], base=100.0, ceiling=1e6)
    run(state.judge(away, 0.0))

    waits = rounds_of_recovery(state, 3)  # two failed probes, then one that captions

    assert 49 <= waits[0] <= 100 and 99 <= waits[1] <= 200 and 199 <= waits[2] <= 400
    assert state.problem is None
    run(state.judge(away, 0.0))  # a new outage starts from the first round again
    assert 49 <= delay_of(state) <= 100


def test_one_pause_is_counted_per_outage_and_another_when_its_class_changes():
    def pauses() -> dict[str, float]:
        return {f: metrics.PAUSES.labels(f)._value.get() for f in ("away", "configuration")}

    before = pauses()
    away = CaptionerAway("refused")
    config = ConfigurationError("401", "HF_TOKEN")
    state, _ = health([away, away, config, config, None])
    run(state.judge(away, 0.0))
    rounds_of_recovery(state, 5)

    after = pauses()
    assert {f: after[f] - before[f] for f in after} == {"away": 1, "configuration": 1}


@pytest.mark.parametrize(
    ("probe_says", "reason", "setting"),
    [
        (ValueError("x" * 900), "the probe failed: ValueError: " + "x" * 470, None),
        (
            PermanentError("415 unsupported"),
            "the captioner refuses the probe image: 415 unsupported",
            "CAPTION_MODEL",
        ),
    ],
)
def test_what_a_failed_probe_says(probe_says, reason, setting):
    verdict, state, _ = judged([probe_says], RetryableError("timed out"))

    assert verdict is not None and verdict.reason.startswith(reason)  # type: ignore[attr-defined]
    assert len(verdict.reason) <= 520  # type: ignore[attr-defined]
    assert getattr(verdict, "setting", None) == setting


def test_confirming_shares_the_probe_in_flight_and_never_reuses_a_finished_one():
    async def main() -> tuple[list[object], list[object], list[bool]]:
        state, calls = health([None, RetryableError("timed out", kind="timeout")])
        together = await asyncio.gather(*(state.confirm() for _ in range(3)))
        later = [await state.confirm(), state.problem]
        return list(together), later, calls

    together, (later, problem), calls = asyncio.run(main())  # type: ignore[misc]

    assert together == [None, None, None]
    assert calls == [False, False]  # one probe for the three, a new one afterwards
    assert later is problem and problem is not None  # its failure pauses the worker
