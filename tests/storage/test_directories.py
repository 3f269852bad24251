"""The two Directory implementations behave the same, and locks exclude."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from trio_replica.errors import DirectoryLockedError
from trio_replica.storage import (
    Directory,
    MemoryDirectory,
    OsDirectory,
    open_directory,
    run_io,
)


@pytest.fixture(params=["os", "memory"])
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> Directory:
    if request.param == "os":
        return OsDirectory.open_path(tmp_path / "d", create=True)
    return MemoryDirectory()


def test_file_positional_io(directory: Directory) -> None:
    f = directory.open("a", create=True)
    assert f.size() == 0
    assert f.append(b"hello") == 0
    assert f.append(b" world") == 5
    f.write_at(0, b"J")
    assert f.read_at(0, 100) == b"Jello world"
    assert f.read_at(6, 3) == b"wor"
    f.write_at(20, b"x")  # writing past the end extends with zeros
    assert f.size() == 21
    assert f.read_at(11, 10) == bytes(9) + b"x"
    f.truncate(5)
    assert f.size() == 5
    assert f.read_at(0, 100) == b"Jello"
    f.sync()
    f.close()
    f.close()
    g = directory.open("a")
    assert g.read_at(0, 5) == b"Jello"
    g.close()


def test_create_is_exclusive_and_open_requires_existence(directory: Directory) -> None:
    directory.open("a", create=True).close()
    with pytest.raises(FileExistsError):
        directory.open("a", create=True)
    with pytest.raises(FileNotFoundError):
        directory.open("missing")


def test_rename_unlink_listdir_subdir(directory: Directory) -> None:
    directory.open("a", create=True).close()
    b = directory.open("b", create=True)
    b.append(b"B")
    b.close()
    directory.rename("b", "a")  # replaces
    assert directory.listdir() == ["a"]
    f = directory.open("a")
    assert f.read_at(0, 1) == b"B"
    f.close()
    with pytest.raises(FileNotFoundError):
        directory.subdir("sub")
    sub = directory.subdir("sub", create=True)
    assert directory.is_dir("sub") and not directory.is_dir("a")
    sub.open("x", create=True).close()
    assert directory.subdir("sub").listdir() == ["x"]
    directory.unlink("a")
    directory.sync()
    assert directory.listdir() == ["sub"]
    assert not directory.exists("a")
    with pytest.raises(ValueError, match="invalid file name"):
        directory.open("../escape", create=True)


def test_lock_excludes_second_holder(directory: Directory) -> None:
    lock = directory.lock("LOCK")
    with pytest.raises(DirectoryLockedError) as info:
        directory.lock("LOCK")
    assert info.value.path == directory.path
    lock.release()
    directory.lock("LOCK").release()


def test_os_lock_excludes_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    directory = OsDirectory.open_path(tmp_path, create=True)
    lock = directory.lock("LOCK")
    code = (
        "import sys\n"
        "from trio_replica.storage import OsDirectory\n"
        "from trio_replica.errors import DirectoryLockedError\n"
        "try:\n"
        f"    OsDirectory({str(tmp_path)!r}).lock('LOCK')\n"
        "except DirectoryLockedError:\n"
        "    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    lock.release()
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_open_path_creates_parents_and_refuses_files(tmp_path: Path) -> None:
    from trio_replica.errors import StorageError

    d = OsDirectory.open_path(tmp_path / "x" / "y", create=True)
    assert os.path.isdir(d.path)
    with pytest.raises(StorageError, match="does not exist"):
        OsDirectory.open_path(tmp_path / "nope", create=False)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="not a directory"):
        OsDirectory.open_path(tmp_path / "file", create=True)


async def test_open_directory_and_run_io(tmp_path: Path) -> None:
    mem = MemoryDirectory()
    assert await open_directory(mem, create=False) is mem
    real = await open_directory(tmp_path / "r", create=True)
    assert isinstance(real, OsDirectory)
    with pytest.raises(TypeError):
        await open_directory(42, create=True)  # type: ignore[arg-type]

    def batch() -> int:
        f = real.open("f", create=True)
        f.append(b"abc")
        f.sync()
        size = f.size()
        f.close()
        return size

    assert await run_io(real, batch) == 3


async def test_run_io_never_abandons_started_work() -> None:
    """A cancel that arrives while the batch runs is deferred, not lost work."""
    mem = MemoryDirectory()
    ran: list[int] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await run_io(mem, lambda: ran.append(1))
    assert ran == []  # cancelled before it started: nothing ran

    async def cancel_soon(scope: trio.CancelScope) -> None:
        scope.cancel()

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            # The batch runs inline; the cancel is requested before the call
            # but after the batch starts it must complete and return.
            def work() -> int:
                ran.append(2)
                scope.cancel()
                return 7

            result = await run_io(mem, work)
            assert result == 7
        nursery.cancel_scope.cancel()
    assert ran == [2]


def test_read_only_os_directory_reads_and_refuses_every_change(tmp_path: Path) -> None:
    writable = OsDirectory.open_path(tmp_path / "d", create=True)
    f = writable.subdir("wal", create=True).open("a", create=True)
    f.append(b"data")
    f.close()

    ro = OsDirectory(tmp_path / "d", read_only=True)
    assert ro.read_only
    wal = ro.subdir("wal")
    assert isinstance(wal, OsDirectory) and wal.read_only  # read-only all the way down
    g = wal.open("a")
    assert g.read_at(0, 4) == b"data"
    with pytest.raises(OSError):  # the descriptor itself is read-only
        g.write_at(0, b"X")
    g.close()
    for change in (
        lambda: wal.open("b", create=True),
        lambda: wal.rename("a", "b"),
        lambda: wal.unlink("a"),
        lambda: ro.subdir("new", create=True),
        lambda: ro.lock("LOCK"),
    ):
        with pytest.raises(PermissionError, match="read-only"):
            change()
    assert sorted(os.listdir(tmp_path / "d")) == ["wal"]
    assert (tmp_path / "d" / "wal" / "a").read_bytes() == b"data"
