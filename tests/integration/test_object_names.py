"""Every name storage accepts gets captioned, including those whose signed URL never
verifies: the worker falls back to the authenticated download, and says so."""

import logging

import pytest

from tests.support import make_image, upload, wait_for_caption


@pytest.mark.parametrize("name", ["q?x=1&y=2.png", "a b/c+d=e&f.png", "x/y/z/w/v/deep photo.png"])
def test_names_storage_accepts_are_captioned(service, supabase, hf, caplog, name):
    caplog.set_level(logging.INFO, logger="app.pipeline.storage")
    object_id = upload(supabase, name, make_image((30, 60, 220)))

    assert "mostly blue" in wait_for_caption(supabase.db_url, object_id)["caption"]
    assert len(hf.calls) == 1
    signed_fallback = "cannot be signed; authenticated download"
    assert (signed_fallback in caplog.text) == ("?" in name)
    assert ("sign", 200) in supabase.calls or "?" in name


def test_a_refused_signed_url_falls_back_to_the_authenticated_download(
    service, supabase, hf, caplog
):
    caplog.set_level(logging.INFO, logger="app.pipeline.storage")
    refusal = {"statusCode": "400", "code": "InvalidSignature", "error": "InvalidSignature",
               "message": "The url do not match the signature"}
    supabase.faults.add("download", 400, body=refusal)

    object_id = upload(supabase, "plain.png", make_image((30, 160, 60)))

    assert "mostly green" in wait_for_caption(supabase.db_url, object_id)["caption"]
    assert "storage refused its signed URL (InvalidSignature)" in caplog.text
    assert [call for call in supabase.calls if call[0] == "download"] == [
        ("download", 400), ("download", 200)]
