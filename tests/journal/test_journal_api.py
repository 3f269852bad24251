"""The Journal's public behaviour: append/read/entries, bad input, watermark, closing, locking."""

from __future__ import annotations

import pytest
import trio
from wal_edit import segment_names, wal_bytes

from trio_replica.errors import (
    BodyTooLargeError,
    ClosedError,
    DirectoryLockedError,
    InvalidAppendError,
    JournalFull,
    StorageError,
)
from trio_replica.journal import (
    CompactedError,
    Entry,
    InvalidWatermarkError,
    Journal,
    JournalBusyError,
    OpNotFoundError,
)
from trio_replica.storage import Directory, MemoryDirectory
from trio_replica.testing import FaultyDirectory


def batch(first: int, *bodies: bytes) -> list[Entry]:
    return [Entry(first + i, body) for i, body in enumerate(bodies)]


async def test_empty_journal(any_dir: Directory) -> None:
    async with await Journal.open(any_dir) as journal:
        assert (journal.first_op, journal.last_op, journal.watermark) == (1, 0, 0)
        assert journal.remaining_capacity == 1024
        assert [e async for e in journal.entries()] == []
        with pytest.raises(OpNotFoundError):
            await journal.read(1)
        assert journal.recovery.records == 0 and journal.recovery.bytes_truncated == 0
    # Nothing is created before the first append.
    assert segment_names(any_dir) == []


async def test_append_read_entries_and_reopen(any_dir: Directory) -> None:
    journal = await Journal.open(any_dir, slot_count=8, segment_bytes=400)
    written = []
    for i in range(6):
        entries = batch(journal.last_op + 1, *(bytes([i, k]) * (k * 11) for k in range(i % 3 + 1)))
        await journal.append(entries)
        written += entries
        journal.set_watermark(journal.last_op)  # keep ring capacity free
    assert journal.last_op == len(written)
    assert len(segment_names(any_dir)) > 1
    for entry in written:
        assert await journal.read(entry.op) == entry
    assert [e async for e in journal.entries()] == written
    assert [e async for e in journal.entries(after=4)] == written[4:]
    assert [e async for e in journal.entries(after=len(written))] == []
    await journal.aclose()

    journal = await Journal.open(any_dir, slot_count=8, segment_bytes=400)
    assert journal.last_op == len(written) and journal.recovery.records == len(written)
    assert journal.recovery.segments == len(segment_names(any_dir))
    assert [e async for e in journal.entries()] == written
    for entry in written:  # old ops (not in the ring) are found by scanning their segment
        assert await journal.read(entry.op) == entry
    await journal.aclose()


async def test_entries_sees_appends_made_while_iterating(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir) as journal:
        await journal.append(batch(1, b"a", b"b"))
        seen = []
        async for entry in journal.entries():
            seen.append(entry.op)
            if entry.op == 2:
                await journal.append(batch(3, b"c"))
        assert seen == [1, 2, 3]


async def test_read_out_of_range(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir) as journal:
        await journal.append(batch(1, b"a"))
        for op in (0, -1, 2):
            with pytest.raises(OpNotFoundError):
                await journal.read(op)
        with pytest.raises(ValueError):
            [e async for e in journal.entries(after=-1)]


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda last: [], InvalidAppendError),
        (lambda last: batch(last + 2, b"x"), InvalidAppendError),
        (lambda last: batch(last, b"x"), InvalidAppendError),
        (lambda last: [*batch(last + 1, b"x"), Entry(last + 3, b"y")], InvalidAppendError),
        (lambda last: [Entry(last + 1, "text")], InvalidAppendError),  # type: ignore[arg-type]
        (lambda last: [(last + 1, b"x")], InvalidAppendError),
        (lambda last: batch(last + 1, b"ok", b"x" * 101), BodyTooLargeError),
        (lambda last: batch(last + 1, *[b"z"] * 6), JournalFull),
    ],
)
async def test_bad_input_changes_nothing(any_dir: Directory, make, error) -> None:  # type: ignore[no-untyped-def]
    journal = await Journal.open(any_dir, slot_count=8, max_body_bytes=100)
    await journal.append(batch(1, b"one", b"two", b"three"))
    before = wal_bytes(any_dir)
    state = (journal.last_op, journal.remaining_capacity, journal.segment_first_ops)
    with pytest.raises(error):
        await journal.append(make(journal.last_op))
    assert wal_bytes(any_dir) == before
    assert (journal.last_op, journal.remaining_capacity, journal.segment_first_ops) == state
    # And the journal still works.
    await journal.append(batch(4, b"four"))
    assert (await journal.read(4)).body == b"four"
    await journal.aclose()
    journal = await Journal.open(any_dir, slot_count=8, max_body_bytes=100)
    assert [e.body async for e in journal.entries()] == [b"one", b"two", b"three", b"four"]
    await journal.aclose()


async def test_body_at_the_limit_is_accepted(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir, max_body_bytes=100) as journal:
        await journal.append(batch(1, b"x" * 100, b""))
        assert (await journal.read(1)).body == b"x" * 100
        assert (await journal.read(2)).body == b""
        with pytest.raises(BodyTooLargeError) as info:
            await journal.append(batch(3, b"x" * 101))
        assert (info.value.op, info.value.size, info.value.limit) == (3, 101, 100)


