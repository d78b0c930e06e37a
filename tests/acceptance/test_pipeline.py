"""End to end: upload → trigger → pg_net webhook → job → worker → Hugging Face → image_caption."""

import httpx

from tests.harness.hf_stub import Loading
from tests.harness.waiting import wait_until
from tests.support import (
    TEST_SECRET,
    caption_of,
    job_of,
    make_image,
    noise_image,
    query,
    storage_client,
    upload,
    wait_for_caption,
    wait_for_job_state,
)


def test_upload_gets_captioned_through_the_webhook(service, supabase, hf, pgnet):
    object_id = upload(supabase, "pets/cat.png", make_image((220, 20, 20), size=(800, 600)))

    row = wait_for_caption(supabase.db_url, object_id)

    assert "red" in row["caption"]
    assert row["model"] == service.settings.caption_model
    version = query(supabase.db_url, "select version from storage.objects where id=%s", object_id)
    assert row["object_version"] == version[0]["version"]
    assert pgnet.delivered >= 1
    assert len(hf.calls) == 1
    assert hf.calls[0]["authorization"] == "Bearer hf_test_token"
    assert job_of(supabase.db_url, object_id)["state"] == "done"


def test_image_is_downscaled_before_it_is_sent(service, supabase, hf):
    original = noise_image((2400, 1600))
    object_id = upload(supabase, "big.png", original)

    row = wait_for_caption(supabase.db_url, object_id)

    assert row["caption"].startswith("a 512x341 picture")
    assert hf.calls[0]["n_bytes"] < len(original) / 5


def test_dropped_webhook_is_still_captioned_by_the_poll(service, supabase, hf, pgnet):
    pgnet.drop_rate = 1.0
    object_id = upload(supabase, "dropped.png", make_image((20, 200, 20)))

    row = wait_for_caption(supabase.db_url, object_id)

    assert "green" in row["caption"]
    assert pgnet.dropped >= 1 and pgnet.delivered == 0


def test_duplicate_webhooks_give_one_row_and_one_captioner_call(service, supabase, hf, pgnet):
    pgnet.duplicate_rate = 1.0
    object_id = upload(supabase, "twice.png", make_image())
    wait_for_caption(supabase.db_url, object_id)
    record = query(
        supabase.db_url, "select to_jsonb(o) as r from storage.objects o where id=%s", object_id
    )
    payload = {
        "type": "INSERT",
        "table": "objects",
        "schema": "storage",
        "record": record[0]["r"],
        "old_record": None,
    }

    again = httpx.post(
        service.webhook_url, json=payload, headers={"Authorization": f"Bearer {TEST_SECRET}"}
    )

    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    pgnet.wait_idle()
    assert len(query(supabase.db_url, "select * from image_caption where id=%s", object_id)) == 1
    assert len(hf.calls) == 1


def test_loading_model_is_retried_until_it_answers(service, supabase, hf):
    hf.script(Loading(estimated_time=0.3), Loading(estimated_time=0.3))
    object_id = upload(supabase, "patient.png", make_image())

    wait_for_caption(supabase.db_url, object_id)

    # the job's 503 pauses the worker; a probe (503, then 200) releases it; the job answers
    assert [call["status"] for call in hf.calls] == [503, 503, 200, 200]
    gaps = [b["time"] - a["time"] for a, b in zip(hf.calls, hf.calls[1:], strict=False)]
    assert min(gaps[:2]) >= 0.3, f"estimated_time not honoured: {gaps}"
    assert job_of(supabase.db_url, object_id)["attempts"] == 1  # an outage costs no attempt


def test_bytes_that_are_not_an_image_end_as_failed(service, supabase, hf):
    object_id = upload(supabase, "liar.png", b"this is plain text, not a PNG", "image/png")

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert "not a supported raster image" in job["last_error"]
    assert job["attempts"] == 1
    assert caption_of(supabase.db_url, object_id) is None
    assert hf.calls == []


def test_corrupt_image_ends_as_failed(service, supabase, hf):
    truncated = make_image(size=(640, 480), fmt="JPEG")[:400]
    object_id = upload(supabase, "broken.jpg", truncated, "image/jpeg")

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert "corrupt" in job["last_error"] or "truncated" in job["last_error"].lower()
    assert caption_of(supabase.db_url, object_id) is None


