"""``Replica.submit_many``: results in order, one durable group, typed errors,
cancellation (nothing queued, or all applied exactly once) and crash states
(acked => durable)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from replica_machines import Ledger, check_prefix

from trio_replica import (
    BatchRejectedError,
    CommandEncodingError,
    InvalidCommand,
    ReplicaClosedError,
    open_replica,
)
from trio_replica.storage import MemoryDirectory
from trio_replica.testing import (
    CountingDirectory,
    CrashRecorder,
    FaultyDirectory,
    SimulatedDisk,
    cancel_at_each_schedule_point,
)


async def test_results_in_order_consecutive_ops_one_fsync() -> None:
    disk = CountingDirectory(MemoryDirectory())
    async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
        await replica.submit({"v": -1})  # creates the first segment
        syncs = disk.file_syncs
        results = await replica.submit_many({"v": value} for value in range(100))
        assert disk.file_syncs - syncs == 1  # one durable group: one fsync
        assert results == list(range(2, 102))  # Ledger returns its length
        assert replica.applied_op == 101
        assert await replica.submit_many([]) == []
    async with open_replica(disk, Ledger()) as replica:
        ledger: Ledger = replica.machine  # type: ignore[assignment]
        assert ledger.ops == list(range(1, 102))
        assert ledger.values == [-1, *range(100)]


async def test_larger_than_max_batch_is_split_and_answered_together() -> None:
    disk = CountingDirectory(MemoryDirectory())
    async with open_replica(disk, Ledger(), max_batch=8, snapshot_every=1_000_000) as replica:
        await replica.submit({"v": -1})
        syncs = disk.file_syncs
        results = await replica.submit_many({"v": value} for value in range(20))
        assert disk.file_syncs - syncs == 3  # 8 + 8 + 4
        assert results == list(range(2, 22))


async def test_concurrent_submits_do_not_interleave_with_a_batch() -> None:
    async with open_replica(MemoryDirectory(), Ledger(), max_batch=16) as replica:
        batch_ops: list[list[int]] = []

        async def batcher(base: int) -> None:
            results = await replica.submit_many({"v": base + i} for i in range(10))
            batch_ops.append(results)

        async def single(value: int) -> None:
            await replica.submit({"v": value})

        async with trio.open_nursery() as nursery:
            for task in range(3):
                nursery.start_soon(batcher, 1000 * (task + 1))
                for i in range(5):
                    nursery.start_soon(single, 100 * task + i)
        ledger: Ledger = replica.machine  # type: ignore[assignment]
        assert len(ledger.values) == 45
        for results in batch_ops:
            # Ledger's result is its length, i.e. the op: consecutive ops.
            assert results == list(range(results[0], results[0] + 10))
            first = ledger.values[results[0] - 1]
            assert ledger.values[results[0] - 1 : results[-1]] == list(range(first, first + 10))


async def test_an_unencodable_command_refuses_the_whole_batch() -> None:
    async with open_replica(MemoryDirectory(), Ledger()) as replica:
        with pytest.raises(CommandEncodingError, match="command 2 of the batch"):
            await replica.submit_many([{"v": 1}, {"v": 2}, {"v": object()}, {"v": 4}])
        assert replica.prepared_op == 0  # nothing journaled
        assert await replica.submit({"v": 5}) == 1


async def test_rejected_commands_are_reported_in_order_and_the_rest_applied() -> None:
    disk = MemoryDirectory()
    async with open_replica(disk, Ledger()) as replica:
        with pytest.raises(BatchRejectedError) as raised:
            await replica.submit_many([{"v": 1}, {"reject": "no"}, {"v": 3}, {"bad": 1}])
        error = raised.value
        assert isinstance(error, InvalidCommand)
        assert error.rejected == [1, 3]
        assert error.op == 2
        assert error.results[0] == 1 and error.results[2] == 2
        assert isinstance(error.results[1], InvalidCommand) and error.results[1].op == 2
        assert isinstance(error.results[3], InvalidCommand) and error.results[3].op == 4
        assert replica.applied_op == 4
    async with open_replica(disk, Ledger()) as replica:
        assert replica.recovery.ops_rejected == 2
        assert replica.machine.pairs() == {1: 1, 3: 3}  # type: ignore[attr-defined]


async def test_after_close_it_is_refused() -> None:
    async with open_replica(MemoryDirectory(), Ledger()) as replica:
        pass
    with pytest.raises(ReplicaClosedError):
        await replica.submit_many([{"v": 1}])


@attrs.define
class Run:
    disk: Any
    acked: dict[int, int] = attrs.field(factory=dict)
    batches: list[list[int]] = attrs.field(factory=list)


BATCHES = [[10, 11, 12], [20, 21, 22, 23], [30, 31]]


async def test_cancelled_at_each_checkpoint_a_batch_is_all_or_nothing() -> None:
    """Cancel the whole scenario (replica and submitters) at each checkpoint:
    every acked batch is recovered whole, in consecutive ops, and no batch is
    ever recovered in part unless the crash-free directory had it whole
    (a batch is one group: its ops are journaled together or not at all
    here, since every batch fits one append)."""

    async def setup() -> Run:
        return Run(MemoryDirectory())

    async def scenario(run: Run) -> None:
        # inbox_size=2: the batches also wait for room in the intake, so the
        # sweep cancels them there too (nothing of theirs queued).
        async with open_replica(run.disk, Ledger(), max_batch=8, inbox_size=2) as replica:

            async def batcher(values: list[int]) -> None:
                results = await replica.submit_many({"v": v} for v in values)
                for op, value in zip(results, values, strict=True):
                    run.acked[op] = value  # Ledger's result is the op here

            async with trio.open_nursery() as nursery:
                for values in BATCHES:
                    nursery.start_soon(batcher, values)

    async def check(run: Run) -> None:
        async with open_replica(run.disk, Ledger()) as replica:
            ledger: Ledger = replica.machine  # type: ignore[assignment]
            check_prefix(ledger, run.acked)
            values = ledger.values
            for batch in BATCHES:
                present = [v for v in batch if v in values]
                assert present in ([], batch), f"batch {batch} recovered in part: {values}"
                if present:
                    start = values.index(batch[0])
                    assert values[start : start + len(batch)] == batch

    report = await cancel_at_each_schedule_point(scenario, check, setup=setup)
    assert report.exhaustive
    assert report.delivered >= 10


async def test_a_cancelled_caller_does_not_stop_its_batch() -> None:
    """The caller is cancelled while its batch's fsync is in progress: every
    command is still journaled and applied exactly once, in order."""
    disk = FaultyDirectory(MemoryDirectory())
    async with open_replica(disk, Ledger()) as replica:
        await replica.submit({"v": -1})
        gate = disk.plan.gate("file_sync", where="wal")
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(replica.submit_many, [{"v": v} for v in range(5)])
                await gate.reached.wait()  # its fsync has started
                scope.cancel()
        assert scope.cancelled_caught
        assert replica.applied_op == 1
        gate.open()
        await replica.submit({"v": 99})
        assert replica.machine.values == [-1, 0, 1, 2, 3, 4, 99]  # type: ignore[attr-defined]
    async with open_replica(disk, Ledger()) as replica:
        assert replica.machine.values == [-1, 0, 1, 2, 3, 4, 99]  # type: ignore[attr-defined]


async def test_cancelled_before_it_is_queued_queues_nothing() -> None:
    async with open_replica(MemoryDirectory(), Ledger()) as replica:
        with trio.CancelScope() as scope:
            scope.cancel()
            await replica.submit_many([{"v": 2}, {"v": 3}])
        assert scope.cancelled_caught
        await replica.submit({"v": 4})
        assert replica.machine.values == [4]  # type: ignore[attr-defined]


async def test_every_crash_state_keeps_every_acked_batch() -> None:
    disk = SimulatedDisk(seed=12)
    acked: dict[int, int] = {}

    async def batcher(replica: Any, base: int) -> None:
        for round_ in range(3):
            values = [base + 10 * round_ + i for i in range(4)]
            results = await replica.submit_many({"v": v} for v in values)
            for op, value in zip(results, values, strict=True):
                acked[op] = value

    recorder: CrashRecorder[tuple[tuple[int, int], ...]] = CrashRecorder(
        disk, context=lambda: tuple(sorted(acked.items())), max_states_per_point=32
    )
    options = {"snapshot_every": 10, "segment_bytes": 600, "max_batch": 8}
    with recorder:
        async with (
            open_replica(disk, Ledger(), **options) as replica,
            trio.open_nursery() as nursery,
        ):
            for base in (1000, 2000):
                nursery.start_soon(batcher, replica, base)
    assert len(recorder.points) > 30
    recovered = []
    for point in recorder.points:
        async with open_replica(point.state, Ledger(), **options) as replica:
            ledger: Ledger = replica.machine  # type: ignore[assignment]
            check_prefix(ledger, dict(point.context))
            recovered.append(len(ledger.values))
    assert min(recovered) == 0 and max(recovered) == 24
