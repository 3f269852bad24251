"""Truncating the journal's uncommitted suffix and appending a replacement.

A cluster replica cuts its journal after op ``keep`` when a view change
decided another log, then appends the decided ops. Checked here on the
simulated disk: the result reads back exactly, the hash chain and the
journal-end evidence stay right across segments, and every state a power
loss could leave at any step recovers to a prefix of the old journal that
keeps ``1..keep``, or to ``1..keep`` followed by a prefix of the new ops;
once ``truncate_after`` returned, the old suffix never comes back.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from journal_builder import body_of

from trio_replica.errors import InvalidAppendError
from trio_replica.journal import Entry, Journal
from trio_replica.testing import CrashRecorder, SimulatedDisk


async def _build(disk: SimulatedDisk, sizes: list[int], segment_bytes: int) -> list[Entry]:
    journal = await Journal.open(disk, segment_bytes=segment_bytes, slot_count=256)
    written: list[Entry] = []
    for size in sizes:
        first = journal.last_op + 1
        entries = [Entry(first + i, body_of(first + i, 150)) for i in range(size)]
        await journal.append(entries)
        written += entries
    await journal.aclose()
    return written


def _replacement(first: int, count: int) -> list[Entry]:
    return [Entry(first + i, b"new-%d" % (first + i) * 20) for i in range(count)]


async def _read_all(journal: Journal) -> list[Entry]:
    return [e async for e in journal.entries()]


@settings(max_examples=25)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    keep_fraction=st.floats(0.0, 1.0),
    new=st.integers(0, 6),
)
def test_truncate_then_append_reads_back_and_reopens(
    sizes: list[int], keep_fraction: float, new: int
) -> None:
    import trio

    async def body() -> None:
        disk = SimulatedDisk(seed=sum(sizes))
        old = await _build(disk, sizes, segment_bytes=900)
        keep = int(keep_fraction * len(old))
        journal = await Journal.open(disk, segment_bytes=900, slot_count=256)
        segments_before = journal.segment_first_ops
        await journal.truncate_after(keep)
        assert journal.last_op == keep
        assert all(first <= keep + 1 for first in journal.segment_first_ops)
        assert journal.superblock.wal_head_op == journal.segment_first_ops[-1]
        assert len(journal.segment_first_ops) <= len(segments_before)
        replacement = _replacement(keep + 1, new)
        if replacement:
            await journal.append(replacement)
        expected = old[:keep] + replacement
        assert await _read_all(journal) == expected
        await journal.aclose()
        again = await Journal.open(disk.crash(), segment_bytes=900, slot_count=256)
        assert again.recovery.bytes_truncated == 0
        assert await _read_all(again) == expected
        await again.aclose()

    trio.run(body)


async def test_truncate_bounds() -> None:
    disk = SimulatedDisk(seed=3)
    await _build(disk, [3, 3], segment_bytes=900)
    journal = await Journal.open(disk, segment_bytes=900, slot_count=256)
    journal.set_watermark(2)
    with pytest.raises(InvalidAppendError):
        await journal.truncate_after(1)  # below the snapshot watermark
    with pytest.raises(InvalidAppendError):
        await journal.truncate_after(7)  # beyond the end
    await journal.truncate_after(6)  # nothing to cut
    assert journal.last_op == 6
    await journal.aclose()


@pytest.mark.parametrize("keep, new", [(3, 4), (9, 2), (0, 3)])
async def test_every_crash_state_is_the_old_journal_or_the_new(keep: int, new: int) -> None:
    disk = SimulatedDisk(seed=11 + keep)
    old = await _build(disk, [3, 3, 3, 3], segment_bytes=900)  # four segments
    replacement = _replacement(keep + 1, new)
    phase = ("before", 0)
    with CrashRecorder(disk, context=lambda: phase, max_states_per_point=48) as recorder:
        journal = await Journal.open(disk, segment_bytes=900, slot_count=256)
        assert len(journal.segment_first_ops) >= 3
        await journal.truncate_after(keep)
        phase = ("truncated", 0)
        for i, entry in enumerate(replacement):
            await journal.append([entry])
            phase = ("truncated", i + 1)
        await journal.aclose()

    assert len(recorder.points) > 8 and recorder.exhaustive
    seen = set()
    for point in recorder.points:
        recovered = await Journal.open(point.state, segment_bytes=900, slot_count=256)
        got = await _read_all(recovered)
        await recovered.aclose()
        stage, acked_new = point.context
        assert got[:keep] == old[:keep], point.operation
        tail = got[keep:]
        if tail == old[keep : len(got)]:
            # a prefix of the old journal: only before the truncation returned
            assert stage == "before" or not tail, point.operation
            seen.add("old")
        else:
            assert tail == replacement[: len(tail)], point.operation
            assert len(tail) >= acked_new, point.operation
            seen.add("new")
    assert seen == {"old", "new"}
