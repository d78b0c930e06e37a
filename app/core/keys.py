"""Supabase API keys: which kind a key is, whether it has the rights the service needs, and
the headers that carry it.

Four kinds (https://supabase.com/docs/guides/api/api-keys): the secret key `sb_secret_…`
and the legacy `service_role` JWT have the service_role Postgres role; the publishable key
`sb_publishable_…` and the legacy `anon` JWT have the anon role. The new keys are not JWTs:
Supabase's API gateway checks the `apikey` header and forwards a short-lived JWT of the
key's role to PostgREST and Storage. A new key must never travel in `Authorization`: the
gateway lets one through only when it equals `apikey`, and PostgREST then refuses it
(PGRST301 "Expected 3 parts in JWT; got 1", supabase-py issues #1228, #1230), so only a JWT
goes there."""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Literal

SECRET_PREFIX = "sb_secret_"
PUBLISHABLE_PREFIX = "sb_publishable_"
SERVICE_ROLE = "service_role"

KeyKind = Literal["secret", "service_role", "publishable", "anon", "jwt", "unknown"]
_DESCRIPTIONS: dict[KeyKind, str] = {
    "secret": "a secret key (sb_secret_…)",
    "service_role": "a legacy service_role key (JWT)",
    "publishable": "a publishable key (sb_publishable_…)",
    "anon": "a legacy anon key (JWT)",
    "jwt": "a JWT",
    "unknown": "not a Supabase API key",
}


@dataclass(frozen=True)
class ApiKey:
    """A key as configured, with what it is."""

    value: str
    kind: KeyKind
    role: str | None  # the Postgres role the key acts as, where it says

    @property
    def description(self) -> str:
        if self.kind == "jwt":
            return f"a JWT of role {self.role or '(none)'}"
        return _DESCRIPTIONS[self.kind]

    @property
    def is_jwt(self) -> bool:
        return self.kind in ("service_role", "anon", "jwt")

    @property
    def has_service_rights(self) -> bool:
        """Whether requests with it run as service_role (as the worker and the sweep need)."""
        return self.role == SERVICE_ROLE

    def headers(self) -> dict[str, str]:
        """`apikey` always; `Authorization: Bearer` only for a JWT (see the module's note)."""
        headers = {"apikey": self.value}
        if self.is_jwt:
            headers["Authorization"] = f"Bearer {self.value}"
        return headers


def classify(value: str) -> ApiKey:
    """What kind of key `value` is: by its prefix, or by the `role` claim of a JWT."""
    if value.startswith(SECRET_PREFIX):
        return ApiKey(value, "secret", SERVICE_ROLE)
    if value.startswith(PUBLISHABLE_PREFIX):
        return ApiKey(value, "publishable", "anon")
    claims = jwt_claims(value)
    if claims is None:
        return ApiKey(value, "unknown", None)
    role = claims.get("role")
    role = role if isinstance(role, str) else None
    kind: KeyKind = "service_role" if role == SERVICE_ROLE else "anon" if role == "anon" else "jwt"
    return ApiKey(value, kind, role)


def refused_key(exc: Exception) -> bool:
    """Whether an error from PostgREST or the gateway says the key was refused: a JWT it
    cannot use (PGRST301/302), no rights (42501), or a key the gateway does not accept
    ("Invalid API key", "Legacy API keys are disabled")."""
    code, message = getattr(exc, "code", None), getattr(exc, "message", None)
    return code in ("42501", "PGRST301", "PGRST302") or "API key" in str(message or exc)


def jwt_claims(token: str) -> dict[str, object] | None:
    """The payload of a compact JWT (three dot-separated base64url parts), unverified: the
    server verifies it; this only tells which kind of key was configured."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None
