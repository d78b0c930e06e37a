"""Re-captioning after a change of model: `captioner recaption` and the queue functions
behind it (and behind the gallery's button)."""

from datetime import UTC, datetime

from supabase import create_client

from tests.acceptance.test_cli import captioner, supabase_env
from tests.harness.hf_stub import ServerError
from tests.harness.supabase_stub import create_bucket
from tests.support import caption_of, job_of, make_image, query, upload


def captioned_by_old_model(supabase, names: list[str]) -> dict[str, str]:
    """Objects whose captions an older model wrote (and whose jobs are done)."""
    create_bucket(supabase.db_url, "images")
    ids = {name: upload(supabase, name, make_image((30, 60, 220))) for name in names}
    query(supabase.db_url, "update captioner.jobs set state = 'done'")
    query(
        supabase.db_url,
        "insert into public.image_caption (id, caption, model, object_version)"
        " select id, 'old words', 'old-model', version from storage.objects",
    )
    return ids


def test_cli_recaptions_a_folder_keeps_failures_old_captions_and_a_rerun_retries(
    supabase, hf, tmp_path
):
    ids = captioned_by_old_model(supabase, ["a/1.png", "a/2.png", "a/3.png", "b/4.png"])
    new_model = f"{hf.url}/models/new-model"
    env = supabase_env(supabase, hf)
    hf.script(ServerError(400, "the new model could not read this image"))
    args = ("recaption", "--bucket", "images", "--prefix", "a/", "--model", new_model)

    first = captioner(*args, "--batch", "2", env=env, cwd=tmp_path)

    assert first.returncode == 1, first.stderr
    assert first.stdout.splitlines()[-1] == (
        f"images/a/: 2 of 3 captions by {new_model} in en; 1 failed (their old captions kept)"
    )
    assert "1 still by another model" in first.stderr
    rows = {name: caption_of(supabase.db_url, object_id) for name, object_id in ids.items()}
    failed = [name for name, row in rows.items() if row["model"] == "old-model"]
    assert len(failed) == 2 and "b/4.png" in failed  # the failure, and the other folder
    assert all(rows[name]["caption"] == "old words" for name in failed)
    assert all(
        row["caption"] == "a 64x48 picture, mostly blue" and row["model"] == new_model
        for name, row in rows.items()
        if name not in failed
    )

    again = captioner(*args, env=env, cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == (
        f"images/a/: 3 of 3 captions by {new_model} in en; 0 failed (their old captions kept)"
    )
    assert caption_of(supabase.db_url, ids["b/4.png"])["caption"] == "old words"
    assert len([call for call in hf.calls if call["status"] == 200]) == 3


def test_recaption_queue_goes_on_where_it_stopped_and_keeps_old_captions(supabase):
    ids = captioned_by_old_model(supabase, [f"p/{n}.png" for n in range(5)])
    service = create_client(supabase.url, supabase.service_key)
    since = datetime.now(UTC).isoformat()

    def queue(limit: int, model: str = "new-model") -> int:
        args = {"p_bucket": "images", "p_prefix": "p/", "p_model": model, "p_limit": limit}
        return service.rpc("caption_jobs_recaption", {**args, "p_since": since}).execute().data

    def progress() -> dict:
        args = {"p_bucket": "images", "p_prefix": "p/", "p_model": "new-model"}
        return service.rpc("caption_recaption_progress", args).execute().data[0]

    assert queue(2) == 2
    assert queue(2) == 2  # the next two, in name order: the first two are queued already
    assert [job_of(supabase.db_url, ids[f"p/{n}.png"])["state"] for n in range(5)] == [
        "pending",
        "pending",
        "pending",
        "pending",
        "done",
    ]
    assert all(caption_of(supabase.db_url, i)["caption"] == "old words" for i in ids.values())
    assert progress() == {"captions": 5, "done": 0, "queued": 4, "failed": 0}
    assert queue(10, model="old-model") == 0  # nothing to do for the model that wrote them
    assert queue(0) == 0 and queue(10) == 1 and queue(10) == 0
