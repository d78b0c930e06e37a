"""The operators' gallery at /ui/gallery, in a real headless Chromium against the harness:
thumbnails from storage's image transformation, search, counts, failures queued again."""

import io
import uuid
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from supabase import create_client

from app.api.ui import build_interface, example_images
from app.core.config import Settings
from tests.acceptance.test_ui import ARTIFACTS, browser  # noqa: F401  (the module's Chromium fixture)
from tests.harness.hf_stub import ServerError
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.support import (
    caption_of,
    make_image,
    query,
    query_one,
    storage_client,
    upload,
    wait_for_caption,
    wait_for_job_state,
)
from tests.support import object_id as object_id_of

USER, PASSWORD = "operator", "gallery password 0123"


@pytest.fixture
def gallery(service_factory, supabase, pgnet):
    """The service with the pipeline connected and the web page behind Basic auth."""
    create_bucket(supabase.db_url, "images")
    return service_factory(ui_username=USER, ui_password=PASSWORD)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        http_credentials={"username": USER, "password": PASSWORD},
    )
    yield context.new_page()
    context.close()


def cards(page: Page):
    return page.locator("#grid .card")


def loaded_thumbnails(page: Page) -> list[dict]:
    return page.locator("#grid img").evaluate_all(
        "imgs => imgs.map(i => ({src: i.src, done: i.complete, width: i.naturalWidth,"
        " height: i.naturalHeight}))"
    )


def test_gallery_shows_thumbnails_captions_and_search_narrows_it(gallery, supabase, hf, page):
    hf.script(ServerError(400, "the model could not read this image"))
    broken = upload(supabase, "photos/unreadable.jpg", make_image((90, 90, 90), (320, 240), "JPEG"))
    wait_for_job_state(supabase.db_url, broken, "failed")
    ids = {
        path.stem: upload(supabase, f"drawings/{path.name}", path.read_bytes(), "image/jpeg")
        for path in example_images()
    }
    ids["red"] = upload(supabase, "photos/red.jpg", make_image((200, 30, 30), (640, 480), "JPEG"))
    for object_id in ids.values():
        wait_for_caption(supabase.db_url, object_id)
    notes = upload(supabase, "notes/readme.txt", b"not a picture", "text/plain")
    storage_client(supabase).storage.from_("images").copy("drawings/house.jpg", "copies/house.jpg")
    copy = object_id_of(supabase, "images", "copies/house.jpg")
    wait_for_caption(supabase.db_url, copy)
    reuse = query_one(
        supabase.db_url, "select source_id from captioner.caption_reuses where object_id = %s", copy
    )  # the row itself does not name it
    assert reuse and str(reuse["source_id"]) == ids["house"]

    page.goto(gallery.url + "/ui/gallery")

    expect(cards(page)).to_have_count(5, timeout=15_000)
    expect(page.locator("#grid")).to_contain_text("a 512x384 picture, mostly red")  # as sent
    expect(page.locator("#grid")).to_contain_text("drawings/sailboat.jpg")
    expect(cards(page).first).to_contain_text("copies/house.jpg")
    expect(cards(page).first.locator(".badge")).to_have_text("reused")
    expect(page.locator("#grid .badge")).to_have_count(1)
    expect(page.locator("#counts [data-state=done] b")).to_have_text("5")
    expect(page.locator("#counts [data-state=failed] b")).to_have_text("1")
    expect(page.locator("#counts [data-state=skipped] b")).to_have_text("1")
    expect(page.locator("#failures")).to_contain_text("the model could not read this image")
    skipped = page.locator(f"#skipped tr[data-id='{notes}']")
    expect(skipped).to_contain_text("notes/readme.txt")
    expect(skipped).to_contain_text("not an image (text/plain)")
    expect(page.get_by_role("link", name="Caption an image")).to_have_attribute("href", "/ui/")
    thumbs = wait_until(
        lambda: (t := loaded_thumbnails(page)) and all(i["done"] and i["width"] for i in t) and t,
        message="thumbnails never loaded",
    )
    # small renditions signed by storage, fetched by the browser from storage itself
    assert all(i["src"].startswith(supabase.url + "/storage/v1/render/image/sign/") for i in thumbs)
    assert {(i["width"], i["height"]) for i in thumbs} == {(240, 240)}

    search = page.get_by_label("Search captions")
    search.fill("red")
    expect(cards(page)).to_have_count(1)
    expect(cards(page).first).to_have_attribute("data-id", ids["red"])
    search.fill("gray pictures")
    expect(cards(page)).to_have_count(4)
    expect(page.locator("#grid .badge")).to_have_count(1)  # provenance in search results too
    expect(page.locator("#grid")).not_to_contain_text("mostly red")
    search.fill('"unbalanced & | ! ( quotes')
    expect(page.locator("#grid")).to_contain_text("No caption matches")
    search.fill("")
    expect(cards(page)).to_have_count(5)

    upload(supabase, "photos/late.png", make_image((240, 220, 40), (320, 240)))
    expect(cards(page)).to_have_count(6, timeout=15_000)  # refreshed without a reload
    expect(cards(page).first).to_contain_text("mostly yellow")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)


