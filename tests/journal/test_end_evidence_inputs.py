"""The inputs of "the end of the journal is evidence; a refused open changes nothing",
on real files: each is refused, and the refusal leaves every byte where it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trio_replica import open_replica
from trio_replica.cli.verify import verify_directory
from trio_replica.errors import CorruptionError, ReplicaError
from trio_replica.machines import Counter
from trio_replica.storage import OsDirectory


def tree(path: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), path)] = None
        for name in files:
            if name != "LOCK":  # names its last holder; not data
                out[os.path.relpath(os.path.join(root, name), path)] = Path(root, name).read_bytes()
    return out


async def _replica(path: Path, ops: int, **options: int) -> None:
    async with open_replica(path, Counter(), **options) as replica:
        for _ in range(ops):
            await replica.submit({"add": 1})


async def _refused(path: Path) -> CorruptionError:
    before = tree(path)
    with pytest.raises(CorruptionError) as info:
        async with open_replica(path, Counter()):
            pass  # pragma: no cover
    assert tree(path) == before  # nothing changed, nothing deleted
    report = verify_directory(OsDirectory(path, read_only=True), shown_path=str(path))
    assert not report.clean  # verify says what open says
    return info.value


async def test_an_emptied_last_segment_whose_name_does_not_continue_is_refused(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    await _replica(data, 12, segment_bytes=600)
    segments = sorted((data / "wal").glob("*.wal"))
    assert len(segments) >= 3
    segments[-2].unlink()  # a gap before the last one
    segments[-1].write_bytes(b"")  # emptied
    error = await _refused(data)
    assert segments[-1].exists()
    assert "segment header is invalid" in error.reason  # not deleted as a torn creation


async def test_an_emptied_only_segment_is_refused_not_deleted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _replica(data, 5)
    [segment] = sorted((data / "wal").glob("*.wal"))
    segment.write_bytes(b"")
    error = await _refused(data)
    assert error.path == str(segment) and segment.exists()


async def test_a_used_directory_whose_wal_is_missing_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _replica(data, 5)
    for segment in (data / "wal").glob("*.wal"):
        segment.unlink()
    (data / "wal").rmdir()
    await _refused(data)


async def test_snapshots_as_a_regular_file_fails_open_and_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _replica(data, 5)
    (data / "snapshots").rmdir()
    (data / "snapshots").write_bytes(b"")
    with pytest.raises(ReplicaError):
        async with open_replica(data, Counter()):
            pass  # pragma: no cover
    report = verify_directory(OsDirectory(data, read_only=True), shown_path=str(data))
    assert any("is not a directory" in p for p in report.problems)
