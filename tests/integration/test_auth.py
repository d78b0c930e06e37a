"""Safe by default: with the pipeline connected, the web page needs credentials unless the
operator opens it on purpose (UI_PUBLIC=true); the API always needs its key then."""

import httpx

from app.api.auth import UI_LOCKED_REASON
from tests.support import TEST_SECRET, make_image

USER, PASSWORD = "alice", "correct horse battery staple"


def test_connected_page_without_credentials_is_locked(service_factory):
    running = service_factory(webhook=False, worker_enabled=False)

    for path in ("/ui", "/ui/", "/ui/config", "/ui/gradio_api/info"):
        answer = httpx.get(running.url + path)
        assert answer.status_code == 403, path
        assert answer.text == UI_LOCKED_REASON
    assert httpx.get(running.url + "/healthz").status_code == 200


def test_ui_public_opens_the_page_on_purpose(service_factory):
    running = service_factory(webhook=False, worker_enabled=False, ui_public=True)

    assert httpx.get(running.url + "/ui/", timeout=30).status_code == 200


def test_credentials_guard_the_page_and_nothing_else_opens_it(service_factory):
    running = service_factory(
        webhook=False, worker_enabled=False, ui_username=USER, ui_password=PASSWORD
    )

    assert httpx.get(running.url + "/ui/").status_code == 401
    bearer = {"Authorization": f"Bearer {TEST_SECRET}"}  # the API key is not a page login
    assert httpx.get(running.url + "/ui/", headers=bearer).status_code == 401
    assert httpx.get(running.url + "/ui/", auth=(USER, PASSWORD), timeout=30).status_code == 200


def test_connected_api_needs_its_key(service_factory):
    running = service_factory(webhook=False, worker_enabled=False, ui_enabled=False)
    files = {"image": ("red.png", make_image(), "image/png")}

    assert httpx.post(running.url + "/v1/captions", files=files).status_code == 401
    assert httpx.get(running.url + "/metrics").status_code == 401
    assert httpx.get(running.url + "/openapi.json").status_code == 401