def test_a_failed_job_is_queued_again_from_the_gallery_and_captioned(gallery, supabase, hf, page):
    hf.script(ServerError(400, "the model could not read this image"))
    object_id = upload(supabase, "photos/unlucky.png", make_image((30, 60, 220), (320, 240)))
    wait_for_job_state(supabase.db_url, object_id, "failed")

    page.goto(gallery.url + "/ui/gallery")
    failure = page.locator(f"#failures tr[data-id='{object_id}']")
    expect(failure).to_contain_text("photos/unlucky.png")
    expect(failure).to_contain_text("the model could not read this image")
    expect(page.locator("#counts [data-state=failed] b")).to_have_text("1")
    expect(cards(page)).to_have_count(0)

    failure.get_by_role("button", name="Queue again").click()

    expect(cards(page)).to_have_count(1, timeout=15_000)
    expect(cards(page).first).to_contain_text("a 320x240 picture, mostly blue")
    expect(page.locator("#failures")).to_contain_text("No failures.")
    first = caption_of(supabase.db_url, object_id)
    assert first["caption"] == "a 320x240 picture, mostly blue"

    cards(page).first.get_by_role("button", name="Re-caption").click()  # on demand

    wait_until(
        lambda: caption_of(supabase.db_url, object_id)["updated_at"] > first["updated_at"],
        message="the Re-caption button did not caption the image again",
    )
    assert len([call for call in hf.calls if call["status"] == 200]) == 2


def test_recaption_queues_other_models_captions_and_keeps_them_until_replaced(
    gallery, supabase, hf
):
    old = upload(supabase, "a/old.png", make_image())
    other = upload(supabase, "b/other.png", make_image())
    for object_id in (old, other):
        wait_for_caption(supabase.db_url, object_id)
    query(
        supabase.db_url,
        "update public.image_caption set model = 'old-model', caption = 'old words'",
    )
    auth = (USER, PASSWORD)
    url = gallery.url + "/ui/gallery/recaption"

    answer = httpx.post(url, json={"bucket": "images", "prefix": "a/"}, auth=auth)

    assert answer.status_code == 200 and answer.json()["queued"] == 1
    assert answer.json()["model"] == gallery.settings.caption_model
    new = wait_until(
        lambda: (row := caption_of(supabase.db_url, old))["model"] != "old-model" and row,
        message="never re-captioned",
    )
    assert new["caption"] == "a 64x48 picture, mostly red"
    assert caption_of(supabase.db_url, other)["caption"] == "old words"  # outside the prefix


