"""A captioner on a bad day (issue 15): the answers real providers give, one test per measured
case. Each failed before the change: junk for one image looped forever, a hang or an empty
model burned the backlog, odd captions failed the write, an outage re-sent every job each
round, and the refusal advised what was already set."""

import io
import logging

import httpx
import pytest
from PIL import Image

from app.captioning.routes import resolve_route
from app.core.config import CaptionSettings
from app.core.errors import ConfigurationError
from tests.harness.hf_stub import Answer, BadBody, Hang, Loading
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.support import (
    TEST_SECRET,
    caption_of,
    job_of,
    make_image,
    upload,
    wait_for_caption,
    wait_for_job_state,
)

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}
VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


def size_of(call: dict) -> tuple[int, int] | None:
    """The size of the image an image-to-text call sent (None: not an image)."""
    try:
        with Image.open(io.BytesIO(call["body"])) as image:
            return image.size
    except OSError:
        return None


def calls_for(hf, size: tuple[int, int]) -> int:
    return sum(1 for call in list(hf.calls) if size_of(call) == size)


def upload_sized(supabase, width: int, tag: str = "img") -> str:
    return upload(supabase, f"{tag}-{width}.png", make_image(size=(width, 48)))


def states(supabase, ids: list[str]) -> list[str]:
    return [(job_of(supabase.db_url, object_id) or {}).get("state", "?") for object_id in ids]


@pytest.fixture
def bucket(supabase, pgnet) -> None:
    create_bucket(supabase.db_url, "images")


@pytest.mark.parametrize("body", [b"[]", b"{}"])
def test_junk_for_one_image_fails_that_image_and_never_pauses(
    service_factory, bucket, supabase, hf, body
):
    """Case 1: a 200 the client cannot parse, for one image only, while the probe image
    captions: the image's problem (retried once, then failed), never a pause."""
    service = service_factory()
    hf.by_size[(65, 48)] = BadBody(body)
    bad = upload_sized(supabase, 65, "junk")
    good = [upload_sized(supabase, width) for width in (61, 62)]

    job = wait_for_job_state(supabase.db_url, bad, "failed")

    assert "not a valid image-to-text answer" in job["last_error"]
    assert job["attempts"] == 2
    assert calls_for(hf, (65, 48)) == 2
    for object_id in good:
        wait_for_caption(supabase.db_url, object_id)
    assert httpx.get(service.url + "/readyz").status_code == 200
    paused = service.app.state.runtime.worker.paused
    assert paused is None


def test_a_hanging_captioner_pauses_instead_of_failing_the_backlog(
    service_factory, bucket, supabase, hf
):
    """Case 2: every call hangs past CAPTION_TIMEOUT, the probe too: the captioner is away.
    No job fails, none is charged an attempt; when it answers again all are captioned."""
    service_factory(caption_timeout=0.3, max_attempts=2, retry_max_seconds=0.4)
    hf.outage = Hang(0.6)
    ids = [upload_sized(supabase, width, "hang") for width in (61, 62, 63)]

    wait_until(
        lambda: "failed" in states(supabase, ids) or len(hf.calls) >= 9,
        timeout=30,
        message="the hanging captioner was never called again",
    )

    jobs = [job_of(supabase.db_url, object_id) for object_id in ids]
    assert all(job["state"] in ("pending", "running") for job in jobs), jobs
    hf.outage = None
    for object_id in ids:
        wait_for_caption(supabase.db_url, object_id)
    assert all(job_of(supabase.db_url, oid)["attempts"] == 1 for oid in ids)


def test_a_timeout_on_one_image_while_the_probe_captions_counts_for_that_job(
    service_factory, bucket, supabase, hf
):
    """A timeout on one image while the probe captions: transient for that job (counted),
    no pause; the others are captioned meanwhile."""
    service = service_factory(caption_timeout=0.3)
    hf.by_size[(65, 48)] = Hang(0.6)
    slow = upload_sized(supabase, 65, "slow")
    others = [upload_sized(supabase, width) for width in (61, 62)]

    job = wait_for_job_state(supabase.db_url, slow, "failed", timeout=30)

    assert job["attempts"] == 6 and "timed out" in job["last_error"]
    for object_id in others:
        assert job_of(supabase.db_url, object_id)["attempts"] == 1
        wait_for_caption(supabase.db_url, object_id)
    assert service.app.state.runtime.worker.health.problem is None


