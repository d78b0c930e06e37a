"""Shared pytest configuration; harness fixtures live in tests/harness/fixtures.py."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.config import Settings
from tests.harness.supabase_stub import create_bucket
from tests.support import TEST_SECRET, RunningService, start_service

pytest_plugins = ["tests.harness.fixtures"]


@pytest.fixture
def service_factory(supabase, hf) -> Iterator[Callable[..., RunningService]]:
    """Start the real app (in a thread) against the stand-ins; stops them all afterwards."""
    started: list[RunningService] = []

    def start(**overrides: object) -> RunningService:
        running = start_service(supabase, hf, **overrides)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()


@pytest.fixture
def service(service_factory, pgnet, supabase) -> RunningService:
    """The service, an `images` bucket, and pg_net delivering the trigger's webhooks."""
    create_bucket(supabase.db_url, "images")
    return service_factory()


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """No Hub access for a module's tests (`pytestmark = pytest.mark.usefixtures("offline")`;
    module scope: later modules use the HF stand-in, which huggingface_hub refuses to call
    while HF_HUB_OFFLINE is set)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BLIP, saved like a real one (tests/tiny_blip.py)."""
    from tests.tiny_blip import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def tiny_florence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Florence-2, saved like a real one (tests/tiny_blip.py)."""
    from tests.tiny_blip import build_tiny_florence2

    return build_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


@pytest.fixture
def settings(service: RunningService) -> Settings:
    return service.settings


__all__ = ["TEST_SECRET"]
