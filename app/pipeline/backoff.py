"""How long to wait before trying again."""

import random

from app.core.config import Settings


def backoff_delay(attempts: int, settings: Settings, hint: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than the server's own hint."""
    ceiling = min(
        settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(attempts - 1, 0)
    )
    delay = random.uniform(ceiling / 2, ceiling)
    if hint is not None:
        delay = max(delay, min(hint, settings.retry_max_seconds))
    return delay
