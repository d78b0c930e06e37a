"""The `captioner` command, run for real as a subprocess against the stand-ins."""

import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from app.core.images import EXAMPLES
from tests.harness.postgres import SUPABASE_SQL, apply_sql_file, database_url, drop_database
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.service_process import FAST_ENV, free_port
from tests.support import make_image, query, query_one, upload

CAPTIONER = Path(sys.executable).parent / "captioner"
MIGRATIONS = sorted((Path(__file__).resolve().parents[2] / "migrations").glob("*.sql"))


def clean_env(**values: str) -> dict[str, str]:
    """Only what a shell would have, plus `values`: no settings leak in from the test run."""
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH")  # PYTHONPATH: this checkout's app, not main's
    env = {key: os.environ[key] for key in keep if key in os.environ}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", **values}


def captioner(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CAPTIONER), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


def hf_env(hf, **values: str) -> dict[str, str]:
    return clean_env(
        **{"CAPTION_BACKEND": "hf", "CAPTION_MODEL": f"{hf.url}/models/x", "HF_TOKEN": "x"}
        | stand_in_hub(hf)
        | values
    )


def stand_in_hub(hf) -> dict[str, str]:
    """The Hub and the router are the stand-in: a command never reaches Hugging Face."""
    return {"HF_ENDPOINT": hf.url, "HF_ROUTER_URL": hf.url}


def supabase_env(supabase, hf, **values: str) -> dict[str, str]:
    return hf_env(
        hf,
        SUPABASE_URL=supabase.url,
        SUPABASE_SECRET_KEY=supabase.secret_key,
        WEBHOOK_SECRET="cli-test-secret",
        **FAST_ENV,
        **values,
    )


