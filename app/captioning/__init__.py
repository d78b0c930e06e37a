"""Captioner backends behind one interface, chosen by one setting."""

from typing import Protocol

from app.config import CaptionSettings
from app.images import PreparedImage


class Captioner(Protocol):
    """Turns a prepared image into a caption.

    Raises `RetryableError` for passing faults and `PermanentError` for bad input.
    """

    model: str

    async def caption(self, image: PreparedImage) -> str: ...

    async def aclose(self) -> None: ...


def build_captioner(settings: CaptionSettings) -> Captioner:
    """The backend named by `settings.caption_backend`."""
    backend = settings.resolved_backend
    if backend == "local":
        from app.captioning.local import LocalCaptioner

        return LocalCaptioner(settings)
    from app.captioning.hf import ChatCaptioner, InferenceCaptioner

    if backend == "chat":
        return ChatCaptioner(settings)
    return InferenceCaptioner(settings)