def test_non_image_mimetype_is_skipped_with_its_reason(service, supabase, pgnet, hf):
    object_id = upload(supabase, "notes.txt", b"hello", "text/plain")
    pgnet.wait_idle()

    [job] = query(supabase.db_url, "select * from captioner.jobs")
    assert str(job["object_id"]) == object_id and job["state"] == "skipped"
    assert job["last_error"] == "not an image (text/plain)" and job["attempts"] == 0
    assert pgnet.delivered == 0 and hf.calls == []  # nothing to wake the worker for


def test_deleting_the_object_removes_its_caption(service, supabase):
    object_id = upload(supabase, "gone.png", make_image())
    wait_for_caption(supabase.db_url, object_id)

    storage_client(supabase).storage.from_("images").remove(["gone.png"])

    assert caption_of(supabase.db_url, object_id) is None
    assert job_of(supabase.db_url, object_id) is None


def test_overwrite_is_captioned_again_with_the_new_version(service, supabase, hf):
    object_id = upload(supabase, "swap.png", make_image((220, 20, 20)))
    wait_for_caption(supabase.db_url, object_id)

    upload(supabase, "swap.png", make_image((20, 20, 220)), upsert=True)

    wait_until(
        lambda: "blue" in caption_of(supabase.db_url, object_id)["caption"],
        message="overwrite not captioned",
    )
    assert len(query(supabase.db_url, "select * from image_caption")) == 1


def test_webhook_without_the_secret_is_refused_and_changes_nothing(service, supabase):
    object_id = upload(supabase, "quiet.png", make_image())
    wait_for_caption(supabase.db_url, object_id)
    query(supabase.db_url, "delete from captioner.jobs")
    payload = {
        "type": "INSERT",
        "table": "objects",
        "schema": "storage",
        "old_record": None,
        "record": {"id": object_id, "bucket_id": "images", "name": "quiet.png"},
    }

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TEST_SECRET}):
        response = httpx.post(service.webhook_url, json=payload, headers=headers)
        assert response.status_code == 401, headers
        assert "secret" in response.json()["detail"]

    assert query(supabase.db_url, "select * from captioner.jobs") == []


def test_concurrent_webhooks_share_enqueue_round_trips(service, supabase, pgnet):
    import asyncio

    pgnet.paused = True
    ids = [upload(supabase, f"burst/{n}.png", make_image((n * 10, 80, 80))) for n in range(20)]
    rows = query(supabase.db_url, "select to_jsonb(o) r from storage.objects o")
    payloads = [
        {
            "type": "INSERT",
            "table": "objects",
            "schema": "storage",
            "record": row["r"],
            "old_record": None,
        }
        for row in rows
    ]
    before = sum(route == "rpc:caption_jobs_enqueue" for route, _ in supabase.calls)

    async def send_all() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TEST_SECRET}"}
        async with httpx.AsyncClient(headers=headers) as client:
            return await asyncio.gather(
                *(client.post(service.webhook_url, json=p) for p in payloads)
            )

    responses = asyncio.run(send_all())

    assert sorted(r.json()["object_id"] for r in responses) == sorted(ids)
    assert {r.json()["status"] for r in responses} == {"duplicate"}  # the trigger queued them
    round_trips = sum(route == "rpc:caption_jobs_enqueue" for route, _ in supabase.calls) - before
    assert 1 <= round_trips < len(payloads) / 2


def test_local_model_captions_uploads_end_to_end(service_factory, supabase, pgnet, tiny_blip):
    """No HF_TOKEN: the local transformers backend (a tiny BLIP) does the captioning."""
    from tests.harness.supabase_stub import create_bucket

    create_bucket(supabase.db_url, "images")
    service = service_factory(
        caption_backend="auto", hf_token=None, local_model=str(tiny_blip), max_new_tokens=8
    )

    def captioner_state() -> str:
        return str(httpx.get(service.url + "/readyz").json()["checks"]["captioner"])

    # the model loads at start: /readyz says "loading" until it is ready, then "ok"
    assert captioner_state().startswith(("loading", "ok"))
    wait_until(lambda: captioner_state() == "ok", timeout=60, message="the model never loaded")
    object_id = upload(supabase, "local.png", make_image((200, 120, 40), size=(96, 64)))

    row = wait_for_caption(supabase.db_url, object_id, timeout=60)

    assert row["caption"].strip()
    assert row["model"] == str(tiny_blip)
