"""Packaging promises: floors CI really installs, exact tool pins, one version, metadata."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import trio_replica

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floors(requirements: list[str]) -> dict[str, str]:
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement.split(";")[0].strip())
        assert match is not None, f"{requirement!r}: a dependency must be 'name>=floor'"
        floors[match.group(1).lower()] = match.group(2)
    return floors


def _release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def test_ci_installs_exactly_the_declared_floors() -> None:
    declared = _floors(PROJECT["dependencies"]) | _floors(PROJECT["optional-dependencies"]["test"])
    pinned = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pinned[name.lower()] = version
    assert set(pinned) == set(declared)
    for name, floor in declared.items():
        assert _release(pinned[name]) == _release(floor), name


def test_lint_and_type_tools_are_pinned_exactly() -> None:
    for requirement in PROJECT["optional-dependencies"]["lint"]:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9.]+", requirement.split("#")[0].strip())
    for requirement in PROJECT["optional-dependencies"]["docs"]:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9.]+", requirement)


def test_the_version_is_written_once_and_is_what_was_installed() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert importlib.metadata.version("trio-replica") == trio_replica.__version__
    written = [
        path
        for path in (ROOT / "src").rglob("*.py")
        if re.search(r"^__version__ = ", path.read_text(), flags=re.M)
    ]
    assert written == [ROOT / "src" / "trio_replica" / "__init__.py"]


def test_license_changelog_urls_and_classifiers() -> None:
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "## Unreleased" in (ROOT / "CHANGELOG.md").read_text()
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(PROJECT["urls"])
    versions = {
        c.rsplit(":: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert versions == {"3.11", "3.12", "3.13"}
    assert PROJECT["requires-python"] == ">=3.11"


def test_installing_registers_no_pytest_plugin() -> None:
    # Opt-in only: an entry point would load into every pytest session.
    assert "entry-points" not in PROJECT or "pytest11" not in PROJECT["entry-points"]
    loaded = importlib.metadata.entry_points(group="pytest11")
    assert not [ep for ep in loaded if ep.value.startswith("trio_replica")]
