"""Compaction deletes only covered whole segments, oldest first, and a crash at any step
recovers to the same state (invariant 7, docs/invariants.md)."""

from __future__ import annotations

import pytest
from journal_builder import build
from wal_edit import clone, records, segment_names, wal_bytes, wal_dir

from trio_replica.errors import CorruptionError
from trio_replica.journal import CompactedError, Entry, Journal
from trio_replica.storage import Directory, MemoryDirectory, OsDirectory
from trio_replica.testing import FaultyDirectory


async def test_compact_deletes_covered_segments(any_dir: Directory) -> None:
    _, written = await build([3] * 8, data=any_dir, segment_bytes=400, body_size=40)
    placed = records(any_dir)
    names = segment_names(any_dir)
    assert len(names) >= 4
    last_op_of = {name: max(r.op for r in placed if r.name == name) for name in names}
    journal = await Journal.open(any_dir, segment_bytes=400)
    assert journal.watermark == 0
    assert await journal.compact() == 0  # nothing covered yet
    watermark = last_op_of[names[2]] + 1  # covers segments 0..2, not 3
    journal.set_watermark(watermark)
    assert await journal.compact() == 3
    assert segment_names(any_dir) == names[3:]
    assert journal.first_op == last_op_of[names[2]] + 1 == int(names[3][:20])
    assert journal.watermark == watermark
    for entry in written[journal.first_op - 1 :]:
        assert await journal.read(entry.op) == entry
    with pytest.raises(CompactedError):
        await journal.read(journal.first_op - 1)
    # Appends continue; the last segment is never deleted even when fully covered.
    await journal.append([Entry(journal.last_op + 1, b"more")])
    journal.set_watermark(journal.last_op)
    await journal.compact()
    assert len(segment_names(any_dir)) == 1
    assert segment_names(any_dir)[0] == f"{journal.first_op:020d}.wal"
    last = journal.last_op
    await journal.aclose()

    journal = await Journal.open(any_dir)
    assert journal.last_op == last
    assert journal.first_op == int(segment_names(any_dir)[0][:20])
    assert journal.watermark == journal.first_op - 1
    expected = [*written, Entry(last, b"more")][journal.first_op - 1 :]
    assert [e async for e in journal.entries(after=journal.first_op - 1)] == expected
    await journal.append([Entry(last + 1, b"after compaction")])  # chain root is the header
    await journal.aclose()
    journal = await Journal.open(any_dir)
    assert (await journal.read(last + 1)).body == b"after compaction"
    await journal.aclose()


async def test_compaction_unlinks_oldest_first_with_a_directory_fsync_each() -> None:
    faulty = FaultyDirectory(MemoryDirectory())
    await build([2] * 6, data=faulty, segment_bytes=300, body_size=40)
    names = segment_names(faulty)
    journal = await Journal.open(faulty)
    journal.set_watermark(journal.last_op)
    faulty.plan.calls.clear()
    unlinked: list[str] = []
    wal = wal_dir(faulty)
    original_unlink = wal.unlink

    def recording_unlink(name: str) -> None:
        unlinked.append(name)
        original_unlink(name)

    journal._wal.unlink = recording_unlink  # type: ignore[method-assign]
    removed = await journal.compact()
    assert removed == len(names) - 1
    assert unlinked == names[:-1]
    # The superblock moves the journal's start first (temp file created,
    # written and fsynced, renamed, directory fsynced), then one unlink +
    # fsync each.
    superblock = ["create", "file_write", "file_sync", "rename", "dir_sync"]
    assert [op for op, _ in faulty.plan.calls] == superblock + ["unlink", "dir_sync"] * removed
    await journal.aclose()


async def test_crash_before_and_after_each_unlink_recovers() -> None:
    # A crash during compaction leaves the first k segments removed, for some
    # k (each unlink was made durable before the next). Every such state
    # opens to the same last op and the same entries from its first op on.
    data, written = await build([2] * 7, segment_bytes=300, body_size=40)
    names = segment_names(data)
    assert len(names) >= 4
    files = wal_bytes(data)
    before = clone(files, like=data)  # the superblock from before the compaction
    # Compaction writes the superblock (the journal's new start) before the
    # first unlink; take that superblock from a real compaction.
    journal = await Journal.open(data)
    journal.set_watermark(journal.last_op)
    await journal.compact()
    await journal.aclose()
    for k in range(len(names)):  # k == 0: crash before the first unlink
        if k:
            # With the old superblock, a missing leading segment is a loss.
            lost = clone({n: c for n, c in files.items() if n not in names[:k]}, like=before)
            with pytest.raises(CorruptionError, match="leading segments were lost"):
                await Journal.open(lost)
        state = clone({n: c for n, c in files.items() if n not in names[:k]}, like=data)
        journal = await Journal.open(state)
        assert journal.last_op == len(written)
        assert journal.first_op == int(names[k][:20])
        got = [e async for e in journal.entries(after=journal.first_op - 1)]
        assert got == written[journal.first_op - 1 :]
        journal.set_watermark(journal.last_op)
        assert await journal.compact() == len(names) - 1 - k  # finishing the job works
        await journal.aclose()


async def test_compaction_on_real_files(os_dir: OsDirectory) -> None:
    _, written = await build([4] * 5, data=os_dir, segment_bytes=500, body_size=30)
    journal = await Journal.open(os_dir)
    journal.set_watermark(10)
    assert await journal.compact() >= 1
    first = journal.first_op
    await journal.aclose()
    journal = await Journal.open(os_dir)
    assert journal.first_op == first
    assert [e async for e in journal.entries(after=first - 1)] == written[first - 1 :]
    await journal.aclose()
