"""Crash at every disk operation of a journal workload, on the simulated disk.

The simulated disk enumerates what a power loss may leave after each
operation: lost, kept, zero-filled and torn writes (sectors landing out of
order), and undone directory operations. Every such state must recover to a
prefix of what was written that includes every acknowledged op (invariants
1 and 2, docs/invariants.md), without ever raising: a crash alone is not corruption.
"""

from __future__ import annotations

import pytest
from journal_builder import body_of

from trio_replica.errors import StorageError
from trio_replica.journal import Case, Entry, Journal, scan_journal
from trio_replica.testing import CrashRecorder, SimulatedDisk


@pytest.mark.parametrize(
    "seed, sizes, body_size, segment_bytes",
    [(1, [3, 1, 5, 2, 4, 3], 150, 1200), (2, [8, 12, 6], 300, 4000)],
)
async def test_every_crash_state_recovers_a_prefix_with_every_acked_op(
    seed: int, sizes: list[int], body_size: int, segment_bytes: int
) -> None:
    disk = SimulatedDisk(seed=seed)
    written: list[Entry] = []
    acked = 0
    # Batches span several 512-byte sectors, so a torn batch really can keep
    # later records while losing earlier ones.
    with CrashRecorder(disk, context=lambda: acked, max_states_per_point=64) as recorder:
        journal = await Journal.open(disk, segment_bytes=segment_bytes, slot_count=64)
        for size in sizes:
            first = journal.last_op + 1
            entries = [Entry(first + i, body_of(first + i, body_size)) for i in range(size)]
            written += entries
            await journal.append(entries)
            acked = journal.last_op
        journal.set_watermark(8)
        await journal.compact()
        await journal.aclose()

    assert recorder.exhaustive and len(recorder.points) > 50
    observed: set[Case] = set()
    for point in recorder.points:
        try:
            scan_journal(point.state, observe=lambda case, path, offset: observed.add(case))
        except StorageError:
            assert point.context == 0  # the wal directory itself was not durable yet
        recovered = await Journal.open(point.state)
        assert recovered.last_op >= point.context, point.operation
        got = [e async for e in recovered.entries(after=recovered.first_op - 1)]
        assert got == written[recovered.first_op - 1 : recovered.last_op]
        # Recovery's repair is itself durable and final: the journal continues.
        nxt = Entry(recovered.last_op + 1, b"next")
        await recovered.append([nxt])
        await recovered.aclose()
        again = await Journal.open(point.state)
        assert again.last_op == nxt.op and again.recovery.bytes_truncated == 0
        assert (await again.read(nxt.op)) == nxt
        await again.aclose()
    # The crashes did produce every kind of torn tail, and nothing else.
    assert observed == {
        Case.SEGMENT_HEADER_VALID,
        Case.RECORD_VALID,
        Case.BAD_RECORD_NOTHING_VALID_AFTER,
        Case.BAD_RECORD_ONLY_SAME_BATCH_AFTER,
        Case.LAST_SEGMENT_HEADER_TORN,
    }
