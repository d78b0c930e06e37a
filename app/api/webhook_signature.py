"""Standard Webhooks verification (webhook-id, webhook-timestamp, webhook-signature), with
several accepted secrets for rotation and webhook-id replay protection."""

import binascii
import time
from collections import OrderedDict
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOLERANCE_SECONDS = 300  # the Standard Webhooks library's own window
MAX_REMEMBERED_IDS = 100_000


class InvalidSignature(Exception):
    """Why a signed webhook was refused."""


class SignatureVerifier:
    def __init__(self, secrets: list[str]) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets]
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Accept the body if any secret signed it, within the time window, and only once."""
        message_id = headers.get("webhook-id")
        if not (
            message_id and headers.get("webhook-signature") and headers.get("webhook-timestamp")
        ):
            raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
        if not any(self._signed_by(webhook, body, headers) for webhook in self._webhooks):
            raise InvalidSignature("bad signature, or timestamp outside the 5 minute window")
        self._remember(message_id)

    @staticmethod
    def _signed_by(webhook: Webhook, body: bytes, headers: Mapping[str, str]) -> bool:
        try:
            webhook.verify(body, dict(headers), json_parse=False)
        except (WebhookVerificationError, ValueError, binascii.Error):
            return False
        return True

    def _remember(self, message_id: str) -> None:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - 2 * TOLERANCE_SECONDS:
            self._seen.popitem(last=False)
        if message_id in self._seen:
            raise InvalidSignature(f"replayed webhook-id {message_id}")
        self._seen[message_id] = now
        if len(self._seen) > MAX_REMEMBERED_IDS:
            self._seen.popitem(last=False)
