"""Reproducible installs: requirements/*.lock pin every dependency with hashes, agree with
pyproject.toml and with each other, and are what `make`, the image build and this very test
environment install."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Which extras of pyproject.toml each lock installs (runtime: none).
LOCK_EXTRAS = {"runtime": (), "test": ("test",), "bench": ("bench",)}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def parse_lock(path: Path) -> dict[str, tuple[str, str | None, int]]:
    """{canonical name: (version, marker or None, number of hashes)}; anything but a hashed
    exact pin (an option, a URL, a range, a hashless line) fails the test naming the line."""
    pins: dict[str, tuple[str, str | None, int]] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        while options and not options[0].startswith("--"):  # a marker holds spaces
            requirement += " " + options.pop(0)
        found = PIN.match(requirement)
        assert found, f"{path.name}:{number}: not an exact pin: {requirement!r}"
        assert options and all(HASH.match(o) for o in options), f"{path.name}:{number}: no hashes"
        name = canonicalize_name(found["name"])
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = (found["version"], found["marker"], len(options))
    return pins


def requirements_of(extras: tuple[str, ...]) -> list[Requirement]:
    project = PYPROJECT["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return [Requirement(spec) for spec in specs]


@pytest.mark.parametrize("lock", [*LOCK_EXTRAS, "build"])
def test_every_line_is_an_exact_pin_with_hashes(lock):
    pins = parse_lock(LOCKS / f"{lock}.lock")
    assert pins, lock


@pytest.mark.parametrize("lock", LOCK_EXTRAS)
def test_lock_satisfies_pyproject(lock):
    """Each direct requirement of the lock's extras is pinned at a version pyproject allows (a
    lock left stale after a pyproject.toml edit fails here: run `make lock`)."""
    pins = parse_lock(LOCKS / f"{lock}.lock")
    for requirement in requirements_of(LOCK_EXTRAS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock}.lock lacks {requirement}: run make lock"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock}.lock pins {name}=={version}, pyproject wants {requirement}: run make lock")


@pytest.mark.parametrize("lock", ["test", "bench"])
def test_locks_agree_on_the_runtime_pins(lock):
    """What the tests ran against is what `make run` and the image install."""
    runtime = parse_lock(LOCKS / "runtime.lock")
    other = parse_lock(LOCKS / f"{lock}.lock")
    for name, (version, _, _) in runtime.items():
        assert other.get(name, (None,))[0] == version, (lock, name)


def test_build_lock_pins_the_installer_and_the_backend():
    pins = parse_lock(LOCKS / "build.lock")
    assert set(pins) == {"pip", "setuptools"}
    backend = Requirement(PYPROJECT["build-system"]["requires"][0])
    assert backend.specifier.contains(pins["setuptools"][0])


def test_this_environment_is_the_test_lock():
    """The environment running these tests holds exactly the test lock's versions of every
    package whose marker applies here (`make test` installed it from the lock)."""
    environment = default_environment()
    differences = []
    for name, (version, marker, _) in parse_lock(LOCKS / "test.lock").items():
        if marker and not Marker(marker).evaluate(environment):
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differences.append(f"{name}: locked {version}, installed {installed}")
    assert not differences, "\n".join(differences)


def test_make_installs_from_the_locks():
    """`make run`, `make test` and `make bench` install their lock with --require-hashes, then
    the project without resolving anything."""
    for lock in LOCK_EXTRAS:
        result = subprocess.run(
            ["make", "-n", "-B", "--no-print-directory", f".venv/.installed-{lock}"],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
        )
        lines = result.stdout.splitlines()
        assert any(
            "pip install" in line and "--require-hashes" in line
            and f"-r requirements/{lock}.lock" in line for line in lines
        ), result.stdout
        project = [line for line in lines if "pip install" in line and " -e ." in line]
        assert project and all("--no-deps" in line for line in project), result.stdout


def test_image_installs_from_the_locks():
    """The image's builder installs the runtime lock with hashes and the wheel without deps."""
    text = re.sub(r"\\\n", " ", (REPO / "deploy" / "Dockerfile").read_text())
    assert re.search(r"pip install --require-hashes [^&]*-r requirements/runtime\.lock", text)
    assert re.search(r"pip install --require-hashes [^&]*-r requirements/build\.lock", text)
    assert re.search(r"pip install --no-deps /wheels/passgate-\*\.whl", text)
    assert "--no-build-isolation" in text  # the locked setuptools builds the wheel


def test_license_file_matches_pyproject():
    """pyproject.toml says MIT; LICENSE is the MIT licence text."""
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
