"""The lock files pin what pyproject.toml asks for: `make lock` writes them, `make` installs from them.

requirements.lock holds the runtime dependencies, requirements-dev.lock the same plus the `dev` extra.
Every dependency named in pyproject.toml is pinned at a version inside its declared range, every pin is
an exact `==` with at least one `--hash=`, and the runtime lock is part of the dev lock, version for
version, so the service runs on what the suite passed with.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).parents[1]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = [Requirement(text) for text in PROJECT["dependencies"]]
DEV = [Requirement(text) for text in PROJECT["optional-dependencies"]["dev"]]


@dataclass(frozen=True)
class Pin:
    """One requirement of a lock file, its continuation lines joined."""

    line: str
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def name(self) -> NormalizedName:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str | None:
        """The pinned version: None unless the requirement is exactly one `==` without a wildcard."""
        specifiers = list(self.requirement.specifier)
        if len(specifiers) != 1:
            return None
        exact = specifiers[0]
        return exact.version if exact.operator in ("==", "===") and "*" not in exact.version else None

    @property
    def key(self) -> tuple[str, str | None, str]:
        return self.name, self.version, str(self.requirement.marker or "")


def read_lock(path: Path) -> list[Pin]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # Anything but a requirement (-e ., --index-url, -r other.txt) is not what `make lock` writes.
        assert not line.startswith("-"), f"{path.name}: not a pinned requirement: {line}"
        requirement, _, options = line.partition(" --")
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})\b", " --" + options))
        pins.append(Pin(line, Requirement(requirement.strip()), hashes))
    return pins


def pins_by_name(path: Path) -> dict[str, list[Pin]]:
    found: dict[str, list[Pin]] = {}
    for pin in read_lock(path):
        found.setdefault(pin.name, []).append(pin)
    return found


@pytest.mark.parametrize("path", [RUNTIME_LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_every_line_is_an_exact_pin_with_a_hash(path: Path) -> None:
    pins = read_lock(path)
    assert pins, f"{path.name} pins nothing"
    for pin in pins:
        assert pin.version is not None, f"{path.name}: not an exact == pin: {pin.line}"
        assert pin.hashes, f"{path.name}: no --hash= for {pin.requirement}"
    keys = [(pin.name, str(pin.requirement.marker or "")) for pin in pins]
    assert len(keys) == len(set(keys)), f"{path.name}: a package is pinned twice for the same environment"


def _assert_pinned_in_range(dependency: Requirement, path: Path) -> None:
    pins = pins_by_name(path).get(canonicalize_name(dependency.name))
    assert pins, f"{dependency} is not in {path.name}: run `make lock`"
    for pin in pins:
        assert pin.version is not None and dependency.specifier.contains(pin.version, prereleases=True), (
            f"{path.name} pins {pin.requirement}, outside pyproject.toml's {dependency}: run `make lock`"
        )


@pytest.mark.parametrize("dependency", RUNTIME, ids=str)
def test_every_runtime_dependency_is_pinned_in_its_range(dependency: Requirement) -> None:
    _assert_pinned_in_range(dependency, RUNTIME_LOCK)
    _assert_pinned_in_range(dependency, DEV_LOCK)


@pytest.mark.parametrize("dependency", DEV, ids=str)
def test_every_dev_dependency_is_pinned_in_its_range(dependency: Requirement) -> None:
    _assert_pinned_in_range(dependency, DEV_LOCK)


def test_the_runtime_lock_is_part_of_the_dev_lock_with_the_same_versions() -> None:
    dev = {pin.key for pin in read_lock(DEV_LOCK)}
    missing = [str(pin.requirement) for pin in read_lock(RUNTIME_LOCK) if pin.key not in dev]
    assert not missing, f"pinned in requirements.lock but not so in requirements-dev.lock: {missing}"
