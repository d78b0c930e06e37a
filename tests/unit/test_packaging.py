"""Reproducible installs: pyproject's floors, constraints.txt, the package data, and which
install `make run` and the Dockerfile use."""

import os
import re
import subprocess
import tomllib
import warnings
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def pins() -> dict[str, Version]:
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not a pin: {line}"
            pinned[canonicalize_name(name)] = Version(version)
    return pinned


def requirements() -> list[Requirement]:
    extras = PROJECT["optional-dependencies"]
    return [Requirement(text) for text in [*PROJECT["dependencies"], *sum(extras.values(), [])]]


def test_every_dependency_is_pinned_within_its_range():
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in constraints.txt (make constraints)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside {requirement}"
        )
    assert pinned["torch"] == Version("2.13.0")  # without +cpu: either wheel satisfies it


def test_make_and_the_image_install_from_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert (
        "--constraint $(CONSTRAINTS)" in makefile and "CONSTRAINTS := constraints.txt" in makefile
    )
    assert "COPY pyproject.toml constraints.txt README.md ./" in dockerfile
    assert len(re.findall(r"pip install --constraint constraints\.txt", dockerfile)) == 2


def test_make_run_installs_only_what_running_needs():
    makefile = (ROOT / "Makefile").read_text()
    run_install = re.search(r"^\$\(VENV\)/\.run-installed:.*?(?=^\S)", makefile, re.M | re.S)

    assert run_install and "'.[local,ui]'" in run_install.group(0)
    assert "dev" not in run_install.group(0)
    assert re.search(r"^run: \$\(VENV\)/\.run-installed$", makefile, re.M)
    assert re.search(r"^test: \$\(VENV\)/\.dev-installed$", makefile, re.M)


def test_package_data_matches_the_tree():
    app = ROOT / "app"
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["app"]
    matched = {path for pattern in patterns for path in app.glob(pattern)}
    data = {
        path
        for path in app.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }

    assert all(any(app.glob(pattern)) for pattern in patterns), "a pattern matches nothing"
    assert data <= matched, f"data files the package would lack: {sorted(data - matched)}"


def test_pyproject_builds_without_setuptools_warnings(monkeypatch):
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)  # the readme is read relative to the project
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), ROOT / "pyproject.toml")

    assert [str(warning.message).splitlines()[0] for warning in caught] == []
    assert PROJECT["license"] == "MIT"  # an SPDX expression (setuptools >= 77)
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_make_run_shows_its_installs_and_fetches_the_model_before_serving():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    dry = subprocess.run(
        ["make", "--dry-run", "--always-make", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()

    installs = [line for line in dry if " install " in line]
    assert len(installs) >= 3 and not [line for line in dry if "--quiet" in line or " -q " in line]
    assert dry[-2:] == [".venv/bin/captioner fetch-model || true", ".venv/bin/captioner serve"]
