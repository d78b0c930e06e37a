"""The service's environment is what the database holds after start-up, removals included."""

import base64
import json

import httpx

from tests.harness.supabase_stub import create_bucket
from tests.support import make_image, query, query_one, upload, wait_for_caption

OLD, NEW = "old-webhook-secret-0123456789", "new-webhook-secret-0123456789"
OLD_SIGNING = "whsec_" + base64.b64encode(b"old-signing-key-0123456789abcdef").decode()


def config(db_url: str) -> dict:
    row = query_one(
        db_url, "select buckets, webhook_url, webhook_secret, signing_secret from captioner.config"
    )
    assert row is not None
    return row


def wake_ups(db_url: str) -> list[dict]:
    return query(db_url, "select url, headers from net.http_request_queue order by id")


def test_unsetting_the_webhook_url_stops_the_wake_ups(service_factory, supabase):
    create_bucket(supabase.db_url, "images")
    create_bucket(supabase.db_url, "avatars")
    first = service_factory(webhook_signing_secret=[OLD_SIGNING])
    upload(supabase, "before.png", make_image())
    assert [row["url"] for row in wake_ups(supabase.db_url)] == [first.webhook_url]
    first.stop()

    service_factory(webhook=False, caption_buckets=["avatars"])
    assert config(supabase.db_url) == {
        "buckets": ["avatars"],
        "webhook_url": None,
        "webhook_secret": None,
        "signing_secret": None,
    }
    after = upload(supabase, "after.png", make_image(), bucket="avatars")

    wait_for_caption(supabase.db_url, after)  # found by polling
    assert len(wake_ups(supabase.db_url)) == 1


def test_a_secret_rotated_out_is_refused_and_no_longer_sent(service_factory, supabase):
    create_bucket(supabase.db_url, "images")
    service_factory(webhook_secret=[OLD], webhook_signing_secret=[OLD_SIGNING]).stop()
    assert config(supabase.db_url)["signing_secret"] == OLD_SIGNING
    service_factory(webhook_secret=[NEW, OLD]).stop()  # rotation: both accepted, NEW sent

    service = service_factory(webhook_secret=[NEW])
    assert config(supabase.db_url)["webhook_secret"] == NEW
    assert config(supabase.db_url)["signing_secret"] is None  # signing turned off
    upload(supabase, "rotated.png", make_image())
    [wake_up] = wake_ups(supabase.db_url)
    assert wake_up["headers"]["Authorization"] == f"Bearer {NEW}"
    assert "webhook-signature" not in wake_up["headers"]

    body = json.dumps({"type": "DELETE", "table": "objects", "schema": "storage"})
    for secret, expected in ((OLD, 401), (NEW, 200)):
        response = httpx.post(
            service.webhook_url,
            content=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        assert response.status_code == expected, (secret, response.text)
