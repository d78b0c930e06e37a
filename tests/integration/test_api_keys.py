"""Supabase's new API keys against the stand-in's gateway (tests/harness/gateway.py): what
the gateway accepts and refuses, and a service that works with either kind of key and
never puts a non-JWT in `Authorization`."""

import asyncio

import httpx
import pytest
from postgrest.exceptions import APIError
from supabase import create_client

from app.commands.doctor import run_checks
from tests.harness.gateway import BROWSER_MARK
from tests.harness.supabase_stub import create_bucket
from tests.support import make_image, query, service_settings, upload, wait_for_caption

BROWSER = f"{BROWSER_MARK}5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/142.0 Safari/537.36"


def rpc(supabase, fn: str, headers: dict[str, str], body: dict | None = None) -> httpx.Response:
    return httpx.post(f"{supabase.url}/rest/v1/rpc/{fn}", json=body or {}, headers=headers)


def test_supabase_py_as_it_ships_gets_pgrst301_with_a_secret_key(supabase):
    """supabase-py 2.34 sends the key as `apikey` and as `Authorization: Bearer`: the gateway
    lets an equal `Bearer sb_…` through and PostgREST refuses it (supabase-py #1228, #1230)."""
    with pytest.raises(APIError) as refused:
        create_client(supabase.url, supabase.secret_key).rpc("caption_jobs_stats", {}).execute()
    assert refused.value.code == "PGRST301"
    assert refused.value.message == "Expected 3 parts in JWT; got 1"


def test_the_gateway_swaps_a_new_key_for_a_jwt_of_its_role(supabase):
    as_secret = rpc(supabase, "caption_jobs_stats", {"apikey": supabase.secret_key})
    as_publishable = rpc(supabase, "caption_jobs_stats", {"apikey": supabase.publishable_key})

    assert as_secret.status_code == 200, as_secret.text
    assert as_publishable.status_code == 401 and as_publishable.json()["code"] == "42501"
    minted = [f.authorization for f in supabase.gateway.forwarded]
    assert all(a is not None and a.startswith("Bearer ey") for a in minted)


SERVICE_ONLY = {  # what the worker, the CLI and the doctor call, with their arguments
    "caption_jobs_claim": {
        "p_worker": "w",
        "p_limit": 1,
        "p_lease_seconds": 30,
        "p_max_attempts": 3,
    },
    "caption_jobs_stats": {},
    "caption_jobs_failures": {"p_limit": 5},
    "caption_jobs_recent": {"p_state": "failed", "p_limit": 5},
    "caption_jobs_bucket_states": {},
    "caption_doctor": {"p_functions": [], "p_buckets": []},
    "caption_schema_version": {},
}


@pytest.mark.parametrize("fn", list(SERVICE_ONLY))
def test_a_publishable_key_cannot_call_service_role_functions(supabase, fn):
    refused = rpc(supabase, fn, {"apikey": supabase.publishable_key}, SERVICE_ONLY[fn])
    allowed = rpc(supabase, fn, {"apikey": supabase.secret_key}, SERVICE_ONLY[fn])

    assert refused.status_code == 401 and refused.json()["code"] == "42501", refused.text
    assert allowed.status_code == 200, allowed.text


def test_a_secret_key_from_a_browser_is_refused(supabase):
    from_browser = {"apikey": supabase.secret_key, "User-Agent": BROWSER}
    legacy_from_browser = {
        "apikey": supabase.service_key,
        "Authorization": f"Bearer {supabase.service_key}",
        "User-Agent": BROWSER,
    }

    assert rpc(supabase, "caption_jobs_stats", from_browser).status_code == 401
    storage = httpx.post(
        f"{supabase.url}/storage/v1/object/images/b.png", content=b"x", headers=from_browser
    )
    assert storage.status_code == 401
    # only the secret key is checked for a browser; the legacy JWT still passes
    assert rpc(supabase, "caption_jobs_stats", legacy_from_browser).status_code == 200
    publishable = {"apikey": supabase.publishable_key, "User-Agent": BROWSER}
    assert rpc(supabase, "caption_schema_version", publishable).status_code == 401  # 42501


@pytest.mark.parametrize(
    "headers",
    [
        {"apikey": "sb_secret_not-this-projects-key"},
        {"apikey": "sb_publishable_not-this-projects-key"},
        {"apikey": "anything", "Authorization": "Bearer sb_secret_not-equal-to-apikey"},
    ],
    ids=["unknown-secret", "unknown-publishable", "bearer-not-apikey"],
)
def test_a_new_key_the_gateway_does_not_know_is_refused(supabase, headers):
    refused = rpc(supabase, "caption_jobs_stats", headers)
    assert refused.status_code == 401
    assert refused.json()["message"] == "Invalid API key"


