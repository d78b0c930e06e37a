"""`captioner`: run the service, caption files, backfill or re-caption a bucket, migrate,
show the queue.

Settings come from the environment (and `.env`), as for the service; see .env.example.
"""

import asyncio
import importlib.util
import json
import logging
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from supabase import AsyncClient

from app.api.auth import api_locked_reason, ui_locked_reason
from app.captioning import open_captioner
from app.captioning.description import LANGUAGE_TAG, DescribeRequest
from app.captioning.local import how_to_provide
from app.commands.backfill import ConsoleReport
from app.commands.backfill import Progress as BackfillProgress
from app.commands.backfill import backfill as backfill_bucket
from app.commands.doctor import render, run_checks
from app.commands.fetch import fetch
from app.commands.migrate import MigrationError, apply_migrations
from app.commands.recaption import Scope, recaption_bucket, with_model
from app.commands.sources import caption_sources
from app.commands.status import StatusReport, read_status, status_lines
from app.core.config import (
    NOT_CONNECTED,
    PIPELINE_SETTINGS,
    CaptionSettings,
    DiagnosisSettings,
    Settings,
    SettingsError,
    load_settings,
)
from app.core.errors import ConfigurationError
from app.main import connect_supabase, create_app
from app.pipeline.jobs import JobQueue, RecaptionProgress

S = TypeVar("S", bound=CaptionSettings)
T = TypeVar("T")

cli = typer.Typer(
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold secrets
    rich_markup_mode="markdown",
)


def main() -> None:
    """Entry point of the `captioner` console script."""
    cli()


def settings_or_exit(cls: type[S], **overrides: Any) -> S:
    """The settings, or the one clear message naming what is missing and exit code 2."""
    try:
        return load_settings(cls, **overrides)
    except SettingsError as exc:
        typer.echo(f"captioner: {exc}", err=True)
        raise typer.Exit(2) from None


def pipeline_settings_or_exit() -> Settings:
    """The settings of a command that works on the bucket pipeline (exit 2 without it)."""
    settings = settings_or_exit(Settings)
    if not settings.pipeline_connected:
        missing = "; ".join(f"{name} is required but not set" for name in PIPELINE_SETTINGS)
        typer.echo(f"captioner: this command needs the bucket pipeline: {missing}", err=True)
        raise typer.Exit(2)
    return settings


def run_or_exit(work: Coroutine[Any, Any, T], before_exit: Callable[[], None] | None = None) -> T:
    """`asyncio.run(work)`, or exit 2 with the one line naming the setting to change when the
    configuration is wrong (no caption route, a bad token); `before_exit` runs first."""
    try:
        return asyncio.run(work)
    except ConfigurationError as exc:
        if before_exit is not None:
            before_exit()
        typer.echo(f"captioner: {exc.reason}", err=True)
        raise typer.Exit(2) from None


def check_route_or_exit(settings: CaptionSettings) -> None:
    """Resolve the caption route (model → provider → task) now: refuse to start, in one
    line naming the setting to change, when Hugging Face serves none."""

    async def check() -> None:
        await (await open_captioner(settings)).aclose()

    run_or_exit(check())


# ---------------------------------------------------------------------------------- serve


@cli.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: HOST, else 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [default: PORT, else 8000].")
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies whose X-Forwarded-* headers are trusted (comma-separated, or *) "
            "[default: FORWARDED_ALLOW_IPS, else 127.0.0.1].",
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="Also log every request (uvicorn's access log).")
    ] = False,
) -> None:
    """Run the service: web page, HTTP API and, with the Supabase settings (SUPABASE_URL,
    SUPABASE_SECRET_KEY, WEBHOOK_SECRET), the webhook and the worker.

    Without credentials (API_KEYS, UI_USERNAME/UI_PASSWORD) the page and the API are open
    only on a loopback HOST; on any other address they answer 403 saying what to set.

    Example: `captioner serve --host 0.0.0.0 --port 8000`
    """
    given = {"host": host, "port": port, "forwarded_allow_ips": forwarded_allow_ips}
    settings = settings_or_exit(Settings, **{k: v for k, v in given.items() if v is not None})
    check_route_or_exit(settings)
    for line in start_banner(settings):
        typer.echo(f"captioner: {line}")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again once
    # it has restored the previous handlers; a no-op handler here makes that a clean exit 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_level=settings.log_level.lower(),
        access_log=access_log,  # off by default: /metrics and the JSON event log cover requests
    )


