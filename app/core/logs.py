"""Structured JSON logs: one line per event, with object id and attempt where known."""

import logging

from pythonjsonlogger.json import JsonFormatter

# Their INFO lines carry full URLs, and a signed URL's token is a credential.
QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "huggingface_hub", "urllib3")
_HANDLER_NAME = "captioner-json"


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the app's loggers; idempotent."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    app_logger = logging.getLogger("app")
    app_logger.setLevel(level.upper())
    if any(handler.get_name() == _HANDLER_NAME for handler in app_logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    app_logger.addHandler(handler)
