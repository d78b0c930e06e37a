"""Every auth check of the service, in one place.

- `WebhookAuth`: `Authorization: Bearer <WEBHOOK_SECRET>` on the storage webhook.
- `ApiKeyAuth`: `Authorization: Bearer <API_KEYS>` (default: the webhook secrets) on the API,
  the metrics and the OpenAPI schema; with no key at all, open only on a loopback HOST (or
  with API_PUBLIC=true), 403 with the reason elsewhere (see `Settings.api_auth`).
- `WebPageAuth`: middleware guarding everything under /ui (pages, assets, Gradio's API and
  websockets): HTTP Basic auth with UI_USERNAME / UI_PASSWORD, open, or locked when the
  pipeline is connected or HOST is not loopback and the page has no credentials (see
  `Settings.ui_auth`).

Secrets are compared in constant time against every accepted value (rotation).
"""

import base64
import binascii
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import SettingsDep
from app.core import metrics
from app.core.config import Settings

UI_LOCKED_REASON = (
    "the web page needs credentials while the bucket pipeline is connected: set UI_USERNAME "
    "and UI_PASSWORD (or UI_PUBLIC=true to open it to anyone)"
)


def ui_locked_reason(settings: Settings) -> str:
    """Why the page is locked: the pipeline is connected, or HOST is not loopback."""
    if settings.pipeline_connected:
        return UI_LOCKED_REASON
    return (
        f"the web page needs credentials on a non-loopback address (HOST={settings.host}): set "
        "UI_USERNAME and UI_PASSWORD (or UI_PUBLIC=true to open it to anyone)"
    )


def api_locked_reason(settings: Settings) -> str:
    return (
        f"the API needs a key on a non-loopback address (HOST={settings.host}): set API_KEYS "
        "and send Authorization: Bearer <key> (or API_PUBLIC=true to open it to anyone)"
    )


def secret_matches(presented: str, secrets: Iterable[str]) -> bool:
    """Whether `presented` equals one of `secrets`, compared in constant time against each."""
    matches = [hmac.compare_digest(presented.encode(), secret.encode()) for secret in secrets]
    return any(matches)


def bearer_matches(request: Request, secrets: Iterable[str]) -> bool:
    """Whether the request's one `Authorization: Bearer <token>` header carries one of
    `secrets`. Several Authorization headers never match: which one counts is ambiguous
    (proxies differ)."""
    headers = request.headers.getlist("authorization")
    if len(headers) != 1:
        return False
    scheme, _, token = headers[0].partition(" ")
    return scheme.lower() == "bearer" and secret_matches(token.strip(), secrets)


api_bearer = HTTPBearer(
    auto_error=False, description="One of API_KEYS (when unset: one of WEBHOOK_SECRET)."
)


async def require_webhook_secret(
    request: Request,
    settings: SettingsDep,
    _: Annotated[str | None, Header(alias="authorization")] = None,  # for the OpenAPI schema
) -> None:
    if not bearer_matches(request, settings.webhook_secret):
        metrics.WEBHOOKS.labels(f"refused_{status.HTTP_401_UNAUTHORIZED}").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong webhook secret (Authorization: Bearer <WEBHOOK_SECRET>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],  # OpenAPI scheme
) -> None:
    """Open only while no key exists at all (no API_KEYS, no pipeline) on a loopback HOST (a
    local demo), or with API_PUBLIC=true; without a key elsewhere: 403 with the reason."""
    if settings.api_auth == "locked":
        raise HTTPException(status.HTTP_403_FORBIDDEN, api_locked_reason(settings))
    keys = settings.accepted_api_keys
    if keys and not bearer_matches(request, keys):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer <API_KEYS>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


WebhookAuth = Annotated[None, Depends(require_webhook_secret)]
ApiKeyAuth = Annotated[None, Depends(require_api_key)]


class WebPageAuth:
    """Guards every request under `prefix` (pages, assets, API, websockets)."""

    def __init__(self, app: ASGIApp, settings: Settings, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self.mode = settings.ui_auth
        self.locked_reason = ui_locked_reason(settings).encode()
        self.username = settings.ui_username or ""
        self.password = settings.ui_password.get_secret_value() if settings.ui_password else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not self._guarded(scope["path"])
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif self.mode == "locked":
            await send_text(send, 403, self.locked_reason)
        else:
            await send_text(
                send,
                401,
                b"authentication required",
                [(b"www-authenticate", b'Basic realm="captioner", charset="UTF-8"')],
            )

    def _guarded(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def _authorized(self, scope: Scope) -> bool:
        if self.mode != "basic":
            return self.mode == "open"
        headers = dict(scope["headers"])
        username, password = parse_basic(headers.get(b"authorization", b"").decode("latin-1"))
        user_ok = secret_matches(username, [self.username])
        password_ok = secret_matches(password, [self.password])
        return user_ok and password_ok


def parse_basic(authorization: str) -> tuple[str, str]:
    """(username, password) from an `Authorization: Basic ...` header; empty when absent."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    username, _, password = decoded.partition(":")
    return username, password


async def send_text(
    send: Send, code: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                *(headers or []),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