def test_recaption_describes_the_images_in_a_language_added_since(service_factory, supabase, pgnet):
    create_bucket(supabase.db_url, "images")
    first = service_factory()  # CAPTION_LANGUAGES=en
    object_id = upload(supabase, "a/one.png", make_image())
    wait_for_caption(supabase.db_url, object_id)
    first.stop()
    gallery = service_factory(
        ui_username=USER, ui_password=PASSWORD, caption_languages=["en", "de"]
    )
    url = gallery.url + "/ui/gallery/recaption"

    answer = httpx.post(url, json={"bucket": "images"}, auth=(USER, PASSWORD))

    assert answer.status_code == 200 and answer.json()["queued"] == 1
    wait_until(
        lambda: query_one(
            supabase.db_url,
            "select 1 from public.image_description where id = %s and language = 'de'",
            object_id,
        ),
        message="never described in German",
    )
    wait_for_job_state(supabase.db_url, object_id, "done")
    again = httpx.post(url, json={"bucket": "images"}, auth=(USER, PASSWORD))
    assert again.json()["queued"] == 0


def test_gallery_is_behind_the_pages_credentials_and_refuses_cross_site_actions(gallery, supabase):
    base = gallery.url + "/ui/gallery"
    for path in ("", "/data"):
        assert httpx.get(base + path).status_code == 401
    assert httpx.post(base + "/requeue", json={"object_ids": ["x"]}).status_code == 401
    auth = (USER, PASSWORD)
    assert httpx.get(base + "/data?bucket=secret", auth=auth).status_code == 400
    form = httpx.post(base + "/requeue", data={"object_ids": "x"}, auth=auth)
    assert form.status_code == 415
    cross = httpx.post(
        base + "/requeue",
        json={"object_ids": ["00000000-0000-0000-0000-000000000000"]},
        headers={"sec-fetch-site": "cross-site"},
        auth=auth,
    )
    assert cross.status_code == 403
    page = httpx.get(base, auth=auth)
    assert page.status_code == 200 and "Captions gallery" in page.text


def test_thumbnails_come_from_storage_not_through_the_service(gallery, supabase):
    object_id = upload(supabase, "photos/big.jpg", make_image((30, 160, 60), (1600, 1200), "JPEG"))
    wait_for_caption(supabase.db_url, object_id)
    data = httpx.get(gallery.url + "/ui/gallery/data", auth=(USER, PASSWORD)).json()
    thumbnail = data["items"][0]["thumbnail"]

    picture = httpx.get(thumbnail)

    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert len(picture.content) < 20_000
    assert Image.open(io.BytesIO(picture.content)).size == (240, 240)
    again = httpx.get(gallery.url + "/ui/gallery/data", auth=(USER, PASSWORD)).json()
    assert again["items"][0]["thumbnail"] == thumbnail  # reused: the browser's cache holds


def test_gallery_data_lists_watched_buckets_model_and_every_state(gallery, supabase):
    data = httpx.get(gallery.url + "/ui/gallery/data", auth=(USER, PASSWORD)).json()
    assert data["bucket"] == "images" and data["buckets"] == ["images"]
    assert data["model"] == gallery.settings.caption_model
    states = {
        row["state"]
        for row in query(
            supabase.db_url, "select unnest(enum_range(null::captioner.job_state))::text state"
        )
    }
    assert set(data["counts"]) == states
    assert data["items"] == data["failures"] == data["skipped"] == []


def test_only_the_service_may_call_the_gallerys_functions(supabase):
    calls = {
        "caption_gallery_captions": {"p_bucket": "images", "p_limit": 5},
        "caption_gallery_jobs": {"p_bucket": "images", "p_state": "failed", "p_limit": 5},
        "caption_jobs_requeue": {"p_object_ids": [str(uuid.uuid4())]},
        "caption_jobs_recaption": {
            "p_bucket": "images",
            "p_prefix": "",
            "p_model": "m",
            "p_limit": 5,
        },
        "caption_recaption_progress": {"p_bucket": "images", "p_prefix": "", "p_model": "m"},
    }
    for key in (supabase.anon_key, supabase.user_key(str(uuid.uuid4()))):
        client = create_client(supabase.url, key)
        for fn, args in calls.items():
            with pytest.raises(Exception) as denied:
                client.rpc(fn, args).execute()
            assert "permission denied" in str(denied.value), fn
    service = create_client(supabase.url, supabase.service_key)
    assert all(service.rpc(fn, args).execute() for fn, args in calls.items())