def test_storage_refuses_a_non_jwt_in_authorization_and_takes_the_secret_key_as_apikey(
    supabase,
):
    create_bucket(supabase.db_url, "images")
    url = f"{supabase.url}/storage/v1/object/images/a.png"
    as_bearer = httpx.post(
        url,
        content=make_image(),
        headers={
            "apikey": supabase.secret_key,
            "Authorization": f"Bearer {supabase.secret_key}",
            "Content-Type": "image/png",
        },
    )
    as_apikey = httpx.post(
        url,
        content=make_image(),
        headers={"apikey": supabase.secret_key, "Content-Type": "image/png"},
    )

    assert as_bearer.status_code == 400  # storage-api: HTTP 400, the real status in the body
    assert as_bearer.json()["statusCode"] == "403"
    assert as_bearer.json()["message"] == "Invalid Compact JWS"
    assert as_apikey.status_code == 200, as_apikey.text


def test_legacy_jwt_keys_keep_working(supabase):
    create_bucket(supabase.db_url, "images")
    client = create_client(supabase.url, supabase.service_key)
    assert client.rpc("caption_jobs_stats", {}).execute().data is not None
    client.storage.from_("images").upload("legacy.png", make_image(), {"content-type": "image/png"})
    with pytest.raises(APIError) as refused:
        create_client(supabase.url, supabase.anon_key).rpc("caption_jobs_stats", {}).execute()
    assert refused.value.code == "42501"


KEYS = {
    "secret": {"supabase_secret_key": "secret_key"},
    "legacy": {"supabase_secret_key": None, "supabase_service_role_key": "service_key"},
    "both": {"supabase_secret_key": "secret_key", "supabase_service_role_key": "service_key"},
}


@pytest.mark.parametrize("kind", list(KEYS))
def test_the_service_never_sends_a_non_jwt_in_authorization(
    service_factory, pgnet, supabase, hf, kind
):
    """Fails if the service ever sends anything but a JWT in `Authorization`, to PostgREST
    or to Storage, whichever key it is given; and the key must really reach both."""
    create_bucket(supabase.db_url, "images")
    keys = {name: getattr(supabase, attr) if attr else None for name, attr in KEYS[kind].items()}
    service_factory(**keys)
    object_id = upload(supabase, "photo.png", make_image((10, 90, 200)))  # a legacy JWT upload
    wait_for_caption(supabase.db_url, object_id)
    checks = asyncio.run(run_checks(service_settings(supabase, hf, **keys)))

    configured = supabase.secret_key if kind != "legacy" else supabase.service_key
    used = [f for f in supabase.gateway.forwarded if f.apikey == configured]
    assert {f.route.split("/")[1] for f in used} == {"rest", "storage"}
    assert any("/object/sign/" in f.route for f in used)  # the worker's signed URL
    assert supabase.gateway.non_jwt_authorizations() == []
    assert all(f.authorization and f.authorization.startswith("Bearer ey") for f in used)
    key_check = next(check for check in checks if check.name == "Supabase key")
    assert (
        key_check.ok and ("secret key" if kind != "legacy" else "service_role") in key_check.detail
    )


def test_a_project_with_its_legacy_keys_disabled(service_factory, pgnet, supabase, hf):
    """The end of 2026: the legacy JWT keys are switched off. The secret key keeps the
    service captioning; the legacy key is refused, and the doctor says what to set."""
    create_bucket(supabase.db_url, "images")
    supabase.gateway.legacy_keys_enabled = False
    service_factory()  # SUPABASE_SECRET_KEY
    uploaded = httpx.post(
        f"{supabase.url}/storage/v1/object/images/late.png",
        content=make_image((90, 10, 10)),
        headers={"apikey": supabase.secret_key, "Content-Type": "image/png"},
    )
    assert uploaded.status_code == 200, uploaded.text
    object_id = query(supabase.db_url, "select id from storage.objects where name = 'late.png'")
    wait_for_caption(supabase.db_url, str(object_id[0]["id"]))

    legacy = {"supabase_secret_key": None, "supabase_service_role_key": supabase.service_key}
    checks = {c.name: c for c in asyncio.run(run_checks(service_settings(supabase, hf, **legacy)))}
    refused = checks["Supabase URL and key"]
    assert not refused.ok and "Legacy API keys are disabled" in refused.detail
    assert "SUPABASE_SECRET_KEY" in refused.fix
    as_legacy = rpc(supabase, "caption_jobs_stats", {"apikey": supabase.service_key})
    assert as_legacy.status_code == 401


def test_readyz_says_when_supabase_refuses_the_key(supabase, hf):
    """A secret key the project does not have (deleted, another project's) passes the
    start-up check but never the gateway: /readyz names the setting, not just 'waiting'."""
    from app.main import create_app
    from tests.harness.servers import ThreadedServer
    from tests.harness.waiting import wait_until

    settings = service_settings(supabase, hf, supabase_secret_key="sb_secret_deleted-one")
    with ThreadedServer(create_app(settings)).start() as server:
        said = wait_until(
            lambda: (
                (
                    httpx.get(server.url + "/readyz")
                    .json()["checks"]["supabase"]
                    .removeprefix("waiting")
                )
                or None
            ),
            timeout=10,
            message="/readyz never said why it waits",
        )

    assert said.startswith(": Supabase refused the key in SUPABASE_SECRET_KEY")
    assert "Invalid API key" in said and "sb_secret_deleted-one" not in said