async def test_journal_full_and_watermark(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir, slot_count=4) as journal:
        await journal.append(batch(1, b"a", b"b", b"c"))
        assert journal.remaining_capacity == 1
        before = wal_bytes(memory_dir)
        with pytest.raises(JournalFull) as info:
            await journal.append(batch(4, b"d", b"e"))
        assert (info.value.last_op, info.value.watermark, info.value.slot_count) == (3, 0, 4)
        assert wal_bytes(memory_dir) == before
        await journal.append(batch(4, b"d"))
        assert journal.remaining_capacity == 0
        with pytest.raises(JournalFull):
            await journal.append(batch(5, b"e"))
        journal.set_watermark(2)
        assert journal.remaining_capacity == 2
        await journal.append(batch(5, b"e", b"f"))
        # Un-snapshotted ops are never overwritten in the ring: all still readable.
        assert [(await journal.read(op)).body for op in range(3, 7)] == [b"c", b"d", b"e", b"f"]
        for bad in (1, 7):  # backwards, beyond last_op
            with pytest.raises(InvalidWatermarkError):
                journal.set_watermark(bad)
        assert journal.watermark == 2


async def test_closed_journal_refuses_use(memory_dir: MemoryDirectory) -> None:
    journal = await Journal.open(memory_dir)
    await journal.append(batch(1, b"a"))
    await journal.aclose()
    await journal.aclose()  # idempotent
    before = wal_bytes(memory_dir)
    with pytest.raises(ClosedError):
        await journal.append(batch(2, b"b"))
    with pytest.raises(ClosedError):
        await journal.read(1)
    with pytest.raises(ClosedError):
        await journal.compact()
    with pytest.raises(ClosedError):
        [e async for e in journal.entries()]
    with pytest.raises(ClosedError):
        journal.set_watermark(1)
    assert wal_bytes(memory_dir) == before


async def test_lock_excludes_a_second_opener(any_dir: Directory) -> None:
    journal = await Journal.open(any_dir)
    with pytest.raises(DirectoryLockedError):
        await Journal.open(any_dir)
    # A holder of the lock (the replica) opens with lock=False.
    other = await Journal.open(any_dir, lock=False)
    await other.aclose()
    await journal.aclose()
    again = await Journal.open(any_dir)  # released on close
    await again.aclose()


async def test_create_false_requires_the_wal_directory(memory_dir: MemoryDirectory) -> None:
    with pytest.raises(StorageError):
        await Journal.open(memory_dir, create=False)
    # The lock was released by the failed open.
    journal = await Journal.open(memory_dir)
    await journal.aclose()
    journal = await Journal.open(memory_dir, create=False)
    await journal.aclose()


async def test_concurrent_writers_are_refused(memory_dir: MemoryDirectory) -> None:
    faulty = FaultyDirectory(memory_dir)
    journal = await Journal.open(faulty)
    await journal.append(batch(1, b"a"))
    # The next fsync blocks (in a worker thread) until the gate opens.
    gate = faulty.plan.gate("file_sync")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.append, batch(2, b"b"))
        with trio.fail_after(10):
            await gate.reached.wait()
        with pytest.raises(JournalBusyError):
            await journal.append(batch(2, b"c"))
        with pytest.raises(JournalBusyError):
            await journal.compact()
        with pytest.raises(JournalBusyError):
            await journal.aclose()
        # Reads may run alongside the writer.
        assert (await journal.read(1)).body == b"a"
        gate.open()
    faulty.plan.clear()
    assert journal.last_op == 2 and (await journal.read(2)).body == b"b"
    await journal.aclose()


async def test_compacted_reads_raise(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir, segment_bytes=300, slot_count=100) as journal:
        for op in range(1, 13):
            await journal.append(batch(op, b"x" * 40))
        journal.set_watermark(8)
        removed = await journal.compact()
        assert removed >= 1 and journal.first_op > 1
        with pytest.raises(CompactedError):
            await journal.read(1)
        with pytest.raises(CompactedError):
            [e async for e in journal.entries(after=0)]
        assert [e.op async for e in journal.entries(after=journal.first_op - 1)] == list(
            range(journal.first_op, 13)
        )


async def test_cancelled_append_did_nothing_or_completed(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir) as journal:
        with trio.CancelScope() as scope:
            scope.cancel()
            await journal.append(batch(1, b"a"))
        assert journal.last_op == 0 and wal_bytes(memory_dir) == {}
        await journal.append(batch(1, b"a"))
        assert journal.last_op == 1


async def test_a_batch_never_spans_segments(memory_dir: MemoryDirectory) -> None:
    async with await Journal.open(memory_dir, segment_bytes=400) as journal:
        await journal.append(batch(1, b"a" * 10))
        # Larger than segment_bytes: rolls, then goes whole into the new segment.
        big = batch(2, *[b"b" * 50] * 10)
        await journal.append(big)
        assert journal.segment_first_ops == (1, 2)
        sizes = {name: len(content) for name, content in wal_bytes(memory_dir).items()}
        assert sizes["00000000000000000002.wal"] == 80 + 10 * (128 + 56)  # overshoots 400
        await journal.append(batch(12, b"c"))  # does not fit: rolls again
        assert list(journal.segment_first_ops) == [1, 2, 12]
    journal = await Journal.open(memory_dir, segment_bytes=400)
    assert [e async for e in journal.entries()] == [*batch(1, b"a" * 10), *big, *batch(12, b"c")]
    await journal.aclose()