def start_banner(settings: Settings) -> list[str]:
    """Where the page and the API are (or why they are locked), and whether the bucket
    pipeline is connected (and what connects it)."""
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = f"http://{shown}:{settings.port}"
    api = f"API: POST {base}/v1/captions"
    if settings.api_auth == "locked":
        api += f" is locked: {api_locked_reason(settings)}"
    lines = [f"{api}; health: {base}/readyz"]
    if settings.ui_enabled:
        page = f"web page: {base}/ui/"
        locked = settings.ui_auth == "locked"
        lines.insert(0, f"{page} is locked: {ui_locked_reason(settings)}" if locked else page)
    if settings.pipeline_connected and settings.service_key is not None:
        setting, key = settings.service_key
        lines.append(
            f"bucket pipeline connected to {settings.supabase_url} with {setting}, "
            f"{key.description}: captioning every upload to "
            f"{', '.join(settings.caption_buckets)}"
        )
    else:
        lines.append(NOT_CONNECTED)
    if settings.resolved_backend == "local":
        lines += local_backend_notice(settings.model_name)
    return lines


def local_backend_notice(name: str) -> list[str]:
    """What the local backend lacks before it can caption: torch and transformers (an
    install without the `local` extra, an image built without WITH_LOCAL_MODEL), the model."""
    if not all(importlib.util.find_spec(module) for module in ("torch", "transformers")):
        return [
            "the local backend needs torch and transformers, which this install lacks (pip "
            "install 'supabase-captioner[local]'; the image: build it with --build-arg "
            "WITH_LOCAL_MODEL=true), or set HF_TOKEN to caption with Hugging Face's hosted "
            "inference"
        ]
    if not local_model_present(name):
        return [f"the local model {name} is not here yet: " + how_to_provide(name)]
    return []


def local_model_present(name: str) -> bool:
    """Whether the local backend finds `name` (a directory, or a cached Hub model)."""
    from app.captioning.local import ModelNotAvailable, resolve_source

    try:
        resolve_source(name)
    except ModelNotAvailable:
        return False
    return True


# -------------------------------------------------------------------------------- caption


def _language_tag(value: str) -> str:
    if not re.fullmatch(LANGUAGE_TAG, value) or len(value) > 35:
        raise typer.BadParameter(f"{value!r} is not a BCP 47 language tag (e.g. en, de, pt-BR)")
    return value


@cli.command()
def caption(
    sources: Annotated[
        list[str], typer.Argument(metavar="FILE|URL...", help="Image files or http(s) URLs.")
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per line with every field instead of text."),
    ] = False,
    language: Annotated[
        str,
        typer.Option(
            help="The reader's language (a BCP 47 tag: de, pt-BR) for the description.",
            callback=_language_tag,
        ),
    ] = "en",
) -> None:
    """Caption images and print one line each: `<source><TAB><caption>`; with `--json`, the
    whole description (alt text, description, tags, text in the image, missing fields).

    Uses only the captioning settings (CAPTION_BACKEND, CAPTION_MODEL, HF_TOKEN, LOCAL_MODEL,
    MAX_IMAGE_BYTES, ...): no Supabase needed. A file that cannot be captioned prints an
    error on stderr (with `--json`: a line `{"source", "error"}` on stdout); the others go
    on, and the exit code is 1.

    Examples:

    * `captioner caption dog.jpg https://example.com/cat.png`

    * `HF_TOKEN=hf_... captioner caption --json photos/*.jpg > captions.jsonl`
    """
    settings = settings_or_exit(CaptionSettings)
    request = DescribeRequest(language=language)
    # each source's line says what failed: no log lines besides (a route not resolved yet)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    outcomes = run_or_exit(caption_sources(sources, settings, request))
    failed = 0
    for outcome in outcomes:
        if outcome.error is not None:
            failed += 1
            if as_json:
                typer.echo(json.dumps({"source": outcome.source, "error": outcome.error}))
            else:
                typer.echo(f"{outcome.source}: error: {outcome.error}", err=True)
        elif as_json:
            typer.echo(json.dumps(outcome.as_json(), ensure_ascii=False))
        else:
            typer.echo(f"{outcome.source}\t{outcome.caption}")
    if failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- fetch-model


