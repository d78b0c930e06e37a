"""The Gradio page at /ui, driven by a real headless Chromium (Debian's, through Playwright)."""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.api.ui import example_images
from tests.support import make_image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
USER, PASSWORD = "alice", "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: run scripts/install-browser.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def caption_box(page: Page):
    return page.get_by_label("Caption")


def notice(page: Page):
    return page.locator("#notice")


def failed_requests(page: Page) -> list[str]:
    """Every request of the page answered 4xx/5xx, as it happens."""
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return failed


def missing_model_service(service_factory):
    """No token, the local backend, and its model not fetched (a fresh machine offline)."""
    return service_factory(
        webhook=False,
        worker_enabled=False,
        ui_public=True,
        hf_token=None,
        caption_backend="auto",
        caption_model="",
        local_model="captioner-tests/never-fetched",
    )


def upload_and_submit(page: Page, path: Path) -> None:
    page.locator("input[type=file]").first.set_input_files(str(path))
    expect(page.locator("img").first).to_be_visible(timeout=15_000)
    page.get_by_role("button", name="Submit").click()


def test_upload_shows_the_caption(service_factory, hf, page: Page, tmp_path: Path):
    running = service_factory(webhook=False, worker_enabled=False, ui_public=True)
    picture = tmp_path / "green.png"
    picture.write_bytes(make_image((30, 160, 60), size=(300, 200)))

    page.goto(running.url + "/ui/")
    expect(page.get_by_text("Image Captioning with BLIP")).to_be_visible(timeout=30_000)
    upload_and_submit(page, picture)

    expect(caption_box(page)).to_have_value("a 300x200 picture, mostly green", timeout=30_000)
    expect(page.get_by_label("Alt text")).to_have_value("a 300x200 picture, mostly green")
    expect(page.get_by_label("Tags")).to_have_value(re.compile(r"^\(not filled by .+\)$"))
    assert len(hf.calls) == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-upload.png"), full_page=True)


def test_an_example_can_be_captioned(service_factory, hf, page: Page):
    assert [path.name for path in example_images()] == ["house.jpg", "sailboat.jpg", "tree.jpg"]
    assert all(path.stat().st_size < 30_000 for path in example_images())
    running = service_factory(webhook=False, worker_enabled=False, ui_public=True)

    failed = failed_requests(page)
    page.goto(running.url + "/ui/")
    page.locator("img[src*='house']").click()
    preview = page.get_by_test_id("image").locator("img[src*='house']")
    expect(preview).to_be_visible(timeout=15_000)  # the example in the upload box
    page.wait_for_function("img => img.complete", arg=preview.element_handle(), timeout=15_000)
    assert preview.evaluate("img => img.naturalWidth") == 384, preview.get_attribute("src")
    page.get_by_role("button", name="Submit").click()

    expect(caption_box(page)).to_have_value(
        re.compile(r"^a 384x288 picture, mostly \w+$"), timeout=30_000
    )
    assert failed == []


def test_a_bad_file_shows_the_reason(service_factory, hf, page: Page, tmp_path: Path, monkeypatch):
    # Pillow's bomb guard is process-wide (app/core/images.py): the next tests get it back
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    running = service_factory(
        webhook=False, worker_enabled=False, ui_public=True, max_image_pixels=1000
    )
    picture = tmp_path / "big.png"
    picture.write_bytes(make_image(size=(100, 100)))

    page.goto(running.url + "/ui/")
    upload_and_submit(page, picture)

    expect(notice(page)).to_contain_text("MAX_IMAGE_PIXELS=1000", timeout=30_000)
    assert hf.calls == []


def test_the_page_says_the_model_is_missing_before_any_click(service_factory, page: Page, caplog):
    running = missing_model_service(service_factory)

    page.goto(running.url + "/ui/")
    expect(notice(page)).to_contain_text("is not here yet", timeout=30_000)
    expect(notice(page)).to_contain_text("captioner fetch-model")
    expect(notice(page)).not_to_contain_text("huggingface-cli")
    page.locator("img[src*='house']").click()
    page.get_by_role("button", name="Submit").click()

    expect(notice(page)).to_contain_text("No caption: ", timeout=30_000)
    expect(notice(page)).to_contain_text("captioner fetch-model")
    expect(page.locator(".toast-body")).to_have_count(0)  # the reason stays, no toast only
    logged = [r for r in caplog.records if r.name == "app.api.ui"]
    assert [r.levelname for r in logged] == ["WARNING"] and "not here yet" in logged[0].message


def test_submit_without_an_image_says_so_and_logs_no_traceback(
    service_factory, hf, page: Page, capfd
):
    running = service_factory(webhook=False, worker_enabled=False, ui_public=True)

    page.goto(running.url + "/ui/")
    expect(page.get_by_text("Image Captioning with BLIP")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Submit").click()

    expect(notice(page)).to_contain_text("Upload an image first", timeout=30_000)
    assert "Traceback" not in "".join(capfd.readouterr())
    assert hf.calls == []


def test_the_root_leads_to_the_page_and_no_panel_asks_for_what_is_not_served(
    service_factory, hf, page: Page
):
    running = service_factory(webhook=False, worker_enabled=False, ui_public=True)
    failed = failed_requests(page)

    page.goto(running.url + "/")
    expect(page.get_by_text("Image Captioning with BLIP")).to_be_visible(timeout=30_000)
    assert page.url == running.url + "/ui/"
    expect(page.get_by_text("Use via API")).to_have_count(0)
    page.goto(running.url + "/ui/?view=api")  # the panel's own deep link
    expect(page.get_by_text("Image Captioning with BLIP")).to_be_visible(timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert failed == []


def test_basic_auth_guards_the_page(service_factory, browser: Browser):
    running = service_factory(
        webhook=False, worker_enabled=False, ui_username=USER, ui_password=PASSWORD
    )

    refused = httpx.get(running.url + "/ui/")
    wrong = httpx.get(running.url + "/ui/config", auth=(USER, "guess"))
    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic ")
    assert httpx.get(running.url + "/healthz").status_code == 200

    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page = context.new_page()
    response = page.goto(running.url + "/ui/")
    assert response is not None and response.status == 200
    expect(page.get_by_text("Image Captioning with BLIP")).to_be_visible(timeout=30_000)
    context.close()
