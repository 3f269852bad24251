"""recover(): the report's fields, torn tails, snapshot fallback, and every crash state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from replica_machines import Ledger, check_prefix

from trio_replica import CorruptionError, open_replica
from trio_replica.coordinator import SnapshotStore
from trio_replica.replica import recover
from trio_replica.storage import MemoryDirectory
from trio_replica.testing import CrashRecorder, SimulatedDisk


async def write_ops(target: object, count: int, *, checkpoint_at: int | None = None) -> None:
    async with open_replica(target, Ledger(), snapshot_every=1_000_000) as replica:  # type: ignore[arg-type]
        for value in range(1, count + 1):
            await replica.submit({"v": value})
            if value == checkpoint_at:
                assert await replica.checkpoint() == checkpoint_at


async def test_report_of_a_fresh_directory(tmp_path: Path) -> None:
    async with open_replica(tmp_path / "new", Ledger()) as replica:
        report = replica.recovery
    assert (report.snapshot_op, report.ops_replayed, report.bytes_truncated) == (0, 0, 0)
    assert (report.last_op, report.snapshots_skipped, report.ops_rejected) == (0, 0, 0)
    assert report.journal.records == 0
    assert report.seconds >= 0


@pytest.mark.parametrize("checkpoint_at", [None, 10])
async def test_report_after_clean_shutdown(checkpoint_at: int | None) -> None:
    disk = MemoryDirectory()
    await write_ops(disk, 25, checkpoint_at=checkpoint_at)
    async with open_replica(disk, Ledger()) as replica:
        report = replica.recovery
        assert replica.machine.values == list(range(1, 26))  # type: ignore[attr-defined]
    snapshot_op = checkpoint_at or 0
    assert report.snapshot_op == snapshot_op
    assert report.ops_replayed == 25 - snapshot_op
    assert report.bytes_truncated == 0
    assert report.journal.bytes_truncated == 0
    assert report.journal.truncated_path is None
    assert report.last_op == 25
    assert report.journal.last_op == 25
    assert report.snapshots_skipped == 0


def last_segment(data: Path) -> Path:
    segments = sorted((data / "wal").glob("*.wal"))
    assert segments
    return segments[-1]


@pytest.mark.parametrize("checkpoint_at", [None, 10])
async def test_report_after_crash_with_torn_tail(tmp_path: Path, checkpoint_at: int | None) -> None:
    """A crash in the middle of the last append: its record is only partly on
    disk. Recovery cuts exactly that partial record and replays the rest."""
    data = tmp_path / "data"
    await write_ops(data, 25, checkpoint_at=checkpoint_at)
    segment = last_segment(data)
    size = segment.stat().st_size
    os.truncate(segment, size - 3)
    async with open_replica(data, Ledger()) as replica:
        report = replica.recovery
        assert replica.machine.values == list(range(1, 25))  # type: ignore[attr-defined]
        # The replica continues after the cut, with the next op number.
        assert (await replica.execute({"v": 100})).op == 25
    snapshot_op = checkpoint_at or 0
    assert report.bytes_truncated > 0
    assert report.bytes_truncated == report.journal.bytes_truncated
    assert report.journal.truncated_path is not None
    assert report.journal.truncated_path.endswith(segment.name)
    assert report.journal.truncated_offset == size - 3 - report.bytes_truncated
    assert report.snapshot_op == snapshot_op
    assert report.ops_replayed == 24 - snapshot_op
    assert report.last_op == 24
    # The cut is durable: the next recovery has nothing to truncate.
    async with open_replica(data, Ledger()) as replica:
        assert replica.recovery.bytes_truncated == 0
        assert replica.recovery.last_op == 25


async def test_falls_back_to_older_snapshot_and_the_journal_still_covers_it(
    tmp_path: Path,
) -> None:
    """The journal is compacted only up to the OLDEST retained snapshot, so a
    damaged newest snapshot costs replay time, never ops."""
    data = tmp_path / "data"
    async with open_replica(
        data, Ledger(), snapshot_every=1_000_000, segment_bytes=256, max_batch=1
    ) as replica:
        for value in range(1, 61):
            await replica.submit({"v": value})
            if value in (20, 40, 50):
                await replica.checkpoint()
    snapshots = sorted((data / "snapshots").glob("*.snapshot"))
    assert [int(p.name.split(".")[0]) for p in snapshots] == [40, 50]
    newest = snapshots[-1]
    blob = bytearray(newest.read_bytes())
    blob[-1] ^= 0xFF
    newest.write_bytes(bytes(blob))
    async with open_replica(data, Ledger()) as replica:
        report = replica.recovery
        assert replica.machine.values == list(range(1, 61))  # type: ignore[attr-defined]
    assert report.snapshot_op == 40
    assert report.snapshots_skipped == 1
    assert report.ops_replayed == 20


async def test_missing_ops_between_snapshot_and_journal_is_corruption(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with open_replica(
        data, Ledger(), snapshot_every=1_000_000, segment_bytes=256, max_batch=1
    ) as replica:
        for value in range(1, 41):
            await replica.submit({"v": value})
            if value in (15, 30):
                await replica.checkpoint()
    for path in (data / "snapshots").glob("*.snapshot"):
        path.unlink()
    with pytest.raises(CorruptionError, match="neither in a snapshot nor in the journal"):
        async with open_replica(data, Ledger()):
            pass  # pragma: no cover
    # The refused open released everything: the lock is free again.
    with pytest.raises(CorruptionError):
        async with open_replica(data, Ledger()):
            pass  # pragma: no cover


async def test_snapshot_newer_than_journal_is_corruption(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await write_ops(data, 12, checkpoint_at=12)
    for path in (data / "wal").glob("*.wal"):
        path.unlink()
    with pytest.raises(CorruptionError, match="trailing segments were lost"):
        async with open_replica(data, Ledger()):
            pass  # pragma: no cover


async def test_recover_alone_returns_open_journal_and_store() -> None:
    disk = MemoryDirectory()
    await write_ops(disk, 7, checkpoint_at=5)
    machine = Ledger()
    journal, store, report = await recover(disk, machine)
    try:
        assert isinstance(store, SnapshotStore)
        assert journal.last_op == 7
        # The watermark is the oldest retained snapshot: ring capacity counts from it.
        assert journal.watermark == 5
        assert report.snapshot_op == 5
        assert report.ops_replayed == 2
        assert machine.values == list(range(1, 8))
    finally:
        await store.aclose()
        await journal.aclose()


async def test_every_crash_state_recovers_a_prefix_with_every_acked_op() -> None:
    """Invariants 1 and 2 against simulated power loss: after each disk
    operation of a workload (appends, segment rolls, snapshots, compaction),
    each possible post-crash state recovers to ops 1..k with k >= the last op
    acked at that moment, holding every acked (op, value)."""
    disk = SimulatedDisk(seed=11)
    acked: dict[int, int] = {}
    with CrashRecorder(
        disk, context=lambda: tuple(sorted(acked.items())), max_states_per_point=8
    ) as recorder:
        async with open_replica(
            disk, Ledger(), snapshot_every=5, segment_bytes=300, slot_count=16, max_batch=3
        ) as replica:

            async def submitter(task: int) -> None:
                for i in range(8):
                    value = task * 100 + i
                    acked[(await replica.execute({"v": value})).op] = value

            async with trio.open_nursery() as nursery:
                for task in range(4):
                    nursery.start_soon(submitter, task)
    assert len(acked) == 4 * 8
    # The workload really went through snapshots and compaction.
    kinds = {(op.kind, op.path.split("/")[0]) for op in disk.log}
    assert ("rename", "snapshots") in kinds
    assert ("unlink", "wal") in kinds
    assert recorder.operations > 100
    assert len(recorder.points) >= 100
    for point in recorder.points:
        async with open_replica(point.state, Ledger(), slot_count=16) as replica:
            check_prefix(replica.machine, dict(point.context))  # type: ignore[arg-type]


async def test_a_record_that_is_not_a_command_is_refused_naming_file_and_offset(
    tmp_path: Path,
) -> None:
    # A record whose checksum is valid but whose body is not CBOR.
    from trio_replica.journal import Entry, Journal

    data = tmp_path / "data"
    async with await Journal.open(data) as journal:
        await journal.append([Entry(1, b"\xa1\x61a\x01"), Entry(2, b"\xff\xff not cbor")])
        path, offset = await journal.location_of(2)
    with pytest.raises(CorruptionError) as info:
        async with open_replica(data, Ledger()):
            pass  # pragma: no cover
    assert (info.value.path, info.value.offset, info.value.op) == (path, offset, 2)
    assert path.endswith(".wal") and offset > 0
    # verify gives the same judgment, naming the same record.
    from trio_replica.cli.verify import verify_directory
    from trio_replica.storage import OsDirectory

    report = verify_directory(OsDirectory(data, read_only=True), shown_path=str(data))
    assert [p for p in report.problems if f"offset {offset}, op 2" in p and path in p]
