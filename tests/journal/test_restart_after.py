"""Restarting the journal at ``base + 1`` after an installed snapshot.

A cluster replica that installed a snapshot fetched from a peer drops its
whole journal and continues at ``base + 1`` from the chain checksum the
snapshot carries. Checked on the simulated disk: the restarted journal
reads back, appends and reopens with the right first op, chain and
journal-end evidence; every state a power loss could leave at any step of
the restart (and of the first appends after it) opens as the old journal
whole or as the restarted one (with a prefix of the new ops), never a mix;
a process crash in the middle (segments left behind) is cleaned up at open.
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from journal_builder import body_of

from trio_replica.errors import InvalidAppendError
from trio_replica.journal import Entry, Journal
from trio_replica.journal.record import GENESIS_PARENT
from trio_replica.journal.restart import restart_superblock
from trio_replica.journal.superblock import read_superblock, write_superblock
from trio_replica.testing import CrashRecorder, SimulatedDisk

PARENT = bytes(range(16))


async def _build(disk: SimulatedDisk, sizes: list[int], segment_bytes: int = 900) -> list[Entry]:
    journal = await Journal.open(disk, segment_bytes=segment_bytes, slot_count=256)
    written: list[Entry] = []
    for size in sizes:
        first = journal.last_op + 1
        entries = [Entry(first + i, body_of(first + i, 150)) for i in range(size)]
        await journal.append(entries)
        written += entries
    await journal.aclose()
    return written


def _new(first: int, count: int) -> list[Entry]:
    return [Entry(first + i, b"after-%d" % (first + i) * 20) for i in range(count)]


async def _read_all(journal: Journal) -> list[Entry]:
    return [e async for e in journal.entries(after=journal.first_op - 1)]


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), max_size=5),
    ahead=st.integers(0, 30),
    new=st.integers(0, 7),
)
def test_restart_reads_back_appends_and_reopens(sizes: list[int], ahead: int, new: int) -> None:
    async def body() -> None:
        disk = SimulatedDisk(seed=sum(sizes) + ahead)
        old = await _build(disk, sizes)
        # A snapshot behind, inside, or ahead of the old journal.
        base = max(1, len(old) - 5 + ahead)
        journal = await Journal.open(disk, segment_bytes=900, slot_count=256)
        await journal.restart_after(base, PARENT)
        assert (journal.first_op, journal.last_op, journal.watermark) == (base + 1, base, base)
        assert journal.segment_first_ops == ()
        assert await journal.checksum_at(base) == PARENT
        assert journal.remaining_capacity == journal.slot_count
        added = _new(base + 1, new)
        for entry in added:
            await journal.append([entry])
        assert await _read_all(journal) == added
        if added:
            assert journal.segment_first_ops[0] == base + 1
            assert journal.superblock.wal_first_op == base + 1
            assert journal.superblock.wal_head_op == journal.segment_first_ops[-1]
        await journal.aclose()
        again = await Journal.open(disk.crash(), segment_bytes=900, slot_count=256)
        assert again.recovery.bytes_truncated == 0
        assert (again.first_op, again.last_op) == (base + 1, base + len(added))
        assert await again.checksum_at(base) == PARENT
        assert await _read_all(again) == added
        await again.aclose()

    trio.run(body)


async def test_restart_bounds_change_nothing() -> None:
    disk = SimulatedDisk(seed=5)
    old = await _build(disk, [3, 3])
    journal = await Journal.open(disk, segment_bytes=900, slot_count=256)
    with pytest.raises(InvalidAppendError):
        await journal.restart_after(0, PARENT)  # op 0 is the empty state: nothing to restart
    with pytest.raises(InvalidAppendError):
        await journal.restart_after(3, b"short")
    await journal.restart_after(10, PARENT)
    with pytest.raises(InvalidAppendError):
        await journal.restart_after(9, PARENT)  # never back before what was dropped
    await journal.restart_after(12, GENESIS_PARENT)  # a later restart is fine
    assert journal.first_op == 13
    await journal.aclose()
    again = await Journal.open(disk, segment_bytes=900, slot_count=256)
    assert (again.first_op, again.last_op) == (13, 12)
    await again.aclose()
    assert old  # the old ops were really there before


@pytest.mark.parametrize("base, new", [(5, 3), (20, 4), (8, 0)])
async def test_every_crash_state_is_the_old_journal_or_the_restarted_one(
    base: int, new: int
) -> None:
    disk = SimulatedDisk(seed=31 + base)
    old = await _build(disk, [3, 3, 3, 3])  # four segments, ops 1..12
    added = _new(base + 1, new)
    phase = ("before", 0)
    with CrashRecorder(disk, context=lambda: phase, max_states_per_point=48) as recorder:
        journal = await Journal.open(disk, segment_bytes=900, slot_count=256)
        assert len(journal.segment_first_ops) >= 3
        await journal.restart_after(base, PARENT)
        phase = ("restarted", 0)
        for i, entry in enumerate(added):
            await journal.append([entry])
            phase = ("restarted", i + 1)
        await journal.aclose()

    assert len(recorder.points) > 8 and recorder.exhaustive
    seen = set()
    for point in recorder.points:
        recovered = await Journal.open(point.state, segment_bytes=900, slot_count=256)
        stage, acked = point.context
        if recovered.first_op == 1:
            # the old journal, whole: only before the restart returned
            assert stage == "before", point.operation
            assert await _read_all(recovered) == old, point.operation
            seen.add("old")
        else:
            assert recovered.first_op == base + 1, point.operation
            assert await recovered.checksum_at(base) == PARENT, point.operation
            got = await _read_all(recovered)
            assert got == added[: len(got)] and len(got) >= acked, point.operation
            # nothing of the old journal is left on disk after the open
            assert all(first > base for first in recovered.segment_first_ops), point.operation
            seen.add("restarted")
        await recovered.aclose()
    assert seen == {"old", "restarted"}


async def test_process_crash_between_the_superblock_and_the_unlinks() -> None:
    """The restart evidence is durable but old segments are still there (the
    process died before unlinking them): the open deletes them."""
    disk = SimulatedDisk(seed=8)
    await _build(disk, [4, 4, 4])
    # Write only step 1 (the superblock), as a crash right after it leaves.
    block = read_superblock(disk)
    assert block is not None
    write_superblock(disk, restart_superblock(block, 6, PARENT))
    state = disk.process_crash()
    journal = await Journal.open(state, segment_bytes=900, slot_count=256)
    assert (journal.first_op, journal.last_op, journal.segment_first_ops) == (7, 6, ())
    await journal.append(_new(7, 2))
    assert await _read_all(journal) == _new(7, 2)
    await journal.aclose()
    assert state.subdir("wal").listdir() == [f"{7:020d}.wal"]
