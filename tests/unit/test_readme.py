"""The README's module table and `captioner --help` block say what the tree and the command
really are (a new module, or a changed command, fails here until the README says so)."""

import re
from pathlib import Path

from typer.testing import CliRunner

from app.commands.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# what `captioner --help` prints on a 100-column terminal without colours
HELP_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def module_table() -> dict[str, set[str]]:
    """{row's first cell: the `names` its second cell mentions}."""
    section = README[README.index("| Module | Its one job |") :].split("\n\n", 1)[0]
    rows = {}
    for line in section.splitlines()[2:]:
        first, second = line.strip("|").split(" | ", 1)
        rows[first.strip().strip("`")] = set(re.findall(r"`([^`]+)`", second))
    return rows


def package_parts(package: Path) -> set[str]:
    """The modules (but `__init__.py`) and folders of a package, as the table names them."""
    modules = {path.name for path in package.glob("*.py") if path.name != "__init__.py"}
    folders = {
        f"{path.name}/"
        for path in package.iterdir()
        if path.is_dir() and path.name != "__pycache__"
    }
    return modules | folders


def help_block() -> str:
    after = README.split("- `captioner --help`:\n", 1)[1]
    return after.split("```\n", 2)[1]


def stripped(text: str) -> str:
    """Without trailing spaces and blank lines around (Markdown keeps neither)."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def test_the_module_table_names_every_module_and_nothing_else():
    rows = module_table()
    packages = sorted(p for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists())

    assert {f"app/{package.name}/" for package in packages} <= set(rows)
    for package in packages:
        row = rows[f"app/{package.name}/"]
        named = {name for name in row if re.fullmatch(r"\w+(\.py|/)", name)}
        assert named == package_parts(package), f"app/{package.name}/ in the README's table"
    for first in rows:
        assert (ROOT / first).exists(), f"the README's module table names {first}"


def test_the_help_block_is_what_the_command_prints():
    printed = CliRunner().invoke(cli, ["--help"], env=HELP_ENV, prog_name="captioner")

    assert printed.exit_code == 0
    assert stripped(help_block()) == stripped(printed.output), (
        "README.md's `captioner --help` block is not what the command prints; it prints:\n"
        + stripped(printed.output)
    )


def test_sweep_full_interval_zero_means_one_thing_everywhere():
    meaning = "no periodic pass; a pass still runs for a bucket new to the sweep and on"
    env_example = (ROOT / ".env.example").read_text()
    config = (ROOT / "app" / "core" / "config.py").read_text()

    readme_row = next(line for line in README.splitlines() if "| `SWEEP_FULL_INTERVAL` |" in line)
    comment = env_example.split("# SWEEP_FULL_INTERVAL=")[0].rsplit("\n# ---", 1)[-1]
    declared = config.split("    sweep_full_interval:")[0].rsplit("\n", 2)[-2]  # its comment
    for where, text in (("README", readme_row), (".env.example", comment), ("config", declared)):
        assert f"0: {meaning}" in " ".join(text.replace("#", " ").split()), where


def test_the_configuration_table_states_each_backends_default_model():
    from app.core.config import CaptionSettings

    row = next(line for line in README.splitlines() if line.startswith("| `CAPTION_MODEL` |"))
    stated = re.findall(r"`([^`]+)` with `(\w+)` or `(\w+)`", row.split(" | ")[1])
    backends = {backend: model for model, *pair in stated for backend in pair}

    assert sorted(backends) == ["auto", "chat", "hf", "local"]
    for backend, model in backends.items():
        settings = CaptionSettings(_env_file=None, caption_backend=backend, hf_token="hf_x")  # type: ignore[call-arg]
        assert settings.caption_model == model, backend
