"""cancel_at_each_schedule_point: counts schedule points, cancels at each, catches unsafe code."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_replica.storage import run_io
from trio_replica.testing import SimulatedDisk, cancel_at_each_schedule_point


async def test_cancels_at_every_schedule_point_of_a_single_task() -> None:
    progress: list[int] = []
    seen: list[int] = []

    async def scenario() -> None:
        progress.clear()
        for i in range(5):
            await trio.lowlevel.checkpoint()
            progress.append(i)

    def check() -> None:
        seen.append(len(progress))

    report = await cancel_at_each_schedule_point(scenario, check)
    assert report.schedule_points == 5
    assert report.runs == 6
    assert report.cancellation_points == 5
    assert report.delivered == 5
    assert report.exhaustive
    # Run n was cancelled at its n-th sleep, having completed n - 1 steps;
    # the last run completed all of them.
    assert seen == [0, 1, 2, 3, 4, 5]


async def test_counts_schedule_points_of_child_tasks_but_not_of_others() -> None:
    async def worker() -> None:
        for _ in range(3):
            await trio.lowlevel.checkpoint()

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            nursery.start_soon(worker)

    async def bystander() -> None:
        for _ in range(10_000):
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as outside:
        outside.start_soon(bystander)
        report = await cancel_at_each_schedule_point(scenario, lambda: None)
        outside.cancel_scope.cancel()
    # Two workers with three sleeps each, plus the scenario's task parking in
    # its nursery: the bystander's endless schedule points are not counted.
    assert 6 <= report.schedule_points <= 10
    assert report.cancellation_points == report.schedule_points


async def test_finds_a_cancellation_unsafe_transfer() -> None:
    accounts = {"a": 100, "b": 0}

    async def unsafe_transfer() -> None:
        accounts["a"] -= 10
        await trio.lowlevel.checkpoint()  # a cancellation here loses the money
        accounts["b"] += 10

    def money_is_conserved() -> None:
        assert sum(accounts.values()) == 100, accounts

    with pytest.raises(AssertionError) as info:
        await cancel_at_each_schedule_point(unsafe_transfer, money_is_conserved)
    assert "schedule point 1" in "".join(info.value.__notes__)

    accounts.update(a=100, b=0)

    async def safe_transfer() -> None:
        await trio.lowlevel.checkpoint()
        with trio.CancelScope(shield=True):
            accounts["a"] -= 10
            await trio.lowlevel.checkpoint()
            accounts["b"] += 10
        await trio.lowlevel.checkpoint()

    report = await cancel_at_each_schedule_point(safe_transfer, money_is_conserved)
    assert report.schedule_points == 3
    # Cancelling at the shielded sleep is not delivered there; it lands at the
    # next unshielded cancel point instead.
    assert report.delivered == 3


async def test_schedule_points_receive_the_cancel_at_the_next_cancel_point() -> None:
    reached: list[str] = []

    async def scenario() -> None:
        reached.clear()
        await trio.lowlevel.cancel_shielded_checkpoint()
        reached.append("after schedule point")
        await trio.lowlevel.checkpoint()
        reached.append("after cancel point")

    outcomes: list[list[str]] = []
    report = await cancel_at_each_schedule_point(scenario, lambda: outcomes.append(list(reached)))
    assert report.schedule_points == 2
    assert outcomes == [
        ["after schedule point"],  # cancel at the schedule point lands at the sleep
        ["after schedule point"],
        ["after schedule point", "after cancel point"],
    ]


async def test_setup_context_and_async_check(autojump_clock: trio.testing.MockClock) -> None:
    made: list[list[int]] = []

    def setup() -> list[int]:
        made.append([])
        return made[-1]

    async def scenario(log: list[int]) -> None:
        for i in range(3):
            log.append(i)
            await trio.sleep(1)

    async def check(log: list[int]) -> None:
        await trio.lowlevel.checkpoint()
        assert log == list(range(len(log)))

    report = await cancel_at_each_schedule_point(scenario, check, setup=setup)
    assert report.runs == len(made) == 4
    assert [len(log) for log in made] == [1, 2, 3, 3]


async def test_max_schedule_points_bounds_the_sweep_and_says_so() -> None:
    async def scenario() -> None:
        for _ in range(10):
            await trio.lowlevel.checkpoint()

    report = await cancel_at_each_schedule_point(scenario, lambda: None, max_schedule_points=4)
    assert report.cancellation_points == 4
    assert report.schedule_points == 10
    assert not report.exhaustive


async def test_unexpected_exception_propagates_with_the_schedule_point() -> None:
    async def scenario() -> None:
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled:
            raise RuntimeError("cleanup failed") from None

    with pytest.raises(RuntimeError) as info:
        await cancel_at_each_schedule_point(scenario, lambda: None)
    assert "schedule point 1" in "".join(info.value.__notes__)


def test_runs_under_an_autojump_clock() -> None:
    async def main() -> int:
        async def scenario() -> None:
            await trio.sleep(3600)
            await trio.sleep(3600)

        report = await cancel_at_each_schedule_point(scenario, lambda: None)
        return report.schedule_points

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(main, clock=clock) == 2
    assert clock.current_time() >= 7200


async def test_io_on_a_simulated_disk_is_cancelled_only_between_batches() -> None:
    """run_io on a SimulatedDisk either runs a whole batch or none of it."""
    prepared = SimulatedDisk(seed=3)
    f = prepared.open("log", create=True)
    f.sync()
    prepared.sync()
    disks: list[SimulatedDisk] = []

    def setup() -> SimulatedDisk:
        disks.append(prepared.clone())
        return disks[-1]

    async def scenario(disk: SimulatedDisk) -> None:
        log = disk.open("log")
        for i in range(4):

            def batch(i: int = i) -> None:
                log.append(bytes([i]) * 4)
                log.sync()

            await run_io(disk, batch)

    def check(disk: SimulatedDisk) -> None:
        content = disk.snapshot_bytes(durable=True)["log"]
        assert content == b"".join(bytes([i]) * 4 for i in range(len(content) // 4))
        assert disk.operations_since_sync == 0

    report = await cancel_at_each_schedule_point(scenario, check, setup=setup)
    # run_io yields once per batch, after running it (a schedule point), so a
    # cancellation there lands at the start of the next batch.
    assert report.schedule_points == 4
    assert report.delivered == 3
    assert [len(d.snapshot_bytes()["log"]) for d in disks] == [4, 8, 12, 16, 16]


async def test_journal_appends_cancelled_at_any_schedule_point_keep_every_acked_op() -> None:
    """Invariant 8 (docs/invariants.md) for the journal: whatever schedule point a cancellation
    hits, every crash state afterwards recovers a prefix with every acked op."""
    from trio_replica.journal import Entry, Journal
    from trio_replica.testing import crash_states

    checked = 0

    def setup() -> tuple[SimulatedDisk, list[int]]:
        return SimulatedDisk(seed=5), []

    async def scenario(ctx: tuple[SimulatedDisk, list[int]]) -> None:
        disk, acked = ctx
        journal = await Journal.open(disk, segment_bytes=400)
        for op in range(1, 8):
            await journal.append([Entry(op=op, body=bytes([op]) * 100)])
            acked.append(op)
        await journal.aclose()

    async def check(ctx: tuple[SimulatedDisk, list[int]]) -> None:
        nonlocal checked
        disk, acked = ctx
        for state in crash_states(disk, max_states=32):
            journal = await Journal.open(state, segment_bytes=400)
            ops = [e.op async for e in journal.entries()]
            await journal.aclose()
            assert ops == list(range(1, len(ops) + 1))
            assert len(ops) >= len(acked)
            checked += 1

    report = await cancel_at_each_schedule_point(scenario, check, setup=setup)
    print(f"journal: cancelled at {report.cancellation_points} schedule points, {checked} states")
    assert report.exhaustive and report.cancellation_points >= 8  # open, 7 appends, close
    assert checked >= report.runs


async def test_concurrent_scenarios_hit_the_same_schedule_points_in_every_sweep() -> None:
    async def worker(log: list[str], name: str) -> None:
        for i in range(3):
            await trio.lowlevel.checkpoint()
            log.append(f"{name}{i}")

    async def scenario(log: list[str]) -> None:
        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(worker, log, name, name=f"worker-{name}")

    async def sweep() -> tuple[object, list[list[str]]]:
        logs: list[list[str]] = []

        def setup() -> list[str]:
            logs.append([])
            return logs[-1]

        report = await cancel_at_each_schedule_point(scenario, lambda log: None, setup=setup)
        return report.history, logs

    first = await sweep()
    assert first == await sweep()  # the same task at the same schedule point, same progress
    history, logs = first
    assert {run.task for run in history} >= {"worker-a", "worker-b", "worker-c"}  # type: ignore[attr-defined]
    assert len(logs[-1]) == 9
