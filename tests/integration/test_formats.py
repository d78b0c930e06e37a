"""What the trigger queues is what the worker decodes: one list (app/core/images.py), handed to
the database at start-up; anything else is skipped with a reason, visible in the metrics."""

import httpx
from PIL import Image

from app.core.images import FORMAT_BY_MIMETYPE, MIMETYPES
from tests.support import TEST_SECRET, make_image, query, query_one, upload

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}


def test_every_listed_format_has_a_decoder():
    assert {"HEIF", "AVIF", "ICO"} <= set(FORMAT_BY_MIMETYPE.values())
    assert all(fmt in Image.OPEN for fmt in FORMAT_BY_MIMETYPE.values())
    assert all(mimetype == mimetype.lower() for mimetype in MIMETYPES)


def test_the_databases_list_is_the_workers(db_url, supabase, service):
    fresh = query_one(
        db_url,
        "select column_default from information_schema.columns"
        " where table_schema = 'captioner' and table_name = 'config'"
        " and column_name = 'mimetypes'",
    )["column_default"]
    assert sorted(fresh.split("'")[1].strip("{}").split(",")) == sorted(MIMETYPES)
    configured = query_one(db_url, "select mimetypes from captioner.config")["mimetypes"]
    assert configured == list(MIMETYPES)


def test_a_format_not_decoded_is_skipped_and_counted(service, supabase, hf):
    jxl = upload(supabase, "photo.jxl", b"\xff\x0a" + bytes(30), "image/jxl")
    heic = upload(supabase, "phone.HEIC", make_image(), "IMAGE/HEIC; profile=x")

    job = query_one(supabase.db_url, "select * from captioner.jobs where object_id = %s", jxl)
    assert job["state"] == "skipped"
    assert job["last_error"] == "image/jxl is not a format the captioner decodes"
    assert query(supabase.db_url, "select state from captioner.jobs where object_id = %s", heic)[0][
        "state"
    ] in ("pending", "running", "done")  # queued
    metrics = httpx.get(service.url + "/metrics", headers=AUTH).text
    assert 'captioner_jobs{state="skipped"} 1.0' in metrics
