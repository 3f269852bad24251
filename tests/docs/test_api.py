"""The API reference: every public name documented, every error importable from the package.

Public modules are those listed in ``PUBLIC``; their ``__all__`` is the API.
The Sphinx build (warnings as errors) must produce an entry for each name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import trio_replica
from trio_replica.errors import ReplicaError
from trio_replica.storage import Directory, DirectoryLock, Storage

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = [
    "trio_replica",
    "trio_replica.errors",
    "trio_replica.storage",
    "trio_replica.testing",
    "trio_replica.testing.plugin",
    "trio_replica.testing.simulate",
    "trio_replica.cli",
]
# Internal to the command-line tool: never raised to a program.
_CLI_ONLY = "trio_replica.cli"
_PROTOCOLS = (Directory, Storage, DirectoryLock)


def _public_objects() -> list[tuple[str, str, Any]]:
    found = []
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        assert module.__doc__, f"{module_name} has no docstring"
        for name in module.__all__:
            found.append((module_name, name, getattr(module, name)))
    return found


def _documented_by_protocol(attr: str) -> bool:
    return any(inspect.getdoc(getattr(p, attr, None)) for p in _PROTOCOLS if hasattr(p, attr))


def test_every_public_name_and_method_has_a_docstring() -> None:
    missing = []
    for module_name, name, obj in _public_objects():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{module_name}.{name}")
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            function = value.fget if isinstance(value, property) else value
            if isinstance(function, staticmethod | classmethod):
                function = function.__func__
            if not inspect.isfunction(function) or function.__doc__:
                continue
            if not _documented_by_protocol(attr):
                missing.append(f"{module_name}.{name}.{attr}")
    assert missing == []


def _library_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(trio_replica.__path__, "trio_replica."):
        if info.name.startswith((_CLI_ONLY, "trio_replica.testing")):
            continue
        names.append(info.name)
    return names


def test_every_error_is_importable_from_the_package() -> None:
    errors = set()
    for module_name in _library_modules():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, ReplicaError)
                and value.__module__ == module_name
            ):
                errors.add(value)
    exported = {getattr(trio_replica, name) for name in trio_replica.__all__}
    assert sorted(e.__name__ for e in errors - exported) == []
    assert {e.__name__ for e in errors} >= {"NoValidSnapshotError", "CorruptionError"}


@pytest.fixture(scope="module")
def built_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.docs
def test_the_reference_has_an_entry_for_every_public_name(built_html: Path) -> None:
    pages = "".join(p.read_text() for p in (built_html / "api").glob("*.html"))
    missing = []
    for module_name, name, obj in _public_objects():
        if inspect.ismodule(obj):
            continue
        ids = {f'id="{module_name}.{name}"'}
        if inspect.isclass(obj) or inspect.isfunction(obj):
            # Documented once, under the module that defines it or the package.
            ids |= {f'id="{obj.__module__}.{name}"', f'id="trio_replica.{name}"'}
            ids |= {f'id="trio_replica.errors.{name}"'}
        if not any(i in pages for i in ids):
            missing.append(f"{module_name}.{name}")
    assert missing == []


@pytest.mark.docs
def test_the_site_contains_the_guides_and_the_changelog(built_html: Path) -> None:
    for page in ("architecture", "format", "testing", "decisions", "changelog", "index"):
        assert (built_html / f"{page}.html").exists(), page
    index = (built_html / "index.html").read_text()
    assert 'href="architecture.html' in index  # the README's links point into the site
