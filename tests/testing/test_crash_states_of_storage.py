"""Every crash state of the journal and the snapshot store recovers correctly.

For representative workloads (appends across segment rolls, a compaction,
snapshot persists with deletion of old ones), the states a power loss could
leave after EVERY disk operation are recovered and checked against what had
been acknowledged at that moment; bit flips on top of them are reported,
never silently dropped.
"""

from __future__ import annotations

from crash_checks import (
    check_journal_corruption,
    check_journal_states,
    check_snapshot_states,
    quiet_recovery_logs,
    record_journal_appends,
    record_snapshot_persists,
)

from trio_replica.testing import SimulatedDisk


def setup_module() -> None:
    quiet_recovery_logs()


async def test_journal_appends_across_segment_rolls() -> None:
    recorder = await record_journal_appends(SimulatedDisk(seed=21))
    result = await check_journal_states(recorder)
    print(f"journal appends: {result.states} crash states checked, {result.counts}")
    assert result.violations == []
    assert result.states > 100
    assert recorder.exhaustive  # every crash state of every moment, not a sample
    # The states really include torn tails and in-flight batches that survived.
    assert result.counts["torn_tail_cut"] > 0
    assert result.counts["unacked_survived"] > 0
    rolls = [p for p in recorder.points if p.operation and p.operation.kind == "create"]
    assert len({p.operation for p in rolls}) >= 3  # crashes around several segment rolls


async def test_journal_appends_with_512_byte_tears_and_reordered_directory_ops() -> None:
    disk = SimulatedDisk(seed=22, reorder_directory_ops=True)
    result = await check_journal_states(await record_journal_appends(disk, batches=10))
    print(f"journal appends (reordering fs): {result.states} crash states checked")
    assert result.violations == []
    assert result.states > 50


async def test_journal_compaction() -> None:
    recorder = await record_journal_appends(SimulatedDisk(seed=23), compact=True)
    result = await check_journal_states(recorder)
    print(f"journal compaction: {result.states} crash states checked, {result.counts}")
    assert result.violations == []
    unlinks = [p for p in recorder.points if p.operation and p.operation.kind == "unlink"]
    assert len(unlinks) >= 2  # crash states right after each segment deletion


async def test_journal_corruption_is_reported_never_silently_dropped() -> None:
    recorder = await record_journal_appends(SimulatedDisk(seed=24), max_states_per_point=6)
    result = await check_journal_corruption(recorder, flips_per_state=2, seed=24)
    print(f"journal bit flips: {result.states} crash states, outcomes {result.counts}")
    assert result.violations == []
    assert result.counts["raised"] > 10  # corruption really was injected and reported
    assert sum(result.counts.values()) > 100


async def test_snapshot_persist() -> None:
    recorder = await record_snapshot_persists(SimulatedDisk(seed=25))
    result = await check_snapshot_states(recorder)
    print(
        f"snapshot persist: {result.states} crash states checked "
        f"({recorder.sampled_points} of {recorder.operations} moments sampled), {result.counts}"
    )
    assert result.violations == []
    assert result.states > 50
    assert recorder.exhaustive
    assert result.counts["previous"] > 0 and result.counts["newer"] > 0
