"""Every name the real storage server accepts gets captioned (REFERENCE.md §7: `? & = + ; :
, @ $ ( ) * ! '`, spaces anywhere, deep folders, a trailing `/`, `//` through raw HTTP and
TUS, a leading `/` through TUS), including those storage3 cannot sign as they are: the
worker reads them through the authenticated route, and says why."""

import asyncio
import itertools
import logging

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.config import Settings
from app.main import connect_supabase
from app.pipeline.storage import ObjectFetcher, unsignable
from tests.harness.supabase_stub import create_bucket
from tests.support import (
    make_image,
    service_settings,
    upload,
    upload_raw,
    upload_tus,
    wait_for_caption,
)

# (name, how a user gets it into storage)
NAMES = [
    ("q?x=1&y=2.png", upload),
    ("amp&eq=plus+semi;colon:comma,at@dollar$.png", upload),
    ("paren(1)*star!bang'quote.png", upload),
    ("a b/c d.png", upload),
    (" leading space.png", upload),
    ("trailing space.png ", upload),
    ("1/2/3/4/5/6/7/8/9/10/ten levels.png", upload),
    ("folder/trailing-slash.png/", upload_raw),
    ("rep/dbl//unique.png", upload_raw),
    ("tus/dbl//unique.png", upload_tus),
    ("/leading-slash.png", upload_tus),
]
# storage-api's isValidKey alphabet; "." and ".." segments are left out (TUS refuses them,
# and no URL can name them)
KEY_CHARS = "ABCxyz0189 _!-.*'()&$@=;:+,?"
SEGMENT = st.text(KEY_CHARS, max_size=12).filter(lambda part: part not in (".", ".."))


@pytest.mark.parametrize(("name", "put"), NAMES, ids=[n for n, _ in NAMES])
def test_names_storage_accepts_are_captioned(service, supabase, hf, caplog, name, put):
    caplog.set_level(logging.INFO, logger="app.pipeline.storage")
    object_id = put(supabase, name, make_image((30, 60, 220)))

    assert "mostly blue" in wait_for_caption(supabase.db_url, object_id)["caption"]
    assert len(hf.calls) == 1
    assert ("cannot be signed; authenticated download" in caplog.text) == bool(unsignable(name))
    assert "storage refused its signed URL" not in caplog.text  # the signed way, when taken, works
    assert ("sign", 200) in supabase.calls or unsignable(name)


def test_property_every_accepted_name_is_fetched_byte_for_byte(supabase, hf):
    create_bucket(supabase.db_url, "images")
    counter = itertools.count()

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        st.lists(SEGMENT, min_size=1, max_size=6)
        .map("/".join)
        .filter(lambda name: name.strip("/") != "" and len(name) < 200)
    )
    def check(name: str) -> None:
        data = make_image((next(counter) % 256, 10, 10))
        upload_tus(supabase, name, data, upsert=True)
        supabase.calls.clear()
        got, refused = asyncio.run(_fetch(supabase, service_settings(supabase, hf), name))
        assert got == data
        assert not refused  # a signed URL, when the fetcher takes one, verifies
        assert (("sign", 200) in supabase.calls) == (unsignable(name) is None)

    check()


async def _fetch(supabase, settings: Settings, name: str) -> tuple[bytes, bool]:
    """The worker's fetch, with the service's client and key as configured."""
    async with httpx.AsyncClient() as http:
        fetcher = ObjectFetcher.from_settings(await connect_supabase(settings, http), settings)
        try:
            data = await fetcher.fetch("images", name)
        finally:
            await fetcher.aclose()
    return data, ("download", 400) in supabase.calls


def test_a_refused_signed_url_falls_back_to_the_authenticated_download(
    service, supabase, hf, caplog
):
    caplog.set_level(logging.INFO, logger="app.pipeline.storage")
    refusal = {
        "statusCode": "400",
        "code": "InvalidSignature",
        "error": "InvalidSignature",
        "message": "The url do not match the signature",
    }
    supabase.faults.add("download", 400, body=refusal)

    object_id = upload(supabase, "plain.png", make_image((30, 160, 60)))

    assert "mostly green" in wait_for_caption(supabase.db_url, object_id)["caption"]
    assert "storage refused its signed URL (InvalidSignature)" in caplog.text
    assert [call for call in supabase.calls if call[0] == "download"] == [
        ("download", 400),
        ("download", 200),
    ]
