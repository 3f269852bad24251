"""Cancelling the whole replica at any checkpoint leaves a directory that
recovers to a prefix holding every acked op (invariant 8, docs/invariants.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio
from replica_machines import Ledger, check_prefix

from trio_replica import open_replica
from trio_replica.storage import Directory, MemoryDirectory
from trio_replica.testing import SimulatedDisk, cancel_at_each_schedule_point

OPTIONS: dict[str, Any] = {
    "snapshot_every": 3,
    "segment_bytes": 300,
    "slot_count": 12,
    "max_batch": 2,
}


@attrs.define
class Run:
    """One run's directory and what it acknowledged (ops before it included)."""

    disk: Any
    acked: dict[int, int] = attrs.field(factory=dict)


async def prepare(disk: Directory) -> Run:
    """A directory that already has ops, a snapshot and compacted segments,
    so recovery at open (with its own checkpoints) is part of every run."""
    run = Run(disk)
    async with open_replica(disk, Ledger(), **OPTIONS) as replica:
        for value in range(6):
            run.acked[(await replica.execute({"v": value})).op] = value
        await replica.checkpoint()
    return run


async def workload(run: Run) -> None:
    async with open_replica(run.disk, Ledger(), **OPTIONS) as replica:

        async def submitter(task: int) -> None:
            for i in range(3):
                value = 1000 * (task + 1) + i
                applied = await replica.execute({"v": value})
                run.acked[applied.op] = value

        async with trio.open_nursery() as nursery:
            for task in range(3):
                nursery.start_soon(submitter, task)
            nursery.start_soon(replica.checkpoint)


async def check_recovers(disk: Any, acked: dict[int, int]) -> None:
    async with open_replica(disk, Ledger(), **OPTIONS) as replica:
        ledger: Ledger = replica.machine  # type: ignore[assignment]
        check_prefix(ledger, acked)
        submitted = set(acked.values()) | {1000 * t + i for t in (1, 2, 3) for i in range(3)}
        assert set(ledger.values) <= submitted
        # And the recovered replica works.
        await replica.submit({"v": -1})


async def test_cancel_replica_at_each_checkpoint_memory_directory() -> None:
    async def setup() -> Run:
        return await prepare(MemoryDirectory())

    async def check(run: Run) -> None:
        await check_recovers(run.disk, run.acked)

    report = await cancel_at_each_schedule_point(workload, check, setup=setup)
    assert report.exhaustive
    assert report.cancellation_points >= 60
    assert report.delivered >= 40


async def test_cancel_at_each_schedule_point_then_power_loss() -> None:
    """Cancellation followed by a crash: only what was fsynced counts."""
    runs = 0

    async def setup() -> Run:
        nonlocal runs
        runs += 1
        return await prepare(SimulatedDisk(seed=runs))

    async def check(run: Run) -> None:
        assert isinstance(run.disk, SimulatedDisk)
        await check_recovers(run.disk.crash(), run.acked)

    report = await cancel_at_each_schedule_point(workload, check, setup=setup)
    assert report.exhaustive
    assert report.cancellation_points >= 60


class CancelAtStep(trio.abc.Instrument):
    """Cancels ``scope`` after the n-th task step of the run."""

    def __init__(self, scope: trio.CancelScope, n: int) -> None:
        self.scope = scope
        self.n = n
        self.count = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1
        if self.count == self.n:
            self.scope.cancel()


async def test_cancel_replica_on_a_real_directory(tmp_path: Path) -> None:
    """The same on real files (worker threads, real fsync), for a few points,
    each run continuing the same directory."""
    run = await prepare_path(tmp_path / "data")
    cancelled = 0
    for n in (2, 5, 9, 15, 25, 40, 60, 80, 100, 125):
        scope = trio.CancelScope()
        instrument = CancelAtStep(scope, n)
        trio.lowlevel.add_instrument(instrument)
        try:
            with scope:
                await workload(run)
        finally:
            trio.lowlevel.remove_instrument(instrument)
        cancelled += scope.cancelled_caught
        await check_recovers(run.disk, run.acked)
        # The check's submit({"v": -1}) is acked too.
        async with open_replica(run.disk, Ledger(), **OPTIONS) as replica:
            ledger: Ledger = replica.machine  # type: ignore[assignment]
            run.acked = ledger.pairs()
    assert cancelled >= 6


async def prepare_path(path: Path) -> Run:
    from trio_replica.storage import open_directory

    return await prepare(await open_directory(path, create=True))


async def test_cancelled_submitter_scope_does_not_cancel_the_fsync(tmp_path: Path) -> None:
    """A submitter cancelled while its batch is being fsynced: the fsync and
    the apply still happen (the op is durable and applied exactly once), the
    submitter gets Cancelled, and the replica goes on."""
    async with open_replica(tmp_path / "data", Ledger()) as replica:
        for attempt in range(20):
            with trio.move_on_after(0.0005 * attempt):
                await replica.submit({"v": attempt})
        await replica.submit({"v": 100})
        applied = replica.applied_op
        ledger: Ledger = replica.machine  # type: ignore[assignment]
        live = ledger.pairs()
    async with open_replica(tmp_path / "data", Ledger()) as replica:
        assert replica.recovery.last_op == applied
        assert replica.machine.pairs() == live  # type: ignore[attr-defined]
        assert replica.machine.values[-1] == 100  # type: ignore[attr-defined]
