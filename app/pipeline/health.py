"""Whether the captioner works now, as the probe (a small real picture) shows it.

The worker asks here whose fault a failure of the captioner's call is. A failure that could
be either (a timeout, a 5xx, an unusable answer, a refused token) is judged by one probe,
shared by every job whose call failed meanwhile: if the probe captions, the failure is the
image's; if not, the probe's failure says what is wrong with the captioner. A captioner that
says it is away (refused connection, 503 loading, 429) is believed without a probe.

While the captioner is away or misconfigured the worker claims nothing: it waits here, and
one probe per round (backing off, honouring the server's hint; a configuration re-check
resolves the route again, at least every minute) decides when the backlog is released.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.captioning import Captioner, ask_captioner
from app.core import metrics
from app.core.config import Settings
from app.core.errors import (
    CaptionError,
    ConfigurationError,
    Failure,
    RetryableError,
    failure_of,
)
from app.core.images import probe_image
from app.core.text import clipped
from app.pipeline.backoff import backoff_delay

log = logging.getLogger(__name__)
RECHECK_MAX_SECONDS = 60.0  # while paused for configuration, re-check at least this often
Probe = Callable[[bool], Awaitable[None]]  # the argument: resolve the route again first


@dataclass
class _Probing:
    started: float
    task: "asyncio.Future[CaptionError | None]"


class CaptionerHealth:
    """The captioner's state (working, away, misconfigured) and the probe that decides it."""

    def __init__(
        self, captioner: Captioner, settings: Settings, probe: Probe | None = None
    ) -> None:
        self._captioner = captioner
        self._settings = settings
        self._probe_call = probe or self._caption_probe_image  # a test may script it
        self.problem: CaptionError | None = None  # None: the captioner works
        self._rounds = 0  # failed probes (or away answers) since the last success
        self._due = 0.0  # loop time of the next probe while paused
        self._probing: _Probing | None = None
        self.probes = 0  # probes sent, for tests and metrics

    @property
    def paused(self) -> ConfigurationError | None:
        """The configuration problem the worker is paused for (shown by /readyz), if any."""
        return self.problem if isinstance(self.problem, ConfigurationError) else None

    def resume_delay(self) -> float:
        """Seconds until the next probe may release the backlog (0 while working)."""
        return max(self._due - _now(), 0.0) if self.problem else 0.0

    async def judge(self, error: BaseException, started: float) -> CaptionError | None:
        """Whose fault `error` (from a call started at loop time `started`) is: None for the
        image's, or the captioner's problem, which pauses the worker."""
        failure = failure_of(error)
        if self.problem is not None:
            self._note_hint(error)
            return self.problem
        if failure in (Failure.IMAGE, Failure.UNEXPECTED):
            return None
        if failure == Failure.AWAY and isinstance(error, CaptionError):
            self._enter(error)
            return error
        return await self._probe_since(started)

    async def recover(self, stopping: asyncio.Event) -> None:
        """While paused: wait for the next round, then probe once; resume if it captions."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=self.resume_delay())
        if stopping.is_set() or self.problem is None:
            return
        await self._start_probe(resolve=isinstance(self.problem, ConfigurationError)).task

    async def confirm(self) -> CaptionError | None:
        """Whether the captioner works now: the verdict of the probe in flight or of a new
        one (None: it captions)."""
        probing = self._probing
        if probing is None or probing.task.done():
            probing = self._start_probe(resolve=False)
        return await asyncio.shield(probing.task) or self.problem

    async def aclose(self) -> None:
        if self._probing is not None and not self._probing.task.done():
            self._probing.task.cancel()
            await asyncio.gather(self._probing.task, return_exceptions=True)

    async def _probe_since(self, started: float) -> CaptionError | None:
        """The verdict of a probe started after `started` (one is started if none was)."""
        probing = self._probing
        if probing is None or probing.started < started:
            probing = self._start_probe(resolve=False)
        problem = await asyncio.shield(probing.task)
        return problem or self.problem  # a later probe may have failed meanwhile

    def _start_probe(self, resolve: bool) -> _Probing:
        self._probing = _Probing(_now(), asyncio.ensure_future(self._probe(resolve)))
        return self._probing

    async def _probe(self, resolve: bool) -> CaptionError | None:
        """Caption the probe image as a job would: None when it works, else the problem it
        shows (the worker pauses for it)."""
        self.probes += 1
        try:
            await self._probe_call(resolve)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = _as_captioner_problem(exc)
            metrics.PROBES.labels(failure_of(problem)).inc()
            self._enter(problem)
            return problem
        metrics.PROBES.labels("ok").inc()
        self._resume()
        return None

    async def _caption_probe_image(self, resolve: bool) -> None:
        resolve_route = getattr(self._captioner, "resolve", None)
        if resolve and resolve_route is not None:
            await resolve_route()
        image = probe_image()
        metrics.BYTES_SENT.inc(len(image.data))
        await ask_captioner(image, self._captioner, self._settings)

    def _enter(self, problem: CaptionError) -> None:
        """Pause (or stay paused) for `problem`: one log line and one count per pause."""
        failure = failure_of(problem)
        if self.problem is None or failure_of(self.problem) != failure:
            metrics.PAUSES.labels(failure).inc()
            setting = getattr(problem, "setting", None)
            log.error(
                "paused: %s; probing until it works",
                clipped(problem.reason),
                extra={"setting": setting} if setting else None,
            )
        metrics.PAUSED.labels(Failure.CONFIGURATION).set(failure == Failure.CONFIGURATION)
        self.problem = problem
        self._rounds += 1
        self._due = _now() + self._delay(problem)

    def _note_hint(self, error: BaseException) -> None:
        hint = getattr(error, "retry_after", None)
        if hint is not None:
            self._due = max(self._due, _now() + min(hint, self._settings.retry_max_seconds))

    def _delay(self, problem: CaptionError) -> float:
        delay = backoff_delay(self._rounds, self._settings, getattr(problem, "retry_after", None))
        if failure_of(problem) == Failure.CONFIGURATION:
            return min(delay, RECHECK_MAX_SECONDS)
        return delay

    def _resume(self) -> None:
        if self.problem is not None:
            log.warning("resumed: the probe captioned (was: %s)", self.problem.reason)
        self.problem = None
        self._rounds = 0
        metrics.PAUSED.labels(Failure.CONFIGURATION).set(0)


def _as_captioner_problem(exc: Exception) -> CaptionError:
    """What the probe's failure says about the captioner: its class, except that refusing
    the probe image (4xx) is a configuration problem (no image is at fault) and anything
    unforeseen counts as the captioner away."""
    if not isinstance(exc, CaptionError):
        return RetryableError(f"the probe failed: {type(exc).__name__}: {exc}"[:500])
    if failure_of(exc) != Failure.IMAGE:
        return exc
    return ConfigurationError(
        f"the captioner refuses the probe image: {exc.reason}", "CAPTION_MODEL"
    )


def _now() -> float:
    return asyncio.get_running_loop().time()