@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, Path]:
    files = {
        "red.png": make_image((220, 30, 30), size=(120, 80)),
        "blue.jpg": make_image((30, 60, 220), size=(90, 60), fmt="JPEG"),
        "notes.txt": b"plain text, not an image",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_caption_files_with_the_local_model(tiny_blip, pictures, tmp_path):
    env = clean_env(
        CAPTION_BACKEND="local",
        LOCAL_MODEL=str(tiny_blip),
        LOCAL_DEVICE="cpu",
        MAX_NEW_TOKENS="5",
        HF_HUB_OFFLINE="1",
    )

    result = captioner("caption", "red.png", "blue.jpg", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["red.png", "blue.jpg"]
    assert all(line.split("\t")[1].strip() for line in lines)


def test_caption_json_lines_and_a_bad_file(hf, pictures, tmp_path):
    args = ("caption", "--json", "red.png", "notes.txt", "missing.png", "blue.jpg")

    result = captioner(*args, env=hf_env(hf), cwd=tmp_path)

    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["source"] for line in lines] == ["red.png", "notes.txt", "missing.png", "blue.jpg"]
    rows = [line for line in lines if "error" not in line]
    assert [(row["source"], row["caption"]) for row in rows] == [
        ("red.png", "a 120x80 picture, mostly red"),
        ("blue.jpg", "a 90x60 picture, mostly blue"),
    ]
    assert all(row["model"] == f"{hf.url}/models/x" and row["elapsed_ms"] >= 0 for row in rows)
    assert rows[0]["alt_text"] == rows[0]["caption"] and rows[0]["language"] == "en"
    assert rows[0]["missing"] == ["description", "tags", "text_in_image"]  # image-to-text
    errors = [line for line in lines if "error" in line]  # a line each, on stdout with --json
    assert errors[0]["error"].startswith("not a supported raster image")
    assert errors[1] == {"source": "missing.png", "error": "No such file or directory"}
    assert result.stderr == ""


def test_caption_with_the_hub_unreachable_says_so_once_naming_hf_endpoint(pictures, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = clean_env(HF_TOKEN="hf_x", HF_ENDPOINT=nowhere, HF_ROUTER_URL=nowhere)
    reason = f"the Hub at {nowhere} (HF_ENDPOINT) cannot be reached: ConnectError: "

    text = captioner("caption", "red.png", env=env, cwd=tmp_path)
    as_json = captioner("caption", "--json", "red.png", env=env, cwd=tmp_path)

    assert text.returncode == as_json.returncode == 1
    [line] = text.stderr.splitlines()
    assert line.startswith(f"red.png: error: {reason}") and text.stdout == ""
    [row] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert row["source"] == "red.png" and row["error"].startswith(reason)
    assert as_json.stderr == ""


def test_caption_json_carries_every_field_of_a_vision_language_model(hf, pictures, tmp_path):
    vlm = "Qwen/Qwen2.5-VL-7B-Instruct"
    hf.add_model(vlm, {"together": "conversational"})
    env = hf_env(hf, CAPTION_BACKEND="chat", CAPTION_MODEL=vlm)

    result = captioner("caption", "--json", "--language", "de", "red.png", env=env, cwd=tmp_path)
    wrong = captioner("caption", "--language", "not a tag", "red.png", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert set(row) == {
        "source",
        "language",
        "caption",
        "alt_text",
        "description",
        "tags",
        "text_in_image",
        "missing",
        "model",
        "elapsed_ms",
    }
    assert row["language"] == "de" and row["missing"] == []
    assert row["alt_text"] == "[de] A 120x80 picture, mostly red."
    assert row["tags"] == ["red", "picture"]
    assert wrong.returncode == 2 and "not a BCP 47 language tag" in wrong.stderr


def test_caption_urls_with_the_byte_cap(hf, pictures, tmp_path, file_server):
    (tmp_path / "big.png").write_bytes(make_image(size=(600, 600), fmt="BMP"))
    urls = [f"{file_server}/red.png", f"{file_server}/big.png", f"{file_server}/gone.png"]

    result = captioner("caption", *urls, env=hf_env(hf, MAX_IMAGE_BYTES="100000"), cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == f"{urls[0]}\ta 120x80 picture, mostly red\n"
    assert f"{urls[1]}: error: image too large" in result.stderr
    assert "MAX_IMAGE_BYTES=100000" in result.stderr
    assert f"{urls[2]}: error: download failed: HTTP 404" in result.stderr


def test_missing_settings_name_the_variable_and_exit_2(tmp_path):
    for command in (["status"], ["backfill", "--bucket", "images"]):
        result = captioner(*command, env=clean_env(), cwd=tmp_path)
        assert result.returncode == 2, command
        assert "SUPABASE_URL is required but not set" in result.stderr
        assert "Traceback" not in result.stderr
    result = captioner("serve", env=clean_env(UI_USERNAME="alice"), cwd=tmp_path)
    assert result.returncode == 2
    assert "UI_USERNAME and UI_PASSWORD" in result.stderr and "Traceback" not in result.stderr
    result = captioner("caption", "x.png", env=clean_env(CAPTION_BACKEND="gpu"), cwd=tmp_path)
    assert result.returncode == 2
    assert "CAPTION_BACKEND" in result.stderr and "Traceback" not in result.stderr
    result = captioner("migrate", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


@pytest.fixture
def empty_supabase_db(pg_server) -> Iterator[str]:
    """A fresh database with only the Supabase stand-in's schema: no migration applied."""
    name = f"captioner_cli_{os.getpid()}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = database_url(pg_server.admin_url, name)
    apply_sql_file(url, SUPABASE_SQL)
    yield url
    drop_database(pg_server.admin_url, url)


def test_migrate_applies_every_file_and_can_run_again(empty_supabase_db, tmp_path):
    env = clean_env(DATABASE_URL=empty_supabase_db)
    expected = [f"applied {path.name}" for path in MIGRATIONS]

    first = captioner("migrate", env=env, cwd=tmp_path)
    second = captioner("migrate", env=env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == expected
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == expected
    functions = query(
        empty_supabase_db,
        "select proname from pg_proc where proname like 'caption%%'",
    )
    assert {"caption_jobs_claim", "caption_jobs_sweep_start"} <= {f["proname"] for f in functions}


def test_migrate_reports_the_failing_file(empty_supabase_db, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("create table if not exists t (id int);")
    (tmp_path / "0002_bad.sql").write_text("select * from no_such_table;")

    result = captioner(
        "migrate",
        "--database-url",
        empty_supabase_db,
        "--dir",
        str(tmp_path),
        env=clean_env(),
        cwd=tmp_path,
    )

    assert result.returncode == 1
    assert result.stdout == "applied 0001_ok.sql\n"
    assert "0002_bad.sql failed" in result.stderr and "no_such_table" in result.stderr


def test_backfill_captions_a_bucket_then_status_reports(supabase, hf, tmp_path):
    create_bucket(supabase.db_url, "images")
    ids = [upload(supabase, f"old/{n}.png", make_image((30, 160, 60))) for n in range(3)]
    upload(supabase, "old/liar.png", b"not really a PNG")
    upload(supabase, "old/readme.txt", b"hello", "text/plain")
    query(supabase.db_url, "delete from captioner.jobs")  # as if uploaded before install
    env = supabase_env(supabase, hf)

    result = captioner("backfill", "--bucket", "images", "--batch", "2", env=env, cwd=tmp_path)

    assert result.returncode == 1, result.stderr  # one image failed
    summary = (
        "bucket images: 3 captioned, 1 failed, 1 skipped (not images), "
        "0 already captioned or queued"
    )
    assert result.stdout.splitlines()[-1] == summary
    assert "images: examined 5/5 objects, queued 4" in result.stderr  # progress, with the rate
    assert re.search(r"captioned \d+ \([\d.]+ images/s\)", result.stderr), result.stderr
    for object_id in ids:
        row = query_one(supabase.db_url, "select * from image_caption where id = %s", object_id)
        assert row and row["caption"] == "a 64x48 picture, mostly green"

    again = captioner("backfill", "--bucket", "images", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("bucket images: 0 captioned, 0 failed")

    status = captioner("status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = [line.split() for line in status.stdout.splitlines()]
    assert ["done", "3"] in lines and ["failed", "1"] in lines and ["pending", "0"] in lines
    assert "images/old/liar.png  (1 attempts): not a supported raster image" in status.stdout


def test_status_shows_skipped_uploads_per_bucket_with_their_reason(supabase, hf, tmp_path):
    create_bucket(supabase.db_url, "images")
    create_bucket(supabase.db_url, "docs")
    upload(supabase, "notes/todo.txt", b"milk", "text/plain")
    upload(supabase, "print.eps", b"%!PS-Adobe-3.0 EPSF-3.0", "image/x-eps")
    upload(supabase, "todo.txt", b"eggs", "text/plain", bucket="docs")  # not watched

    status = captioner("status", env=supabase_env(supabase, hf), cwd=tmp_path)

    assert status.returncode == 0, status.stderr
    lines = [line.split() for line in status.stdout.splitlines()]
    assert ["skipped", "2"] in lines
    assert "bucket images: 0 pending, 0 running, 0 done, 0 failed, 2 skipped" in status.stdout
    assert "bucket docs" not in status.stdout
    assert "recently skipped:" in status.stdout
    assert "images/notes/todo.txt  (0 attempts): not an image (text/plain)" in status.stdout
    assert (
        "images/print.eps  (0 attempts): image/x-eps is not a format the captioner decodes"
        in status.stdout
    )


def test_serve_runs_the_service_behind_a_proxy(supabase, hf, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env = supabase_env(supabase, hf, UI_ENABLED="false")
    command = [str(CAPTIONER), "serve", "--port", url.rsplit(":", 1)[1], "--access-log"]
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until(lambda: ready(url), timeout=30, message="captioner serve never became ready")
        httpx.get(url + "/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    finally:
        proc.terminate()  # SIGTERM, as a container runtime stops it
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output  # a graceful SIGTERM is a clean exit
    assert "Application shutdown complete" in output
    assert '203.0.113.7:0 - "GET /healthz' in output  # X-Forwarded-For from 127.0.0.1 trusted


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_caption_with_only_a_token_and_no_route_exits_at_once(hf, tmp_path):
    """`HF_TOKEN=... captioner caption house.jpg`, the Hub serving the default model nowhere."""
    hf.add_model("Qwen/Qwen2.5-VL-7B-Instruct", {})
    env = clean_env(HF_TOKEN="hf_only_a_token", **stand_in_hub(hf))
    started = time.monotonic()

    result = captioner("caption", str(EXAMPLES / "house.jpg"), env=env, cwd=tmp_path)

    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("captioner: Hugging Face offers no image-to-text or conversational")
    for way_out in (
        "Inference Endpoint URL",
        "CAPTION_BACKEND=chat",
        "CAPTION_BACKEND=local",
        "(change CAPTION_MODEL or CAPTION_BACKEND)",
    ):
        assert way_out in line
    assert hf.calls == []


def test_serve_refuses_to_start_without_a_route(supabase, hf, tmp_path):
    hf.add_model("Salesforce/blip-image-captioning-base", {"together": "conversational"})
    env = supabase_env(supabase, hf, CAPTION_MODEL="Salesforce/blip-image-captioning-base")

    result = captioner("serve", "--port", str(free_port()), env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "its providers serve other tasks (together: conversational)" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_prints_a_table_and_exits_0_only_when_all_pass(service, supabase, hf, tmp_path):
    """The service runs (it configured the database) and pg_net delivers the test wake-up."""
    env = supabase_env(supabase, hf, PUBLIC_WEBHOOK_URL=service.webhook_url)

    healthy = captioner("doctor", env=env, cwd=tmp_path)

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert len(lines) == 11 and all(line.startswith("✓ ") for line in lines)
    assert "SUPABASE_SECRET_KEY: a secret key (sb_secret_…)" in lines[0]

    broken = captioner("doctor", env=env | {"CAPTION_BUCKETS": "images,avatars"}, cwd=tmp_path)

    assert broken.returncode == 1
    assert "✗ buckets" in broken.stdout and "fix: create it" in broken.stdout


def test_a_publishable_key_stops_serve_and_doctor_says_why(supabase, hf, tmp_path):
    env = supabase_env(supabase, hf) | {"SUPABASE_SECRET_KEY": supabase.publishable_key}

    refused = captioner("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    diagnosed = captioner("doctor", env=env, cwd=tmp_path)

    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "SUPABASE_SECRET_KEY is a publishable key (sb_publishable_…)" in refused.stderr
    assert supabase.publishable_key not in refused.stderr + diagnosed.stdout
    assert diagnosed.returncode == 1
    assert "✗ Supabase key" in diagnosed.stdout
    assert "fix: set SUPABASE_SECRET_KEY" in diagnosed.stdout
