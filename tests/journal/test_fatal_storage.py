"""A failed write or fsync is fatal: the journal refuses every later call, and recovery
afterwards keeps exactly what is durable."""

from __future__ import annotations

import pytest

from trio_replica.errors import ClosedError, FatalStorageError
from trio_replica.journal import Entry, Journal
from trio_replica.storage import MemoryDirectory
from trio_replica.testing import FaultyDirectory


async def assert_refuses_everything(journal: Journal) -> None:
    with pytest.raises(FatalStorageError):
        await journal.append([Entry(journal.last_op + 1, b"again")])
    with pytest.raises(FatalStorageError):
        await journal.read(1)
    with pytest.raises(FatalStorageError):
        [e async for e in journal.entries()]
    with pytest.raises(FatalStorageError):
        await journal.compact()
    with pytest.raises(FatalStorageError):
        journal.set_watermark(0)
    assert journal.failed


@pytest.mark.parametrize("fault", ["file_sync", "file_write"])
async def test_failed_fsync_or_write_is_fatal(fault: str) -> None:
    memory = MemoryDirectory()
    faulty = FaultyDirectory(memory)
    journal = await Journal.open(faulty)
    await journal.append([Entry(1, b"one")])
    rule = faulty.plan.fail(fault)  # type: ignore[arg-type]
    with pytest.raises(FatalStorageError) as info:
        await journal.append([Entry(2, b"two")])
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.stage == "append"
    assert journal.last_op == 1  # in-memory state did not move
    faulty.plan.remove(rule)  # even once the disk "works" again: no retry
    await assert_refuses_everything(journal)
    await journal.aclose()  # closing still releases the lock
    with pytest.raises((FatalStorageError, ClosedError)):
        await journal.append([Entry(2, b"two")])
    reopened = await Journal.open(memory)
    assert reopened.last_op >= 1
    assert (await reopened.read(1)).body == b"one"
    await reopened.aclose()


async def test_failed_segment_creation_is_fatal() -> None:
    faulty = FaultyDirectory(MemoryDirectory())
    journal = await Journal.open(faulty, segment_bytes=320)
    await journal.append([Entry(1, b"x" * 50)])
    rule = faulty.plan.fail("dir_sync")  # the roll's directory fsync fails
    with pytest.raises(FatalStorageError):
        await journal.append([Entry(2, b"y" * 200)])
    assert journal.segment_first_ops == (1,)
    faulty.plan.remove(rule)
    await assert_refuses_everything(journal)
    await journal.aclose()


async def test_failed_compaction_unlink_is_fatal_and_recoverable() -> None:
    memory = MemoryDirectory()
    faulty = FaultyDirectory(memory)
    journal = await Journal.open(faulty, segment_bytes=320)
    for op in range(1, 9):
        await journal.append([Entry(op, b"z" * 60)])
    assert len(journal.segment_first_ops) >= 3
    journal.set_watermark(8)
    faulty.plan.fail("unlink", after=1)  # the first unlink works, the second fails
    with pytest.raises(FatalStorageError):
        await journal.compact()
    await assert_refuses_everything(journal)
    await journal.aclose()
    reopened = await Journal.open(memory)
    assert reopened.last_op == 8
    assert [e.op async for e in reopened.entries(after=reopened.first_op - 1)] == list(
        range(reopened.first_op, 9)
    )
    await reopened.aclose()


async def test_append_fsyncs_once_per_batch() -> None:
    faulty = FaultyDirectory(MemoryDirectory())
    journal = await Journal.open(faulty)
    await journal.append([Entry(1, b"a")])  # creates the first segment
    faulty.plan.calls.clear()
    await journal.append([Entry(op, b"b") for op in range(2, 200)])
    assert [op for op, _ in faulty.plan.calls] == ["file_write", "file_sync"]
    await journal.aclose()


async def test_new_segment_is_durable_before_records() -> None:
    faulty = FaultyDirectory(MemoryDirectory())
    journal = await Journal.open(faulty)
    faulty.plan.calls.clear()  # the first open wrote the superblock
    await journal.append([Entry(1, b"a")])
    # create: header write, file fsync, directory fsync; the superblock naming
    # it (temp created, written, fsynced, renamed, directory fsync); then the
    # batch: write, fsync
    assert [op for op, _ in faulty.plan.calls] == [
        *["create", "file_write", "file_sync", "dir_sync"],
        *["create", "file_write", "file_sync", "rename", "dir_sync"],
        *["file_write", "file_sync"],
    ]
    await journal.aclose()
