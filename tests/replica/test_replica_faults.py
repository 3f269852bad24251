"""Storage failures: a failed journal fsync stops the replica; snapshot failures
are fatal or reported-and-retried as documented, never silently lost."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from replica_machines import Ledger, check_prefix

from trio_replica import ReplicaStoppedError, open_replica
from trio_replica.errors import (
    FatalStorageError,
    SnapshotDirSyncError,
    SnapshotWriteError,
)
from trio_replica.storage import MemoryDirectory
from trio_replica.testing import Faults, FaultyDirectory, SimulatedDisk


async def test_failed_journal_fsync_fails_its_batch_and_stops_the_replica() -> None:
    disk = SimulatedDisk(seed=3)
    acked: dict[int, int] = {}
    failed: list[BaseException] = []

    with pytest.raises(FatalStorageError):
        async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
            for value in range(10):
                acked[(await replica.execute({"v": value})).op] = value
            disk.faults = Faults(fsync_failure=1.0)
            try:
                await replica.submit({"v": 99})
            except FatalStorageError as exc:
                failed.append(exc)
                raise
    assert failed, "the waiter of the failed batch gets the error itself"
    with pytest.raises(ReplicaStoppedError):
        await replica.submit({"v": 100})
    # After a power loss, what was acked is there; the failed op may or may
    # not be, but nothing else is.
    state = disk.crash()
    state.faults = Faults()
    async with open_replica(state, Ledger()) as recovered:
        ledger: Ledger = recovered.machine  # type: ignore[assignment]
        check_prefix(ledger, acked)
        assert set(ledger.values) <= {*acked.values(), 99}


async def test_snapshot_write_failure_is_reported_and_retried() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
        for value in range(5):
            await replica.submit({"v": value})
        disk.plan.fail("create", where=".snapshot.tmp")
        with pytest.raises(SnapshotWriteError):
            await replica.checkpoint()
        # The replica keeps serving and the next checkpoint retries.
        await replica.submit({"v": 5})
        disk.plan.clear()
        assert await replica.checkpoint() == 6
    assert disk.plan.failures == 1
    async with open_replica(disk, Ledger()) as replica:
        assert replica.recovery.snapshot_op == 6
        assert replica.machine.values == list(range(6))  # type: ignore[attr-defined]


async def test_snapshot_directory_fsync_failure_is_fatal() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    acked: dict[int, int] = {}
    with pytest.raises(SnapshotDirSyncError):
        async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
            for value in range(5):
                acked[(await replica.execute({"v": value})).op] = value
            disk.plan.fail("dir_sync", where="snapshots")
            await replica.checkpoint()
    disk.plan.clear()
    async with open_replica(disk, Ledger()) as replica:
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]


async def test_full_journal_with_failing_snapshots_stops_instead_of_hanging(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A full journal can only be freed by a snapshot: when persisting keeps
    failing, the replica stops with the snapshot error (no silent hang)."""
    disk = FaultyDirectory(MemoryDirectory())
    disk.plan.fail("create", where=".snapshot.tmp")
    acked: dict[int, int] = {}
    with trio.fail_after(60), pytest.raises(SnapshotWriteError):
        async with open_replica(disk, Ledger(), slot_count=8, snapshot_every=1_000_000) as replica:
            for value in range(100):
                acked[(await replica.execute({"v": value})).op] = value
    assert len(acked) == 8  # exactly the ring's capacity was accepted
    disk.plan.clear()
    async with open_replica(disk, Ledger(), slot_count=8) as replica:
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]
        assert (await replica.execute({"v": 1000})).op == 9


async def test_failed_automatic_snapshots_are_logged_counted_and_stop_the_replica(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """snapshots/ unwritable: every automatic snapshot failed with nothing
    logged and the journal grew until the ring filled. Now each failure is a
    WARNING naming the file and the cause, counted on the handle, and after
    max_snapshot_failures in a row the replica stops with the last one."""
    disk = FaultyDirectory(MemoryDirectory())
    disk.plan.fail("create", where=".snapshot.tmp")
    acked: dict[int, int] = {}
    counts: list[int] = []
    caplog.set_level(logging.WARNING, logger="trio_replica.coordinator.task")
    with pytest.raises(SnapshotWriteError) as caught:
        async with open_replica(
            disk, Ledger(), snapshot_every=4, max_snapshot_failures=3, slot_count=4096
        ) as replica:
            for value in range(200):
                acked[(await replica.execute({"v": value})).op] = value
                counts.append(replica.snapshot_failures)
    assert disk.plan.failures == 3
    assert max(counts) in (2, 3)  # the third failure stops the replica
    assert counts == sorted(counts)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    for number, record in enumerate(warnings, start=1):
        text = record.getMessage()
        assert "automatic snapshot" in text and "SnapshotWriteError" in text
        assert ".snapshot.tmp" in text  # the file
        assert "injected create failure" in text  # the cause
        assert f"{number} in a row" in text
    assert "3 snapshots failed in a row" in "".join(caught.value.__notes__)
    disk.plan.clear()
    async with open_replica(disk, Ledger()) as replica:
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]


async def test_a_successful_snapshot_resets_the_run_of_failures() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    async with open_replica(
        disk, Ledger(), snapshot_every=1_000_000, max_snapshot_failures=2
    ) as replica:
        for round_ in range(3):
            await replica.submit({"v": round_})
            disk.plan.fail("create", where=".snapshot.tmp")
            with pytest.raises(SnapshotWriteError):
                await replica.checkpoint()
            disk.plan.clear()
            assert await replica.checkpoint() == round_ + 1
        assert replica.snapshot_failures == 3
