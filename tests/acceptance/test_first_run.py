"""What a newcomer gets from `make run` with no configuration: `captioner fetch-model` puts the
default local model in the Hugging Face cache (or says in one line that the Hub cannot be
reached), then `captioner serve` with nothing set serves the page and the API with the local
model, and says the bucket pipeline is not connected (and what connects it). A tiny Florence-2
stands in for the default model, served by a stand-in Hub (tests/harness/hf_stub.py)."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.core.config import DEFAULT_LOCAL_MODEL, NOT_CONNECTED
from tests.acceptance.test_ui import ARTIFACTS, browser, notice  # noqa: F401  (its Chromium)
from tests.harness.hf_stub import HuggingFaceStandIn
from tests.harness.waiting import wait_until
from tests.service_process import ServiceProcess, free_port
from tests.support import make_image


def bare_env(**values: str) -> dict[str, str]:
    """A shell's environment and nothing else: no Supabase, no Hugging Face token."""
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    # MAX_NEW_TOKENS: the tiny random model writes a few words, as in test_cli
    fixed = {
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "MAX_NEW_TOKENS": "5",
        "DESCRIBE_MAX_TOKENS": "5",  # a tiny random Florence-2 would write 512 for each task
    }
    return {**env, **fixed, **values}


def fetch_model(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    """`captioner fetch-model` as `make run` runs it first, online (no HF_HUB_OFFLINE)."""
    env = {k: v for k, v in bare_env(**values).items() if k != "HF_HUB_OFFLINE"}
    command = [sys.executable, "-m", "app.commands.cli", "fetch-model"]
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def in_a_terminal(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """(exit code, what a 120-column terminal shows): progress bars draw only on a tty."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the process has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=120), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def hub(tiny_florence: Path) -> Iterator[HuggingFaceStandIn]:
    """A stand-in Hub holding the default local model: the tiny Florence-2's files, and the
    copies of its weights for other frameworks that real repositories carry (never needed)."""
    files = {path.name: path.read_bytes() for path in tiny_florence.iterdir() if path.is_file()}
    files |= {"pytorch_model.bin": b"pickled copy", "tf_model.h5": b"tensorflow copy"}
    with HuggingFaceStandIn() as standin:
        standin.add_model(DEFAULT_LOCAL_MODEL, files=files)
        yield standin


@pytest.fixture
def serve(tmp_path: Path):
    started: list[ServiceProcess] = []

    def start(ready_path: str = "/readyz", **values: str) -> ServiceProcess:
        log = tmp_path / f"serve-{len(started)}.log"
        process = ServiceProcess(bare_env(**values), log, ready_path=ready_path)
        if "HOST" in values:  # where to listen from the environment, as in the image
            at = process.command.index("--host")
            del process.command[at : at + 2]
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

    assert f"the local model {missing} is not here yet: set LOCAL_MODEL" in service.log

    def settled() -> httpx.Response | None:  # "loading" until the load begun at start fails
        answer = httpx.get(service.url + "/readyz", timeout=30)
        return None if answer.json()["checks"]["captioner"] == "loading" else answer

    ready = wait_until(settled, timeout=30, message="the local model's load never finished")
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


def test_make_run_fetches_the_model_with_progress_then_the_page_captions_an_example(
    serve, hub, tmp_path: Path, tab: Page
):
    hf_home = str(tmp_path / "hf-home")
    env = {**bare_env(HF_ENDPOINT=hub.url, HF_HOME=hf_home)}
    del env["HF_HUB_OFFLINE"]
    command = [sys.executable, "-m", "app.commands.cli", "fetch-model"]
    code, shown = in_a_terminal(command, env, tmp_path)

    assert code == 0, shown
    assert f"{DEFAULT_LOCAL_MODEL} is in the Hugging Face cache" in shown
    assert re.search(r"Fetching 6 files: 100%\|█+\| 6/6", shown), shown  # huggingface_hub's bars
    assert "Downloading bytes: " in shown
    downloaded = {name.removeprefix(DEFAULT_LOCAL_MODEL + "/") for name in hub.downloads}
    assert "model.safetensors" in downloaded and "config.json" in downloaded
    assert not downloaded & {"pytorch_model.bin", "tf_model.h5"}  # safetensors are enough
    service = serve(HF_HOME=hf_home)  # offline from here: the service never downloads
    assert "is not here yet" not in service.log

    tab.goto(service.url + "/")
    expect(tab.get_by_text("Image Captioning with Florence-2-base")).to_be_visible(timeout=30_000)
    tab.locator("img[src*='house']").click()
    tab.get_by_role("button", name="Submit").click()
    expect(tab.get_by_label("Caption")).not_to_have_value("", timeout=60_000)
    expect(notice(tab)).to_have_text("")
    assert len(hub.downloads) == len(downloaded) == 6  # each file once
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ui.png"), full_page=True)


def test_offline_make_run_says_so_in_one_line_and_the_page_says_it_too(
    serve, tmp_path: Path, tab: Page
):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: the Hub cannot be reached
    hf_home = str(tmp_path / "hf-home")
    fetched = fetch_model(tmp_path, HF_ENDPOINT=nowhere, HF_HOME=hf_home)

    assert fetched.returncode == 1
    assert fetched.stdout == ""
    [line] = fetched.stderr.splitlines()
    assert line.startswith(f"captioner: could not fetch the local model {DEFAULT_LOCAL_MODEL}: ")
    assert f"{nowhere} (HF_ENDPOINT) cannot be reached" in line
    assert "the service starts without it" in line
    service = serve(ready_path="/healthz", HF_HOME=hf_home)
    assert f"the local model {DEFAULT_LOCAL_MODEL} is not here yet" in service.log

    tab.goto(service.url + "/ui/")
    expect(notice(tab)).to_contain_text("is not here yet", timeout=30_000)
    expect(notice(tab)).to_contain_text("captioner fetch-model")
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ui-model-missing.png"), full_page=True)


def test_on_any_other_address_nothing_is_open_without_credentials(serve, tiny_blip):
    exposed = serve(ready_path="/healthz", HOST="0.0.0.0", LOCAL_MODEL=str(tiny_blip))

    page, api = exposed.log.split("captioner: ")[1:3]
    assert page.startswith(f"web page: {exposed.url}/ui/ is locked: the web page needs ")
    assert "non-loopback address (HOST=0.0.0.0): set UI_USERNAME and UI_PASSWORD" in page
    assert api.startswith(f"API: POST {exposed.url}/v1/captions is locked: the API needs a key")
    assert "set API_KEYS" in api and "API_PUBLIC=true" in api
    refused = caption(exposed.url)
    assert refused.status_code == 403 and "set API_KEYS" in refused.json()["detail"]
    for path in ("/metrics", "/openapi.json"):
        assert httpx.get(exposed.url + path).status_code == 403
    locked_page = httpx.get(exposed.url + "/ui/")
    assert locked_page.status_code == 403 and "UI_USERNAME" in locked_page.text

    guarded = serve(
        HOST="0.0.0.0",
        LOCAL_MODEL=str(tiny_blip),
        API_KEYS="key-0123456789",
        UI_USERNAME="alice",
        UI_PASSWORD="correct horse",
    )
    assert "is locked" not in guarded.log
    assert caption(guarded.url, Authorization="Bearer key-0123456789").status_code == 200
    assert httpx.get(guarded.url + "/ui/", auth=("alice", "correct horse")).status_code == 200
