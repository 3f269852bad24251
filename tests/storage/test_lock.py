"""The data directory's lock, on real files: it survives whatever happens to LOCK,
says who holds it, and read-only tools never stand in a replica's way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trio_replica.errors import DirectoryLockedError, FatalStorageError, LockError
from trio_replica.journal import Entry, Journal
from trio_replica.storage import OsDirectory
from trio_replica.storage.osfs import is_held


async def test_removing_lock_never_lets_a_second_opener_in(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path) as journal:
        await journal.append([Entry(1, b"one")])
        (tmp_path / "LOCK").unlink()  # an operator clearing a "stale lock"
        with pytest.raises(DirectoryLockedError) as info:
            await Journal.open(tmp_path)
        assert info.value.path == str(tmp_path)
        # Recreated (by the refused opener or by hand), still refused.
        (tmp_path / "LOCK").write_text("whatever\n")
        with pytest.raises(DirectoryLockedError):
            await Journal.open(tmp_path)
        await journal.append([Entry(2, b"two")])
    async with await Journal.open(tmp_path) as reopened:
        assert reopened.last_op == 2


async def test_replacing_lock_with_a_directory_is_no_raw_os_error(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path) as journal:
        await journal.append([Entry(1, b"one")])
        (tmp_path / "LOCK").unlink()
        (tmp_path / "LOCK").mkdir()
        with pytest.raises(DirectoryLockedError) as info:
            await Journal.open(tmp_path)
        assert info.value.holder is None  # nothing to read: still refused, typed
    # Free again: the lock does not depend on the LOCK file at all.
    async with await Journal.open(tmp_path) as reopened:
        assert reopened.last_op == 1


async def test_the_refusal_says_who_holds_the_directory(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path):
        with pytest.raises(DirectoryLockedError) as info:
            OsDirectory(tmp_path).lock("LOCK")
        assert info.value.holder == f"pid {os.getpid()}"
        assert f"pid {os.getpid()}" in str(info.value)


def test_a_directory_that_cannot_be_opened_is_a_typed_lock_error(tmp_path: Path) -> None:
    gone = OsDirectory(tmp_path / "gone")
    with pytest.raises(LockError) as info:
        gone.lock("LOCK")
    assert info.value.path == str(tmp_path / "gone")


def _listing_dir(tmp_path: Path, ops: int) -> Path:
    import trio

    data = tmp_path / "data"

    async def write() -> None:
        async with await Journal.open(data, slot_count=ops) as journal:
            await journal.append([Entry(op, b"x" * 200) for op in range(1, ops + 1)])

    trio.run(write)
    return data


def test_a_reader_blocked_on_its_output_never_keeps_a_replica_from_starting(
    tmp_path: Path,
) -> None:
    # `trio-replica inspect DIR | less`, with less not reading: inspect sits
    # blocked on a full pipe in the middle of the directory.
    data = _listing_dir(tmp_path, 3000)
    reader = subprocess.Popen(
        [sys.executable, "-m", "trio_replica", "inspect", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        assert reader.poll() is None  # still there, blocked writing
        lock = OsDirectory(data).lock("LOCK")  # what a replica's open takes
        lock.release()
    finally:
        reader.kill()
        reader.wait()


def test_is_held_probes_without_taking_anything(tmp_path: Path) -> None:
    assert not is_held(str(tmp_path))
    lock = OsDirectory(tmp_path).lock("LOCK")
    try:
        assert is_held(str(tmp_path))
    finally:
        lock.release()
    assert not is_held(str(tmp_path))


async def test_rm_rf_under_a_running_journal_stops_acking(tmp_path: Path) -> None:
    data = tmp_path / "data"
    journal = await Journal.open(data)
    try:
        await journal.append([Entry(1, b"one")])
        shutil.rmtree(data)
        with pytest.raises(FatalStorageError) as info:
            await journal.append([Entry(2, b"two")])
        assert "unlinked" in str(info.value)
        assert journal.last_op == 1  # the batch was never acknowledged
    finally:
        await journal.aclose()


async def test_rm_of_the_wal_under_a_running_journal_stops_acking(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    try:
        await journal.append([Entry(1, b"one")])
        shutil.rmtree(tmp_path / "wal")
        with pytest.raises(FatalStorageError):
            await journal.append([Entry(2, b"two")])
    finally:
        await journal.aclose()