@cli.command("fetch-model")
def fetch_model(
    model: Annotated[
        str | None,
        typer.Argument(
            help="A Hub model id (default: the local model: LOCAL_MODEL, else CAPTION_MODEL).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download the local model into the Hugging Face cache, with progress: what `make run`
    does before it starts the service (and `make model` alone).

    Only the files a PyTorch load needs. Nothing to do with HF_TOKEN (hosted inference) or
    when LOCAL_MODEL is a directory; a model already fetched is only checked. Where
    HF_ENDPOINT (the Hub) cannot be reached it says so in one line and exits 1.

    Example: `captioner fetch-model`
    """
    outcome = fetch(settings_or_exit(CaptionSettings), model)
    typer.echo(f"captioner: {outcome.message}", err=not outcome.ok)
    if not outcome.ok:
        raise typer.Exit(1)


# -------------------------------------------------------------------- Supabase connection


@dataclass
class Connection:
    supabase: AsyncClient
    queue: JobQueue
    settings: Settings


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Connection]:
    """A Supabase client and job queue for one command."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        supabase = await connect_supabase(settings, http)
        worker_id = f"cli:{socket.gethostname()}:{os.getpid()}"
        yield Connection(supabase, JobQueue(supabase, worker_id), settings)


# ------------------------------------------------------------------------------- backfill


@cli.command()
def backfill(
    bucket: Annotated[str, typer.Option(help="The bucket whose images to caption.")],
    batch: Annotated[
        int, typer.Option(min=1, help="Objects examined per slice of the pass (and queued ahead).")
    ] = 1000,
) -> None:
    """Caption every image in a bucket that has no caption yet, in this process.

    Walks the bucket once (a reconciliation pass, resumed if one is running), queueing its
    uncaptioned images a slice at a time just ahead of a worker that captions them like the
    service does (WORKER_CONCURRENCY at a time, with its retries), and shows the progress and
    the rate; ends when none of the bucket's jobs is pending or running; exit code 1 if some
    failed. Like any worker it also takes other buckets' due jobs, and running replicas help.
    Needs the Supabase settings. Images that failed earlier stay failed (see `status`).

    Example: `captioner backfill --bucket images`
    """
    settings = pipeline_settings_or_exit()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    done = run_or_exit(run_backfill(settings, bucket, batch))
    typer.echo(
        f"bucket {bucket}: {done.captioned} captioned, {done.failed} failed, "
        f"{done.skipped} skipped (not images), {done.already} already captioned or queued"
    )
    if done.failed:
        raise typer.Exit(1)


async def run_backfill(settings: Settings, bucket: str, batch: int) -> BackfillProgress:
    async with connect(settings) as connection:
        with ConsoleReport() as report:
            return await backfill_bucket(
                connection.supabase, connection.queue, settings, bucket, batch, report
            )


# ------------------------------------------------------------------------------ recaption


@cli.command()
def recaption(
    bucket: Annotated[str, typer.Option(help="The bucket whose images to caption again.")],
    prefix: Annotated[
        str, typer.Option(help="Only the images whose name starts with this (a folder: p/).")
    ] = "",
    model: Annotated[
        str | None,
        typer.Option(help="The model to caption with (default: CAPTION_MODEL, or LOCAL_MODEL)."),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Images queued at a time.")] = 200,
) -> None:
    """Caption again, with the current (or given) model, the images whose caption another
    model wrote or that lack a description in one of the bucket's languages: after you switch
    models or add a language.

    The bucket's languages are CAPTION_LANGUAGES, or its own in CAPTION_BUCKET_SETTINGS. An
    image queued is described in every one of them; the fields a person corrected stay.
    Queues the work in the database a batch at a time and captions it in this process (the
    service's workers help: give them the same model and languages). Every image keeps its
    old caption until the new one is written. Interrupted, it can simply be run again: it
    continues where it stopped and retries what failed. Exit code 1 if some images still have
    a caption by another model or lack a language. Needs the Supabase settings.

    Examples: `captioner recaption --bucket images --prefix 2024/ --model
    Salesforce/blip-image-captioning-large`; after adding German:
    `CAPTION_LANGUAGES=en,de captioner recaption --bucket images`
    """
    settings = with_model(pipeline_settings_or_exit(), model)
    languages = ", ".join(settings.bucket_plan(bucket).languages)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(f"re-captioning {bucket}/{prefix}", total=None)

        def report(scope: Scope, state: RecaptionProgress) -> None:
            progress.update(task, total=state.captions, completed=state.done)

        final = run_or_exit(
            run_recaption(settings, bucket, prefix, batch, report), before_exit=progress.stop
        )
    others = final.captions - final.done
    typer.echo(
        f"{bucket}/{prefix}: {final.done} of {final.captions} captions by {settings.model_name} "
        f"in {languages}; {final.failed} failed (their old captions kept)"
    )
    if others:
        typer.echo(
            f"{others} still by another model or without one of the languages (failed, or "
            "captioned meanwhile by a worker with a different model or languages); run the "
            "command again to retry them",
            err=True,
        )
        raise typer.Exit(1)


async def run_recaption(
    settings: Settings,
    bucket: str,
    prefix: str,
    batch: int,
    report: Callable[[Scope, RecaptionProgress], None],
) -> RecaptionProgress:
    async with connect(settings) as connection:
        return await recaption_bucket(
            connection.supabase, connection.queue, settings, bucket, prefix, batch, report
        )


# -------------------------------------------------------------------------------- migrate


@cli.command()
def migrate(
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="DATABASE_URL",
            help="postgresql:// URL of the project's database, as the `postgres` role.",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Directory of the *.sql files (default: the repository's migrations/).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Apply migrations/*.sql in order, each file in one transaction.

    Every file is safe to run again, so running `migrate` after an upgrade is enough.
    Supabase: the URL is under Project Settings → Database → Connection string. With the
    Supabase CLI, `supabase db reset` / `supabase db push` apply the same files from
    supabase/migrations/ instead.

    Example: `DATABASE_URL=postgresql://postgres:...@db.<ref>.supabase.co:5432/postgres
    captioner migrate`
    """
    if not database_url:
        typer.echo("captioner: DATABASE_URL is required (or --database-url)", err=True)
        raise typer.Exit(2)
    try:
        apply_migrations(database_url, directory, lambda path: typer.echo(f"applied {path.name}"))
    except MigrationError as exc:
        typer.echo(f"captioner: {exc}", err=True)
        raise typer.Exit(1 if "*.sql" not in str(exc) else 2) from None


# --------------------------------------------------------------------------------- doctor


@cli.command()
def doctor() -> None:
    """Check every link the deployment depends on; print ✓/✗ with the fix for each ✗.

    Supabase URL and key, the migrations (functions and schema version), the watched
    buckets, the trigger, pg_net, the wake-up webhook, the Hugging Face token, the model's
    route, and one real caption of a built-in example image. Exit code 0 only when every
    check passes.

    Example: `captioner doctor`
    """
    settings = settings_or_exit(DiagnosisSettings)  # a wrong key is reported, not refused
    logging.basicConfig(level=logging.ERROR)
    checks = asyncio.run(run_checks(settings))
    typer.echo(render(checks))
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


# --------------------------------------------------------------------------------- status


@cli.command()
def status(
    failures: Annotated[int, typer.Option(min=0, help="How many recent failures to list.")] = 10,
) -> None:
    """Show the job queue: jobs per state (in all and per bucket), the oldest pending job's
    age, recent failures and recent skipped uploads, each with its reason.

    Needs the Supabase settings.

    Example: `captioner status --failures 20`
    """
    settings = pipeline_settings_or_exit()
    for line in status_lines(asyncio.run(fetch_status(settings, failures))):
        typer.echo(line)


async def fetch_status(settings: Settings, limit: int) -> StatusReport:
    async with connect(settings) as connection:
        return await read_status(connection.queue, limit, settings.bucket_plans(shown=True))


if __name__ == "__main__":
    main()
