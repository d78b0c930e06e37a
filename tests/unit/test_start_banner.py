"""What `captioner serve` says at start about the local backend: what it lacks, and the fix
that applies (an install without torch cannot be helped by fetching the model)."""

import importlib.util

from app.commands.cli import start_banner
from app.core.config import Settings


def local(**values: object) -> Settings:
    return Settings(_env_file=None, local_model="captioner-tests/never-fetched", **values)  # type: ignore[call-arg]


def test_an_install_without_torch_says_so_rather_than_fetch_the_model(monkeypatch):
    real = importlib.util.find_spec
    missing = {"torch", "transformers"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name in missing else real(name, *rest),
    )

    lines = start_banner(local())

    assert (
        [line for line in lines if "local" in line]
        == [
            line
            for line in lines
            if "needs torch and transformers" in line and "WITH_LOCAL_MODEL" in line
        ]
        != []
    )
    assert not any("fetch-model" in line for line in lines)


def test_with_torch_a_model_not_fetched_names_the_fetch():
    lines = start_banner(local())

    [line] = [line for line in lines if "not here yet" in line]
    assert "captioner fetch-model" in line and "needs torch" not in line


def test_with_a_token_nothing_is_said_of_the_local_backend():
    assert not any("local" in line for line in start_banner(local(hf_token="hf_x")))
