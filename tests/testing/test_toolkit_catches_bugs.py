"""The crash checks catch real bugs: the same checks that pass for the real journal and
snapshot store fail for deliberately broken variants built here."""

from __future__ import annotations

from crash_checks import (
    check_journal_states,
    check_snapshot_states,
    quiet_recovery_logs,
    record_journal_appends,
    record_snapshot_persists,
    without,
)

from trio_replica.testing import SimulatedDisk


def setup_module() -> None:
    quiet_recovery_logs()


async def test_a_journal_that_acks_before_fsync_is_caught() -> None:
    real = await check_journal_states(await record_journal_appends(SimulatedDisk(seed=31)))
    broken = await check_journal_states(
        await record_journal_appends(SimulatedDisk(seed=31), wrap=without("file_sync", "wal"))
    )
    print(f"real journal: {real.states} states, {len(real.violations)} violations")
    print(f"journal without fsync: {broken.states} states, {len(broken.violations)} violations")
    print("first:", broken.violations[:1])
    assert real.violations == []
    assert broken.violations
    assert any("acked op" in v or "recovery failed" in v for v in broken.violations)


async def test_a_snapshot_rename_without_directory_fsync_is_caught() -> None:
    real = await check_snapshot_states(await record_snapshot_persists(SimulatedDisk(seed=32)))
    broken = await check_snapshot_states(
        await record_snapshot_persists(
            SimulatedDisk(seed=32), wrap=without("dir_sync", "snapshots")
        )
    )
    print(f"real store: {real.states} states, {len(real.violations)} violations")
    print(f"store without dir fsync: {broken.states} states, {len(broken.violations)} violations")
    print("first:", broken.violations[:1])
    assert real.violations == []
    assert any("was persisted" in v for v in broken.violations)


async def test_a_snapshot_store_that_skips_the_file_fsync_is_caught() -> None:
    broken = await check_snapshot_states(
        await record_snapshot_persists(
            SimulatedDisk(seed=33),
            wrap=without("file_sync", "snapshots"),
            persists=2,
        )
    )
    print(f"store without file fsync: {broken.states} states, {len(broken.violations)} violations")
    assert broken.violations
