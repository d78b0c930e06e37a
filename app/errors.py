"""The two ways a job can fail: worth another try, or not."""


class CaptionError(Exception):
    """Base class: `reason` is what ends up in the job's `last_error`."""

    def __init__(self, reason: str, kind: str = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # a short label for metrics: timeout, loading, rate_limited, ...


class RetryableError(CaptionError):
    """A passing fault (network, 5xx, 429, model loading): try again later.

    `retry_after` is the server's own hint in seconds (Retry-After, estimated_time), if any.
    """

    def __init__(self, reason: str, retry_after: float | None = None, kind: str = "other") -> None:
        super().__init__(reason, kind)
        self.retry_after = retry_after


class PermanentError(CaptionError):
    """The input itself is bad (not an image, corrupt, too large, gone): do not retry."""
