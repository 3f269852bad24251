"""What a failed fsync or a killed process leaves in the page cache is never trusted.

SimulatedDisk models Linux: a failed fsync drops the pending writes without
making them durable while the page cache keeps showing them (and a later
fsync "succeeds"); ``process_crash()`` is a SIGKILL in the same boot (cache
kept, pending writes pending, locks released); ``crash()`` a power loss.
"""

from __future__ import annotations

import pytest

from trio_replica import open_replica
from trio_replica.errors import FatalStorageError, ReplicaError
from trio_replica.journal import Entry, Journal
from trio_replica.journal.record import encode_batch
from trio_replica.machines import Counter
from trio_replica.testing import Faults, SimulatedDisk


def body(op: int) -> bytes:
    return f"op {op}".encode()


async def entries_of(disk: SimulatedDisk) -> list[Entry]:
    async with await Journal.open(disk) as journal:
        return [e async for e in journal.entries()]


async def test_a_failed_fsync_then_a_restart_in_the_same_boot_loses_nothing_acked() -> None:
    # The issue's input: 10 ops acked; the fsync of op 11's batch fails; the
    # process restarts without a power loss; 9 more ops acked; power loss.
    disk = SimulatedDisk(seed=3)
    async with open_replica(disk, Counter()) as replica:
        for _ in range(10):
            await replica.submit({"add": 1})
    disk.faults = Faults(fsync_failure=1.0)
    with pytest.raises(ReplicaError):
        async with open_replica(disk, Counter()) as replica:
            await replica.submit({"add": 100})  # op 11: its fsync fails, never acked
    disk.faults = Faults()
    disk = disk.process_crash()
    async with open_replica(disk, Counter()) as replica:
        assert replica.applied_op == 10  # op 11 was never durable: not replayed
        for _ in range(9):
            await replica.submit({"add": 1})
        assert replica.applied_op == 19
    after_power_loss = disk.crash()
    async with open_replica(after_power_loss, Counter()) as replica:
        assert replica.applied_op == 19  # every acked op survived
        assert replica.machine.total == 19  # type: ignore[attr-defined]


async def _ten_ops(disk: SimulatedDisk) -> tuple[str, bytes, int]:
    """Ten durable ops; returns the last segment's path, the chain tip and its size."""
    async with await Journal.open(disk) as journal:
        await journal.append([Entry(op, body(op)) for op in range(1, 11)])
        tip = await journal.checksum_at(10)
        name = f"wal/{journal.segment_first_ops[-1]:020d}.wal"
    return name, tip, len(disk.snapshot_bytes()[name])


async def test_a_tail_left_by_a_failed_fsync_is_read_from_the_device() -> None:
    # The process died before it could cut the segment back: op 11's bytes
    # are visible in the cache, marked clean, never written.
    disk = SimulatedDisk(seed=5)
    name, tip, size = await _ten_ops(disk)
    segment = disk.subdir("wal").open(name.removeprefix("wal/"))
    segment.write_at(size, encode_batch(11, tip, [body(11)]).data)
    disk.faults = Faults(fsync_failure=1.0)
    with pytest.raises(OSError):
        segment.sync()
    disk.faults = Faults()
    disk = disk.process_crash()
    assert len(disk.snapshot_bytes()[name]) > size  # still visible
    async with await Journal.open(disk) as journal:
        assert journal.last_op == 10  # judged from the device, not the cache
        await journal.append([Entry(op, body(op)) for op in range(11, 20)])
    assert [e.op for e in await entries_of(disk.crash())] == list(range(1, 20))


async def test_a_tail_a_killed_process_never_fsynced_is_made_durable_before_new_acks() -> None:
    # SIGKILL between a batch's write and its fsync: the batch is in the page
    # cache only. Recovery may keep it, but then must make it durable before
    # acknowledging anything chained to it.
    disk = SimulatedDisk(seed=7)
    name, tip, size = await _ten_ops(disk)
    segment = disk.subdir("wal").open(name.removeprefix("wal/"))
    segment.write_at(size, encode_batch(11, tip, [body(11)]).data)  # no fsync
    disk = disk.process_crash()
    # The new ops go to a new segment, so their fsync does not cover op 11.
    async with await Journal.open(disk, segment_bytes=300) as journal:
        assert journal.last_op == 11
        await journal.append([Entry(op, body(op)) for op in range(12, 21)])
        assert len(journal.segment_first_ops) == 2
    for n in range(5):  # whatever a power loss keeps: all acked ops
        crashed = disk.crash()
        assert [e.op for e in await entries_of(crashed)] == list(range(1, 21)), n


async def test_a_failed_append_cuts_the_segment_back_and_says_the_outcome_is_unknown() -> None:
    disk = SimulatedDisk(seed=9)
    name, _tip, size = await _ten_ops(disk)
    journal = await Journal.open(disk)
    try:
        disk.faults = Faults(fsync_failure=1.0)
        with pytest.raises(FatalStorageError) as info:
            await journal.append([Entry(11, body(11))])
        assert "outcome is unknown" in str(info.value)
    finally:
        disk.faults = Faults()
        await journal.aclose()
    assert len(disk.snapshot_bytes()[name]) == size  # not even in the cache
