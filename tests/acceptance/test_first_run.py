"""What a newcomer gets from `make run` with no configuration: `captioner serve` with nothing
set serves the page and the API with the local model, and says the bucket pipeline is not
connected (and what connects it). The tiny BLIP stands in for the default model."""

import os
import re
from pathlib import Path

import httpx
import pytest

from app.core.config import NOT_CONNECTED
from tests.service_process import ServiceProcess
from tests.support import make_image


def bare_env(**values: str) -> dict[str, str]:
    """A shell's environment and nothing else: no Supabase, no Hugging Face token."""
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    # MAX_NEW_TOKENS: the tiny random model writes a few words, as in test_cli
    fixed = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "MAX_NEW_TOKENS": "5"}
    return {**env, **fixed, **values}


@pytest.fixture
def serve(tmp_path: Path):
    started: list[ServiceProcess] = []

    def start(ready_path: str = "/readyz", **values: str) -> ServiceProcess:
        process = ServiceProcess(bare_env(**values), tmp_path / "serve.log", ready_path=ready_path)
        started.append(process)
        return process.start(timeout=90)

    yield start
    for process in started:
        process.stop()


def caption(url: str, **headers: str) -> httpx.Response:
    files = {"image": ("red.png", make_image((220, 30, 30), size=(120, 80)), "image/png")}
    return httpx.post(url + "/v1/captions", files=files, headers=headers, timeout=60)


def test_no_configuration_serves_the_page_and_the_api_with_the_local_model(serve, tiny_blip):
    service = serve(LOCAL_MODEL=str(tiny_blip))

    assert f"web page: {service.url}/ui/" in service.log
    assert NOT_CONNECTED in service.log  # one line: what is missing, what connects it
    assert "is not here yet" not in service.log
    ready = httpx.get(service.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"supabase": NOT_CONNECTED, "captioner": "ok"}
    page = httpx.get(service.url + "/ui/", timeout=30)
    assert page.status_code == 200 and "gradio" in page.text.lower()
    answer = caption(service.url)  # no key exists yet: a local demo
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == str(tiny_blip) and answer.json()["caption"]
    assert httpx.post(service.url + "/webhooks/storage", json={}).status_code == 404
    assert httpx.get(service.url + "/metrics").status_code == 200


def test_a_missing_model_is_a_readiness_message_not_a_crash(serve, tmp_path):
    missing = tmp_path / "no-model-here"
    service = serve(ready_path="/healthz", LOCAL_MODEL=str(missing), UI_ENABLED="false")

    assert f"the local model {missing} is not here yet: `make model`" in service.log
    ready = httpx.get(service.url + "/readyz", timeout=30)
    assert ready.status_code == 503
    reason = ready.json()["checks"]["captioner"]
    assert re.search(r"is not available: directory .*no-model-here does not exist", reason)
    assert "HF_TOKEN" in reason  # and how to provide one
    answer = caption(service.url)
    assert answer.status_code == 503 and "not available" in answer.json()["detail"]
    assert service.alive


def test_an_api_key_is_required_once_one_is_set(serve, tiny_blip):
    service = serve(LOCAL_MODEL=str(tiny_blip), API_KEYS="local-key-0123", UI_ENABLED="false")

    assert caption(service.url).status_code == 401
    assert caption(service.url, Authorization="Bearer local-key-0123").status_code == 200