def test_a_model_that_answers_empty_captions_pauses_for_configuration(
    service_factory, bucket, supabase, hf
):
    """Case 3: empty captions for every image and for the probe: a configuration pause
    naming the setting, jobs kept with their attempts; resumes when the model answers."""
    service = service_factory()
    hf.outage = Answer("")
    ids = [upload_sized(supabase, width, "empty") for width in (61, 62)]

    def paused() -> httpx.Response | None:
        response = httpx.get(service.url + "/readyz")
        return response if response.status_code == 503 else None

    reason = wait_until(paused, timeout=15, message="never paused").json()["checks"]["captioner"]
    assert "the model returns empty captions" in reason and "(change CAPTION_MODEL" in reason

    def refunded() -> bool:  # the pause comes first, then each job is given back
        return all(job_of(supabase.db_url, oid)["attempts"] == 0 for oid in ids)

    wait_until(refunded, timeout=10, message="jobs kept an attempt while paused")
    assert "failed" not in states(supabase, ids)
    hf.outage = None
    for object_id in ids:
        wait_for_caption(supabase.db_url, object_id)


def test_an_empty_caption_for_one_image_is_retried_once(service_factory, bucket, supabase, hf):
    """Case 3, one image: the probe captions, so the empty answer is that image's problem."""
    service_factory()
    hf.by_size[(65, 48)] = Answer("  \n ")
    object_id = upload_sized(supabase, 65, "blank")

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert job["attempts"] == 2 and "empty caption" in job["last_error"]
    assert calls_for(hf, (65, 48)) == 2


def test_captions_are_normalised_before_they_are_written_and_logged(
    service_factory, bucket, supabase, hf, caplog
):
    """Case 4: NUL, a lone surrogate, runs of whitespace and a 5 MB caption are written
    cleaned and capped (CAPTION_MAX_CHARS), each in one attempt; no log line quotes it all."""
    caplog.set_level(logging.INFO, logger="app")
    service_factory()
    answers = {
        61: ("a dog\x00 on a\tbeach", "a dog on a beach"),
        62: ("a cat \ud800 on\n\n  a mat ", "a cat on a mat"),
        63: ("word " * 1_000_000, ("word " * 200).strip()),
    }
    for width, (answer, _) in answers.items():
        hf.by_size[(width, 48)] = Answer(answer)
    ids = {width: upload_sized(supabase, width, "odd") for width in answers}

    for width, (_, expected) in answers.items():
        row = wait_for_caption(supabase.db_url, ids[width])
        assert row["caption"] == expected
        assert job_of(supabase.db_url, ids[width])["attempts"] == 1
    assert len(caption_of(supabase.db_url, ids[63])["caption"]) <= 1000
    assert max(len(record.getMessage()) for record in caplog.records) < 1000


def test_the_api_answers_a_normalised_caption(service_factory, bucket, hf):
    service = service_factory()
    hf.outage = Answer("two\x00  dogs\ud800")

    response = httpx.post(
        service.url + "/v1/captions",
        headers=AUTH,
        files={"image": ("dogs.png", make_image(), "image/png")},
    )

    assert response.status_code == 200 and response.json()["caption"] == "two dogs"


def test_an_outage_is_probed_once_a_round_not_with_every_job(service_factory, bucket, supabase, hf):
    """Case 5: while the captioner is away, one probe per round; the jobs are sent again
    only after a probe succeeds."""
    service_factory(retry_max_seconds=0.3)
    hf.outage = Loading(estimated_time=0.05)
    ids = [upload_sized(supabase, width, "outage") for width in (61, 62, 63)]

    def sent() -> list[int]:
        return [calls_for(hf, (width, 48)) for width in (61, 62, 63)]

    wait_until(lambda: len(hf.calls) >= 6, timeout=30, message="the captioner was not probed")
    before = sent()
    assert max(before) <= 1, f"jobs re-sent during the outage: {before}"
    wait_until(lambda: len(hf.calls) >= 12, timeout=30, message="probing stopped")
    assert sent() == before, f"jobs re-sent during the outage: {sent()}"
    hf.outage = None
    for object_id in ids:
        wait_for_caption(supabase.db_url, object_id)
    assert sent() == [count + 1 for count in before]


def test_the_refusal_names_only_alternatives_not_already_configured(hf):
    """Case 6: with CAPTION_BACKEND=chat set, the refusal does not advise setting it."""
    hf.add_model(VLM, {})
    settings = CaptionSettings(
        _env_file=None,  # type: ignore[call-arg]
        hf_token="hf_test_token",
        caption_backend="chat",
        caption_model=VLM,
        hf_endpoint=hf.url,
        hf_router_url=hf.url,
    )
    import asyncio

    with pytest.raises(ConfigurationError) as refused:
        asyncio.run(resolve_route(settings))

    reason = refused.value.reason
    assert "CAPTION_BACKEND=chat" not in reason
    assert f"CAPTION_MODEL={VLM}" not in reason
    assert "Inference Endpoint URL" in reason and "CAPTION_BACKEND=local" in reason
