"""Nothing the captioner does can fail an upload: the trigger's wake-up is best-effort.

A broken signing secret, or pg_net missing while a webhook URL is set, costs only the
wake-up (a warning); the job is queued in the upload's own transaction and the worker
finds it by polling. A database without pg_net has no `net` schema at all (pg_net's
extension script creates it), so dropping the harness's stand-in schema is that database.
"""

import psycopg
import pytest

from tests.harness.supabase_stub import create_bucket
from tests.support import (
    job_of,
    make_image,
    object_id,
    query,
    query_one,
    upload,
    wait_for_caption,
)

BROKEN_SIGNING_SECRET = "whsec_%%%not-base64%%%"
INSERT = (
    "insert into storage.objects (bucket_id, name, version, metadata) "
    "values ('images', %s, 'v1', '{\"mimetype\": \"image/png\"}') returning id"
)


def break_signing(db_url: str) -> None:
    query(db_url, "update captioner.config set signing_secret = %s", BROKEN_SIGNING_SECRET)


def remove_pg_net(db_url: str) -> None:
    query(db_url, "drop schema net cascade")


BREAKAGES = {"broken signing secret": break_signing, "pg_net absent": remove_pg_net}


def insert_collecting_warnings(db_url: str, name: str) -> tuple[str, list[str]]:
    """Insert an object row (as storage-api does) in one transaction; its id and the
    warnings the transaction raised."""
    warnings: list[str] = []
    with psycopg.connect(db_url) as conn:
        conn.add_notice_handler(
            lambda notice: (
                warnings.append(notice.message_primary or "")
                if notice.severity_nonlocalized == "WARNING"
                else None
            )
        )
        row = conn.execute(INSERT, (name,)).fetchone()
        conn.commit()
    assert row is not None
    return str(row[0]), warnings


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_failing_wake_up_is_a_warning_and_the_job_is_queued(db_url, breakage):
    create_bucket(db_url, "images")
    query(db_url, "select caption_configure('{images}', 'http://127.0.0.1:9/hook', 'bearer-0123')")
    BREAKAGES[breakage](db_url)

    object_id, warnings = insert_collecting_warnings(db_url, "a.png")

    assert job_of(db_url, object_id)["state"] == "pending"
    assert len(warnings) == 1 and "no wake-up for" in warnings[0], warnings
    assert "bearer-0123" not in warnings[0] and "not-base64" not in warnings[0]


def test_a_job_that_cannot_be_queued_is_a_warning_and_the_sweep_queues_it(db_url):
    create_bucket(db_url, "images")
    query(db_url, "select caption_jobs_sweep(10)")  # the bucket's first pass is over
    query(db_url, "alter table captioner.jobs add constraint refuse_all check (false) not valid")

    object_id, warnings = insert_collecting_warnings(db_url, "b.png")

    assert job_of(db_url, object_id) is None
    assert len(warnings) == 1 and "the sweep will queue it" in warnings[0], warnings
    query(db_url, "alter table captioner.jobs drop constraint refuse_all")
    swept = query(db_url, "select * from caption_jobs_sweep(10)")
    assert swept == [
        {"bucket_id": None, "examined": 1, "queued": 1, "skipped": 0, "passing": False}
    ]  # the noted upload, found without a pass
    assert job_of(db_url, object_id)["state"] == "pending"


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_upload_succeeds_and_is_captioned_by_polling(service_factory, supabase, breakage):
    create_bucket(supabase.db_url, "images")
    service = service_factory()  # tells the trigger its webhook URL
    assert (
        query_one(supabase.db_url, "select webhook_url from captioner.config")["webhook_url"]
        == service.webhook_url
    )
    BREAKAGES[breakage](supabase.db_url)

    uploaded = upload(supabase, "poll.png", make_image())

    assert uploaded == object_id(supabase, "images", "poll.png")
    caption = wait_for_caption(supabase.db_url, uploaded)
    assert caption["caption"]
    if breakage == "broken signing secret":  # pg_net is there: it was never asked to call
        assert query(supabase.db_url, "select * from net.http_request_queue") == []


def test_start_up_says_when_wake_ups_cannot_be_sent(service_factory, supabase, caplog):
    create_bucket(supabase.db_url, "images")
    service_factory().stop()
    assert "has no pg_net" not in caplog.text
    remove_pg_net(supabase.db_url)

    service_factory()  # with PUBLIC_WEBHOOK_URL

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("PUBLIC_WEBHOOK_URL is set but the database has no pg_net" in w for w in warnings)
