"""Auth, signed webhooks, secrets kept out of logs and trigger text, and who may read what."""

import base64
import json
import logging
import time
import uuid

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from supabase import create_client

from tests.harness.waiting import wait_until
from tests.support import (
    TEST_SECRET,
    caption_of,
    make_image,
    query,
    query_one,
    upload,
    wait_for_caption,
    wait_for_job_state,
)

SIGNING_SECRET = "whsec_" + base64.b64encode(b"signing-key-0123456789abcdef0123").decode()
NEXT_SIGNING_SECRET = "whsec_" + base64.b64encode(b"rotated-key-0123456789abcdef0123").decode()


@pytest.fixture
def signed_service(service_factory, supabase, pgnet):
    from tests.harness.supabase_stub import create_bucket

    create_bucket(supabase.db_url, "images")
    return service_factory(webhook_signing_secret=[SIGNING_SECRET, NEXT_SIGNING_SECRET])


def signed_post(service, body: bytes, secret: str = SIGNING_SECRET, **overrides: str):
    message_id = overrides.pop("webhook_id", f"msg_{uuid.uuid4().hex}")
    timestamp = int(overrides.pop("timestamp", time.time()))
    from datetime import UTC, datetime

    signature = Webhook(secret).sign(
        message_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
    )
    headers = {
        "Authorization": f"Bearer {TEST_SECRET}",
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    return httpx.post(service.webhook_url, content=body, headers=headers)


def insert_payload(supabase, object_id: str) -> bytes:
    row = query_one(
        supabase.db_url, "select to_jsonb(o) r from storage.objects o where id=%s", object_id
    )
    return json.dumps(
        {
            "type": "INSERT",
            "table": "objects",
            "schema": "storage",
            "record": row["r"],
            "old_record": None,
        }
    ).encode()


def test_database_signs_webhooks_that_the_service_verifies(signed_service, supabase, pgnet):
    object_id = upload(supabase, "signed.png", make_image())

    wait_for_caption(supabase.db_url, object_id)
    pgnet.wait_idle()

    statuses = [status for status, _ in pgnet.responses]
    assert statuses and all(status == 200 for status in statuses), pgnet.responses
    assert all(json.loads(body)["status"] in ("queued", "duplicate") for _, body in pgnet.responses)


def test_unsigned_replayed_stale_or_forged_webhooks_are_refused(signed_service, supabase, pgnet):
    pgnet.paused = True
    object_id = upload(supabase, "plain.png", make_image())
    body = insert_payload(supabase, object_id)
    unsigned = httpx.post(
        signed_service.webhook_url, content=body, headers={"Authorization": f"Bearer {TEST_SECRET}"}
    )
    assert unsigned.status_code == 401 and "webhook-id" in unsigned.json()["detail"]

    assert signed_post(signed_service, body, webhook_id="msg_once").status_code == 200
    replay = signed_post(signed_service, body, webhook_id="msg_once")
    assert replay.status_code == 401 and "replayed" in replay.json()["detail"]

    stale = signed_post(signed_service, body, timestamp=str(int(time.time()) - 3600))
    assert stale.status_code == 401
    forged = signed_post(
        signed_service, body, secret="whsec_" + base64.b64encode(b"x" * 32).decode()
    )
    assert forged.status_code == 401
    tampered = signed_post(signed_service, body.replace(b"plain.png", b"other.png"))
    assert tampered.status_code == 200  # signed anew by us: the check is on the exact bytes
    garbage = httpx.post(
        signed_service.webhook_url,
        content=body,
        headers={
            "Authorization": f"Bearer {TEST_SECRET}",
            "webhook-id": "x",
            "webhook-timestamp": "nan",
            "webhook-signature": "v1,@@@ nonsense",
        },
    )
    assert garbage.status_code == 401


def test_rotated_signing_secret_is_accepted(signed_service, supabase, pgnet):
    pgnet.paused = True
    object_id = upload(supabase, "rotated.png", make_image())

    response = signed_post(signed_service, insert_payload(supabase, object_id), NEXT_SIGNING_SECRET)

    assert response.status_code == 200
    assert response.json()["status"] in ("queued", "duplicate")


def test_secrets_stay_out_of_trigger_text(signed_service, supabase):
    definitions = query(
        supabase.db_url,
        "select pg_get_triggerdef(t.oid) d from pg_trigger t where not t.tgisinternal "
        "union all select pg_get_functiondef(p.oid) from pg_proc p "
        "where p.pronamespace = 'captioner'::regnamespace",
    )
    text = "\n".join(row["d"] for row in definitions)
    assert "caption_on_object_change" in text
    assert TEST_SECRET not in text and SIGNING_SECRET not in text
    config = query_one(
        supabase.db_url, "select webhook_secret, signing_secret from captioner.config"
    )
    assert config == {"webhook_secret": TEST_SECRET, "signing_secret": SIGNING_SECRET}


def test_logs_never_contain_secrets(service_factory, supabase, pgnet, caplog):
    from tests.harness.supabase_stub import create_bucket

    create_bucket(supabase.db_url, "images")
    caplog.set_level(logging.DEBUG)
    service = service_factory()
    object_id = upload(supabase, "logged.png", make_image())
    wait_for_caption(supabase.db_url, object_id)
    httpx.post(service.webhook_url, json={}, headers={"Authorization": "Bearer guess"})
    upload(supabase, "notes.png", b"not an image")

    wait_until(lambda: "failed" in caplog.text, message="no failure logged")
    assert "logged.png" in caplog.text  # the log does talk about the work
    for secret in (TEST_SECRET, supabase.secret_key, supabase.service_key, "hf_test_token"):
        assert secret not in caplog.text
    assert "token=" not in caplog.text  # signed URLs are credentials too


def test_only_service_role_may_use_the_queue(service, supabase):
    anon = create_client(supabase.url, supabase.anon_key)
    user = create_client(supabase.url, supabase.user_key(str(uuid.uuid4())))
    for client in (anon, user):
        for fn, args in (
            ("caption_jobs_stats", {}),
            ("caption_jobs_enqueue", {"p_object_ids": [str(uuid.uuid4())]}),
            (
                "caption_jobs_claim",
                {"p_worker": "x", "p_limit": 1, "p_lease_seconds": 5, "p_max_attempts": 1},
            ),
            (
                "caption_jobs_extend",
                {
                    "p_object_id": str(uuid.uuid4()),
                    "p_lease_token": str(uuid.uuid4()),
                    "p_lease_seconds": 5,
                },
            ),
            ("caption_configure", {"p_buckets": ["x"]}),
        ):
            with pytest.raises(Exception) as denied:
                client.rpc(fn, args).execute()
            assert "permission denied" in str(denied.value), fn
        with pytest.raises(Exception) as hidden:
            client.schema("captioner").table("jobs").select("*").execute()
        assert "PGRST106" in str(hidden.value) or "schema" in str(hidden.value).lower()
    assert query_one(supabase.db_url, "select buckets from captioner.config")["buckets"] == [
        "images"
    ]


def test_caption_readable_only_by_who_can_read_the_image(service, supabase):
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    query(
        supabase.db_url,
        "create policy own on storage.objects for select to authenticated "
        "using (owner_id = (select auth.uid())::text)",
    )
    object_id = upload(supabase, "alice.png", make_image())
    query(
        supabase.db_url, "update storage.objects set owner_id = %s where id = %s", alice, object_id
    )
    wait_for_caption(supabase.db_url, object_id)

    def captions(key: str) -> list[dict]:
        return (
            create_client(supabase.url, key)
            .table("image_caption")
            .select("id, caption")
            .execute()
            .data
        )

    assert [row["id"] for row in captions(supabase.user_key(alice))] == [object_id]
    assert captions(supabase.user_key(bob)) == []
    assert captions(supabase.anon_key) == []
    with pytest.raises(Exception) as denied:
        create_client(supabase.url, supabase.user_key(alice)).table("image_caption").upsert(
            {"id": object_id, "caption": "vandalised"}
        ).execute()
    assert "permission denied" in str(denied.value) or "42501" in str(denied.value)
    assert caption_of(supabase.db_url, object_id)["caption"] != "vandalised"


def test_redirects_from_storage_are_not_followed(service, supabase, hf):
    supabase.faults.add(
        "download", status=302, body={"location": "http://169.254.169.254/"}, times=10
    )
    object_id = upload(supabase, "redirect.png", make_image())

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert "redirect" in job["last_error"]
    assert hf.calls == []
