"""Submitting, group commit, checkpoints, draining on close, submitter cancellation."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from replica_machines import Ledger, check_prefix

from trio_replica import (
    Applied,
    ClosedError,
    ReplicaStoppedError,
    open_replica,
)
from trio_replica.journal import Journal
from trio_replica.machines.counter import Counter
from trio_replica.storage import MemoryDirectory, OsDirectory
from trio_replica.testing import CountingDirectory


async def test_submit_returns_result_and_execute_returns_op() -> None:
    disk = MemoryDirectory()
    async with open_replica(disk, Counter()) as replica:
        assert replica.recovery.last_op == 0
        assert await replica.submit({"add": 5}) == 5
        applied = await replica.execute({"add": 2})
        assert applied == Applied(op=2, result=7)
        assert replica.applied_op == 2
        assert replica.machine.total == 7  # type: ignore[attr-defined]
    async with open_replica(disk, Counter()) as replica:
        assert replica.machine.total == 7  # type: ignore[attr-defined]
        assert replica.recovery.last_op == 2
        assert replica.recovery.ops_replayed == 2
        assert await replica.submit({"add": 1}) == 8


@pytest.mark.parametrize("kind", ["memory", "os"])
async def test_group_commit_64_submitters(kind: str, tmp_path: Path) -> None:
    """Group commit, asserted structurally: ops per file fsync, not speed."""
    inner = MemoryDirectory() if kind == "memory" else OsDirectory.open_path(tmp_path, create=True)
    disk = CountingDirectory(inner)
    per_task = 30
    async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
        syncs_before = disk.file_syncs
        acked: dict[int, int] = {}

        async def submitter(task: int) -> None:
            for i in range(per_task):
                value = task * 1000 + i
                applied = await replica.execute({"v": value})
                acked[applied.op] = value

        async with trio.open_nursery() as nursery:
            for task in range(64):
                nursery.start_soon(submitter, task)
        syncs = disk.file_syncs - syncs_before
    ops = 64 * per_task
    assert len(acked) == ops
    assert syncs >= 1
    assert ops / syncs >= 20, f"{ops} ops took {syncs} fsyncs"
    async with open_replica(disk, Ledger()) as replica:
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]
        assert replica.recovery.last_op == ops


async def test_checkpoint_snapshots_compacts_and_orders_after_prior_submits() -> None:
    disk = MemoryDirectory()
    async with open_replica(
        disk, Ledger(), snapshot_every=1_000_000, segment_bytes=4096, max_batch=8
    ) as replica:
        assert await replica.checkpoint() == 0  # nothing applied yet: nothing to snapshot
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(replica.submit, {"v": i})
        op = await replica.checkpoint()
        assert op == 200
        # Nothing new: the same snapshot op again, no error.
        assert await replica.checkpoint() == 200
        await replica.submit({"v": 1000})
        assert await replica.checkpoint() == 201
    # Both checkpoints are durable snapshots; the journal was compacted up to
    # the OLDER retained one (keep_snapshots=2), never past it.
    journal = await Journal.open(disk, lock=False)
    try:
        assert journal.first_op > 1
        assert journal.first_op <= 201
        assert journal.last_op == 201
    finally:
        await journal.aclose()
    async with open_replica(disk, Ledger()) as replica:
        assert replica.recovery.snapshot_op == 201
        assert replica.recovery.ops_replayed == 0
        assert len(replica.machine.ops) == 201  # type: ignore[attr-defined]


async def test_automatic_snapshots_every_n_ops() -> None:
    disk = MemoryDirectory()
    async with open_replica(disk, Counter(), snapshot_every=10, max_batch=1) as replica:
        for _ in range(35):
            await replica.submit({"add": 1})
    async with open_replica(disk, Counter(), snapshot_every=10) as replica:
        # With one op per batch, snapshots land exactly on multiples of 10.
        assert replica.recovery.snapshot_op == 30
        assert replica.recovery.ops_replayed == 5
        assert replica.machine.total == 35  # type: ignore[attr-defined]


async def test_leaving_the_block_drains_every_queued_submit() -> None:
    """Submits still in flight when the block ends are all answered: with a
    result (and then durable), or with ReplicaClosedError (never queued)."""
    disk = MemoryDirectory()
    results: dict[int, object] = {}
    acked: dict[int, int] = {}
    async with (
        trio.open_nursery() as outer,
        open_replica(disk, Ledger(), max_batch=4, inbox_size=8) as replica,
    ):

        async def submitter(value: int) -> None:
            try:
                applied = await replica.execute({"v": value})
            except ReplicaStoppedError as exc:
                results[value] = exc
            else:
                acked[applied.op] = value
                results[value] = applied

        for value in range(100):
            outer.start_soon(submitter, value)
        # Let some (not all) of them get queued, then leave the block.
        for _ in range(5):
            await trio.lowlevel.checkpoint()
    assert len(results) == 100
    closed = [r for r in results.values() if isinstance(r, ReplicaStoppedError)]
    assert acked, "some submits should have completed"
    for error in closed:
        assert isinstance(error, ClosedError)
    async with open_replica(disk, Ledger()) as replica:
        # Exactly the acked ops were journaled: every queued one was answered.
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]
        assert replica.recovery.last_op == len(acked)
    with pytest.raises(ClosedError):
        await replica.submit({"v": 1})
    with pytest.raises(ReplicaStoppedError):
        await replica.checkpoint()


async def test_cancelling_one_submitter_does_not_disturb_others() -> None:
    disk = MemoryDirectory()
    acked: dict[int, int] = {}
    async with open_replica(disk, Ledger(), max_batch=4) as replica:

        async def submitter(value: int) -> None:
            applied = await replica.execute({"v": value})
            acked[applied.op] = value

        async with trio.open_nursery() as nursery:
            for value in range(20):
                nursery.start_soon(submitter, value)
            with trio.CancelScope() as scope:
                scope.cancel()
                await replica.submit({"v": -1})  # cancelled before it was queued
            with trio.move_on_after(0) as scope:
                await replica.submit({"v": 999})  # may or may not be journaled
        # The replica keeps serving after the cancelled submits.
        applied = await replica.execute({"v": 5000})
        acked[applied.op] = 5000
        for value in range(20, 40):
            nursery_value = await replica.execute({"v": value})
            acked[nursery_value.op] = value
    async with open_replica(disk, Ledger()) as replica:
        ledger: Ledger = replica.machine  # type: ignore[assignment]
        check_prefix(ledger, acked)
        assert -1 not in ledger.values
        # The unknown-outcome op is either wholly there (once) or absent.
        assert ledger.values.count(999) in (0, 1)
        assert len(ledger.ops) == len(acked) + ledger.values.count(999)


async def test_error_in_the_block_cancels_the_replica_and_propagates_as_is() -> None:
    disk = MemoryDirectory()
    acked: dict[int, int] = {}
    with pytest.raises(KeyError, match="user bug"):
        async with open_replica(disk, Ledger()) as replica:
            for value in range(5):
                acked[(await replica.execute({"v": value})).op] = value
            raise KeyError("user bug")
    with pytest.raises(ReplicaStoppedError):
        await replica.submit({"v": 1})
    # Not drained, but consistent, and the lock is released.
    async with open_replica(disk, Ledger()) as replica:
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]


async def test_outer_cancellation_propagates_and_releases_the_directory() -> None:
    disk = MemoryDirectory()
    with trio.CancelScope() as scope:
        async with open_replica(disk, Ledger()) as replica:
            await replica.submit({"v": 1})
            scope.cancel()
            await replica.submit({"v": 2})
    assert scope.cancelled_caught
    async with open_replica(disk, Ledger()) as replica:
        assert replica.machine.values[:1] == [1]  # type: ignore[attr-defined]
