"""Every failure falls in exactly one `Failure` class; the class decides what the worker does.

| Failure       | Raised as             | The worker                                          |
|---------------|-----------------------|-----------------------------------------------------|
| IMAGE         | `PermanentError`      | fails the job now, with its reason                  |
| TRANSIENT     | `RetryableError`      | retries with backoff, counting the attempt          |
| AWAY          | `CaptionerAway`       | pauses claiming (backing off), refunds the attempt  |
| CONFIGURATION | `ConfigurationError`  | pauses until a re-check passes, refunds the attempt |
| UNEXPECTED    | any other exception   | counts the attempt, fails after MAX_ATTEMPTS        |

A transient or configuration failure of the captioner's call may be the image's or the
captioner's: the worker asks the probe (app/pipeline/health.py). While the probe captions,
it is the image's (counted; an `UnusableAnswer` retried once); when the probe fails too, the
probe's failure is the class.
"""

from enum import StrEnum


class Failure(StrEnum):
    IMAGE = "image"  # undecodable, too large, rejected by the model, gone
    TRANSIENT = "transient"  # 5xx, timeout, connection reset
    AWAY = "away"  # the captioner is down, loading or rate-limited
    CONFIGURATION = "configuration"  # a setting is wrong: token, credits, model, route
    UNEXPECTED = "unexpected"  # a bug or something nobody foresaw


class CaptionError(Exception):
    """Base class: `reason` is what ends up in the job's `last_error`."""

    failure = Failure.TRANSIENT

    def __init__(self, reason: str, kind: str = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # a short label for metrics: timeout, loading, rate_limited, ...


class RetryableError(CaptionError):
    """A passing fault (network, 5xx): try again later, counting the attempt.

    `retry_after` is the server's own hint in seconds (Retry-After, estimated_time), if any.
    """

    def __init__(self, reason: str, retry_after: float | None = None, kind: str = "other") -> None:
        super().__init__(reason, kind)
        self.retry_after = retry_after


class CaptionerAway(RetryableError):
    """The captioner itself is away (down, loading, rate-limited): no fault of the image."""

    failure = Failure.AWAY


class PermanentError(CaptionError):
    """The input itself is bad (not an image, corrupt, too large, gone): do not retry."""

    failure = Failure.IMAGE


class ConfigurationError(CaptionError):
    """A setting is wrong; nothing works until it is changed. `setting` names what to change;
    `fix`, when given, replaces the "(change <setting>)" advice ("": the reason says it)."""

    failure = Failure.CONFIGURATION

    def __init__(
        self, reason: str, setting: str, kind: str = "config", fix: str | None = None
    ) -> None:
        advice = f"change {setting}" if fix is None else fix
        super().__init__(f"{reason} ({advice})" if advice else reason, kind)
        self.setting = setting


class UnusableAnswer(ConfigurationError):
    """The model answered, but with no caption: an empty one, or a body that is not the task's
    answer. Configuration when the probe's answer is unusable too; else `image_reason`."""

    def __init__(self, reason: str, setting: str, image_reason: str, kind: str) -> None:
        super().__init__(reason, setting, kind)
        self.image_reason = image_reason


def empty_caption() -> UnusableAnswer:
    return UnusableAnswer(
        "the model returns empty captions",
        "CAPTION_MODEL, or CAPTION_PROMPT for chat",
        "the model returned an empty caption for this image",
        kind="empty",
    )


def failure_of(exc: BaseException) -> Failure:
    """The class of any exception: ours carry it, everything else is unexpected."""
    return exc.failure if isinstance(exc, CaptionError) else Failure.UNEXPECTED
