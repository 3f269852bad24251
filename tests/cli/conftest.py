"""Fixtures for the command-line tests: copies of a real data directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from replica_dirs import build_data_dir

from trio_replica.storage import OsDirectory


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "data"
    trio.run(build_data_dir, path)
    return path


@pytest.fixture
def data_dir(template_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of the clean template directory."""
    path = tmp_path / "data"
    shutil.copytree(template_dir, path)
    return path


@pytest.fixture
def held_lock(data_dir: Path) -> Iterator[Path]:
    """``data_dir`` locked the way a running replica locks it."""
    lock = OsDirectory(data_dir).lock("LOCK")
    try:
        yield data_dir
    finally:
        lock.release()
