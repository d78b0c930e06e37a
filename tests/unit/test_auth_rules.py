"""Every auth rule of app/api/auth.py, in process: the webhook's bearer (whatever other
headers come with it, Standard Webhooks signature headers included), the API key, and the
page's login. The decisions are properties of the header, tested over generated headers."""

import base64
import string

import httpx
import jwt
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import PlainTextResponse

from app.api.auth import UI_LOCKED_REASON, ApiKeyAuth, WebhookAuth, WebPageAuth, parse_basic
from app.core.config import Settings

SECRETS = ["first-secret", "second-secret"]
SIGNED = {  # a Standard Webhooks signature: it never stands in for the bearer
    "webhook-id": "msg_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}


SERVICE_KEY = jwt.encode({"role": "service_role", "iss": "supabase"}, "x" * 32, algorithm="HS256")


def settings(**overrides: object) -> Settings:
    """A connected service (the webhook secrets are only read with the pipeline's settings)."""
    values = {"supabase_url": "http://127.0.0.1:9", "supabase_service_role_key": SERVICE_KEY}
    return Settings(_env_file=None, webhook_secret=SECRETS, **{**values, **overrides})  # type: ignore[call-arg]


def app_for(config: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = config

    @app.post("/hook")
    async def hook(_: WebhookAuth) -> str:
        return "ok"

    @app.get("/api")
    async def api(_: ApiKeyAuth) -> str:
        return "ok"

    @app.get("/ui/{rest:path}")
    @app.get("/ui")
    @app.get("/uix")
    async def page() -> PlainTextResponse:
        return PlainTextResponse("page")

    app.add_middleware(WebPageAuth, settings=config, prefix="/ui")
    return app


async def call(app: FastAPI, method: str, path: str, headers: list[tuple[str, str]]) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.request(method, path, headers=headers)).status_code


def status(app: FastAPI, method: str, path: str, headers: list[tuple[str, str]]) -> int:
    import asyncio

    return asyncio.run(call(app, method, path, headers))


WEBHOOK = app_for(settings())
tokens = st.one_of(st.sampled_from(SECRETS), st.text(string.printable, max_size=20))
schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""])


@given(scheme=schemes, token=tokens, padded=st.booleans(), signed=st.booleans())
def test_the_webhook_needs_exactly_one_bearer_with_a_secret(scheme, token, padded, signed):
    value = f"{scheme} {' ' + token + ' ' if padded else token}"
    headers = [("authorization", value), *(SIGNED.items() if signed else [])]

    accepted = scheme.lower() == "bearer" and token.strip() in SECRETS

    assert status(WEBHOOK, "POST", "/hook", headers) == (200 if accepted else 401)


@pytest.mark.parametrize("bearer", [None, "Bearer wrong", "Bearer ", f"Basic {SECRETS[0]}"])
def test_a_signature_never_replaces_the_webhook_secret(bearer):
    headers = list(SIGNED.items()) + ([("authorization", bearer)] if bearer else [])

    assert status(WEBHOOK, "POST", "/hook", headers) == 401


def test_two_authorization_headers_are_refused_even_if_one_is_right():
    right = ("authorization", f"Bearer {SECRETS[0]}")

    assert status(WEBHOOK, "POST", "/hook", [right]) == 200
    assert status(WEBHOOK, "POST", "/hook", [right, right]) == 401
    assert status(WEBHOOK, "POST", "/hook", [right, ("authorization", "Bearer x")]) == 401


@given(token=tokens)
def test_api_keys_when_set_replace_the_webhook_secrets(token):
    app = app_for(settings(api_keys=["api-key"]))

    code = status(app, "GET", "/api", [("authorization", f"Bearer {token}")])

    assert code == (200 if token.strip() == "api-key" else 401)


def test_without_api_keys_the_webhook_secrets_open_the_api():
    headers = [("authorization", f"Bearer {SECRETS[1]}")]

    assert status(WEBHOOK, "GET", "/api", headers) == 200
    assert status(WEBHOOK, "GET", "/api", []) == 401


def test_the_api_is_open_only_when_no_key_exists_at_all():
    app = app_for(Settings(_env_file=None))  # type: ignore[call-arg]

    assert status(app, "GET", "/api", []) == 200


def basic(user: str, password: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


@given(user=st.sampled_from(["alice", "bob", ""]), password=st.sampled_from(["pw", "PW", ""]))
def test_the_page_login_needs_both_the_user_and_the_password(user, password):
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    code = status(app, "GET", "/ui/x", [basic(user, password)])

    assert code == (200 if (user, password) == ("alice", "pw") else 401)


@pytest.mark.parametrize(("path", "guarded"), [("/ui", True), ("/ui/a/b", True), ("/uix", False)])
def test_the_login_guards_the_prefix_and_only_the_prefix(path, guarded):
    app = app_for(settings(ui_username="alice", ui_password="pw"))

    assert status(app, "GET", path, []) == (401 if guarded else 200)
    assert status(app, "GET", path, [basic("alice", "pw")]) == 200


def test_a_connected_page_without_credentials_is_locked_with_the_reason():
    config = settings()
    assert config.ui_auth == "locked"
    app = app_for(config)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/ui/")

    import asyncio

    answer = asyncio.run(get())
    assert answer.status_code == 403 and answer.text == UI_LOCKED_REASON
    assert status(app, "GET", "/uix", []) == 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"a:b:c").decode(), ("a", "b:c")),
        ("basic " + base64.b64encode(b"a:").decode(), ("a", "")),
        ("Bearer " + base64.b64encode(b"a:b").decode(), ("", "")),
        ("Basic not-base64!", ("", "")),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), ("", "")),
        ("", ("", "")),
    ],
)
def test_parse_basic(header, expected):
    assert parse_basic(header) == expected
