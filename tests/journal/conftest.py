"""Fixtures for the journal tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_replica.storage import Directory, MemoryDirectory, OsDirectory


@pytest.fixture
def memory_dir() -> MemoryDirectory:
    return MemoryDirectory()


@pytest.fixture
def os_dir(tmp_path: Path) -> OsDirectory:
    return OsDirectory.open_path(tmp_path / "data", create=True)


@pytest.fixture(params=["memory", "os"])
def any_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Directory:
    if request.param == "os":
        return OsDirectory.open_path(tmp_path / "data", create=True)
    return MemoryDirectory()
