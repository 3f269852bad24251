"""A full journal makes submitters wait for a checkpoint; it never fails them."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replica_machines import Ledger, check_prefix

from trio_replica import open_replica
from trio_replica.journal import Journal
from trio_replica.replica import default_slot_count
from trio_replica.storage import MemoryDirectory


async def run_load(
    disk: MemoryDirectory,
    *,
    submitters: int,
    per_submitter: int,
    checkpoint_every: int = 0,
    offset: int = 0,
    **options: int,
) -> dict[int, int]:
    acked: dict[int, int] = {}
    async with open_replica(disk, Ledger(), **options) as replica:

        async def submitter(task: int) -> None:
            for i in range(per_submitter):
                value = offset + task * 100_000 + i
                acked[(await replica.execute({"v": value})).op] = value
                if checkpoint_every and i % checkpoint_every == checkpoint_every - 1:
                    await replica.checkpoint()

        async with trio.open_nursery() as nursery:
            for task in range(submitters):
                nursery.start_soon(submitter, task)
    return acked


async def test_tiny_ring_waits_for_snapshots_and_compacts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = MemoryDirectory()
    with trio.fail_after(30):
        acked = await run_load(
            disk,
            submitters=16,
            per_submitter=40,
            slot_count=8,
            snapshot_every=1_000_000,  # only capacity pressure triggers snapshots
            segment_bytes=512,
        )
    assert len(acked) == 16 * 40
    journal = await Journal.open(disk, lock=False)
    try:
        # The ring holds 8 ops, 640 were written: snapshots freed it many
        # times, and compaction deleted the segments they covered.
        assert journal.last_op == 640
        assert journal.first_op > 500
        assert len(journal.segment_first_ops) <= 4
    finally:
        await journal.aclose()
    async with open_replica(disk, Ledger(), slot_count=8) as replica:
        assert replica.recovery.snapshot_op > 600
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]


async def test_reopening_with_a_smaller_ring_still_makes_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The journal holds more ops after the oldest retained snapshot than the
    new ring can: no snapshot can free it by moving the watermark to the
    OLDEST retained one, so the writer frees the ring up to the newest durable
    snapshot while holding compaction back; falling back to the oldest
    snapshot must still find every op after it."""
    disk = MemoryDirectory()
    options: dict[str, int] = {"segment_bytes": 256, "keep_snapshots": 3}
    acked: dict[int, int] = {}
    async with open_replica(disk, Ledger(), slot_count=1024, max_batch=1, **options) as replica:
        for value in range(100):
            acked[(await replica.execute({"v": value})).op] = value
            if value + 1 in (10, 20):
                await replica.checkpoint()
    with trio.fail_after(60):
        async with open_replica(disk, Ledger(), slot_count=12, **options) as replica:
            acked[(await replica.execute({"v": 1000})).op] = 1000
            assert await replica.checkpoint() == 101
    snapshots = disk.subdir("snapshots")
    names = sorted(name for name in snapshots.listdir() if name.endswith(".snapshot"))
    assert [int(name.split(".")[0]) for name in names] == [20, 100, 101]
    for name in names[1:]:  # damage the two newest: recovery must fall back to op 20
        damaged = snapshots.open(name)
        last = damaged.size() - 1
        damaged.write_at(last, bytes([damaged.read_at(last, 1)[0] ^ 0xFF]))
    async with open_replica(disk, Ledger(), slot_count=12, **options) as replica:
        assert replica.recovery.snapshots_skipped == 2
        assert replica.recovery.snapshot_op == 20
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    slot_count=st.integers(4, 40),
    keep=st.integers(1, 3),
    max_batch=st.integers(1, 16),
    submitters=st.integers(1, 12),
    snapshot_every=st.sampled_from([1, 3, 50, 1_000_000]),
    checkpoint_every=st.sampled_from([0, 0, 7]),
)
async def test_backpressure_never_deadlocks_or_loses_ops(
    slot_count: int,
    keep: int,
    max_batch: int,
    submitters: int,
    snapshot_every: int,
    checkpoint_every: int,
    autojump_clock: trio.testing.MockClock,
) -> None:
    slot_count = max(slot_count, 4 * keep)
    disk = MemoryDirectory()
    # On a memory disk nothing really waits, so a deadlock leaves every task
    # blocked and the autojump clock fires this timeout at once.
    with trio.fail_after(3600):
        acked = await run_load(
            disk,
            submitters=submitters,
            per_submitter=12,
            checkpoint_every=checkpoint_every,
            slot_count=slot_count,
            keep_snapshots=keep,
            max_batch=max_batch,
            snapshot_every=snapshot_every,
            segment_bytes=256,
        )
    assert len(acked) == submitters * 12
    async with open_replica(disk, Ledger(), slot_count=slot_count, keep_snapshots=keep) as replica:
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]
        assert replica.recovery.last_op == len(acked)


def test_default_slot_count_leaves_room_for_retained_snapshots() -> None:
    assert default_slot_count(snapshot_every=10_000, keep_snapshots=2, max_batch=256) == 40_000
    assert default_slot_count(snapshot_every=10, keep_snapshots=2, max_batch=256) == 2048
    assert default_slot_count(snapshot_every=1, keep_snapshots=1, max_batch=1) == 1024


async def test_too_small_ring_is_refused() -> None:
    with pytest.raises(ValueError, match="slot_count"):
        async with open_replica(MemoryDirectory(), Ledger(), slot_count=7, keep_snapshots=2):
            pass  # pragma: no cover