def test_the_page_says_when_supabase_does_not_answer(gallery, supabase):
    supabase.faults.add("rpc:caption_jobs_stats", status=500)

    answer = httpx.get(gallery.url + "/ui/gallery/data", auth=(USER, PASSWORD))

    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("Supabase did not answer: APIError")


def test_the_page_links_the_gallery_only_when_the_pipeline_is_connected(gallery):
    connected = build_interface(gallery.settings, echo)
    alone = build_interface(Settings(_env_file=None), echo)  # type: ignore[call-arg]

    assert "captions gallery](gallery)" in connected.description
    assert "gallery" not in alone.description


async def echo(path: str | None) -> str:
    return str(path)


def test_a_thumbnail_storage_cannot_serve_shows_no_preview(gallery, supabase, page):
    # storage accepts "?" in a name but never verifies a URL it signs for one (REFERENCE §6)
    object_id = upload(supabase, "photos/q?x=1.png", make_image((30, 160, 60), (320, 240)))
    wait_for_caption(supabase.db_url, object_id)

    page.goto(gallery.url + "/ui/gallery")

    card = page.locator(f"#grid .card[data-id='{object_id}']")
    expect(card).to_contain_text("mostly green")
    expect(card.locator(".noimg")).to_have_text("no preview")


VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


def test_the_gallery_shows_every_field_and_a_persons_edit_survives_its_recaption(
    service_factory, supabase, hf, pgnet, page
):
    """A vision-language model through the router fills every field, in two languages; an
    operator corrects the alt text in the gallery; the card's Re-caption keeps it."""
    hf.add_model(VLM, {"together": "conversational"})
    hf.text_in_image = "OPEN 9-17"
    create_bucket(supabase.db_url, "images")
    gallery = service_factory(
        ui_username=USER,
        ui_password=PASSWORD,
        caption_backend="chat",
        caption_model=VLM,
        caption_languages=["en", "de"],
    )
    ids = {
        path.stem: upload(supabase, f"drawings/{path.name}", path.read_bytes(), "image/jpeg")
        for path in example_images()
    }
    for object_id in ids.values():
        wait_for_caption(supabase.db_url, object_id)

    page.goto(gallery.url + "/ui/gallery")
    card = page.locator(f"#grid .card[data-id='{ids['house']}']")
    field = lambda name, language="en": card.locator(  # noqa: E731
        f"dd[data-field={name}][data-language={language}]"
    )
    expect(field("text_in_image")).to_have_text("OPEN 9-17", timeout=15_000)
    expect(field("tags").locator(".tag")).to_have_count(2)
    expect(field("description", "de")).to_contain_text("[de] ")
    card.get_by_role("button", name="Edit").click()
    card.get_by_label("Alt text").fill("A small house under a blue sky.")
    card.get_by_role("button", name="Save").click()
    expect(field("alt_text")).to_have_text("A small house under a blue sky.")
    expect(field("alt_text")).to_have_class("person")
    [row] = query(
        supabase.db_url,
        "select sources, updated_at from public.image_description "
        "where id = %s and language = 'en'",
        ids["house"],
    )
    assert row["sources"]["alt_text"]["by"] == f"gallery:{USER}"

    card.get_by_role("button", name="Re-caption").click()
    wait_until(
        lambda: query(
            supabase.db_url,
            "select 1 from public.image_description where id = %s "
            "and language = 'en' and (sources -> 'caption' ->> 'at')::timestamptz > %s",
            ids["house"],
            row["updated_at"],
        ),
        message="never re-captioned",
    )
    page.reload()
    expect(field("alt_text")).to_have_text("A small house under a blue sky.")
    expect(field("text_in_image")).to_have_text("OPEN 9-17")
    wait_until(
        lambda: (t := loaded_thumbnails(page)) and all(i["done"] and i["width"] for i in t),
        message="thumbnails never loaded",
    )
    ARTIFACTS.mkdir(exist_ok=True)  # README's docs/gallery.png
    page.screenshot(path=str(ARTIFACTS / "gallery-descriptions.png"), full_page=True)
