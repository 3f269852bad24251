"""Failure paths of a running replica not covered elsewhere: a failing journal
compaction (fatal), a failing snapshot rename (reported, retried), and a
state machine whose ``restore()`` raises during recovery (a typed error, the
directory untouched and unlocked)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from replica_machines import History, Ledger, check_prefix

from trio_replica import ReplicaStoppedError, open_replica
from trio_replica.coordinator.snapshot_format import snapshot_name
from trio_replica.errors import FatalStorageError, SnapshotRenameError, StateMachineError
from trio_replica.storage import MemoryDirectory
from trio_replica.testing import FaultyDirectory


def wal_segments(disk: MemoryDirectory) -> list[str]:
    return sorted(name for name in disk.subdir("wal").listdir() if name.endswith(".wal"))


# --- 1. a failing compaction is fatal ------------------------------------------


@pytest.mark.parametrize("failing", ["unlink", "sync"])
async def test_failed_compaction_stops_the_replica_and_recovery_keeps_every_acked_op(
    failing: str,
) -> None:
    """docs/architecture.md, "Errors" and "Shutdown": a compaction failure is a
    FatalStorageError; the replica stops, the error propagates out of the
    block, the checkpoint that triggered the compaction gets it, every other
    waiting request gets it or ReplicaStoppedError (caused by it)."""
    memory = MemoryDirectory()
    disk = FaultyDirectory(memory)
    acked: dict[int, int] = {}
    outcomes: dict[int, BaseException] = {}
    checkpoint_errors: list[BaseException] = []

    async with trio.open_nursery() as outer:
        with pytest.raises(FatalStorageError) as stopped:
            async with open_replica(
                disk,
                Ledger(),
                snapshot_every=1_000_000,
                keep_snapshots=1,
                segment_bytes=256,
                max_batch=2,
                inbox_size=2,
            ) as replica:
                for value in range(30):
                    acked[(await replica.execute({"v": value})).op] = value
                segments_before = wal_segments(memory)
                assert len(segments_before) > 2, "the workload must span several segments"

                async def submitter(task: int) -> None:
                    # Runs outside the replica's block, so the stop answers it
                    # instead of cancelling it; keeps submitting until refused.
                    for i in range(1_000):
                        value = 1_000 * (task + 1) + i
                        try:
                            acked[(await replica.execute({"v": value})).op] = value
                        except BaseException as exc:
                            outcomes[task] = exc
                            return

                for task in range(4):
                    outer.start_soon(submitter, task)
                await trio.lowlevel.checkpoint()
                if failing == "unlink":
                    disk.plan.fail("unlink", where="wal")
                else:
                    # Exactly the fsync that follows a deletion fails.
                    disk.plan.fail("dir_sync", where="wal", armed_by="unlink")
                try:
                    await replica.checkpoint()
                except FatalStorageError as exc:
                    checkpoint_errors.append(exc)
                    raise
                pytest.fail("the checkpoint whose compaction failed returned")  # pragma: no cover

    error = stopped.value
    assert disk.plan.failures >= 1
    assert error.stage == "compact"
    assert isinstance(error.__cause__, OSError)
    assert checkpoint_errors == [error], "the checkpoint caller gets the error itself"
    # Every submitter was answered (none hangs, none is cancelled): with the
    # error itself, or with ReplicaStoppedError.
    assert sorted(outcomes) == [0, 1, 2, 3]
    for outcome in outcomes.values():
        assert outcome is error or isinstance(outcome, ReplicaStoppedError), repr(outcome)
    # The handle refuses further use, naming the failure.
    with pytest.raises(ReplicaStoppedError) as after:
        await replica.submit({"v": -1})
    assert after.value.__cause__ is error

    # Reopened on a healthy directory: ops 1..k in order with every acked op.
    async with open_replica(memory, Ledger(), keep_snapshots=1, segment_bytes=256) as reopened:
        ledger: Ledger = reopened.machine  # type: ignore[assignment]
        last = check_prefix(ledger, acked)
        assert reopened.recovery.last_op == last
        # It serves again, and a compaction on the healthy directory succeeds.
        assert (await reopened.execute({"v": 5})).op == last + 1
        assert await reopened.checkpoint() == last + 1
    assert len(wal_segments(memory)) < len(segments_before)


async def test_failed_compaction_after_an_automatic_snapshot_recovers_the_history() -> None:
    """The compaction that follows an automatic (``snapshot_every``) snapshot
    fails while a client keeps submitting. The replica stops with the error,
    and recovery (snapshot plus replay, checked by the History machine, which
    raises on any gap or reordering) holds every acked op in order."""
    memory = MemoryDirectory()
    disk = FaultyDirectory(memory)
    disk.plan.fail("unlink", where="wal")
    acked: dict[int, int] = {}
    with pytest.raises(FatalStorageError) as stopped:
        async with open_replica(
            disk, History(), snapshot_every=10, keep_snapshots=1, segment_bytes=300
        ) as replica:
            for value in range(1_000):
                acked[(await replica.execute(value)).op] = value
    error = stopped.value
    assert error.stage == "compact"
    assert disk.plan.failures == 1
    assert 10 <= len(acked) < 1_000
    with pytest.raises(ReplicaStoppedError) as after:
        await replica.submit(-1)
    assert after.value.__cause__ is error
    async with open_replica(memory, History()) as reopened:
        history: History = reopened.machine  # type: ignore[assignment]
        assert reopened.recovery.snapshot_op >= 10
        assert reopened.recovery.ops_replayed == len(history.values) - reopened.recovery.snapshot_op
        assert len(history.values) >= len(acked)
        assert history.values[: len(acked)] == [acked[op] for op in range(1, len(acked) + 1)]


async def test_requests_blocked_on_a_full_inbox_when_compaction_fails_get_its_cause() -> None:
    """Deterministic: the writer is held inside the compaction's unlink while
    three submitters fill a one-slot inbox (one is queued, two wait in send);
    then the unlink fails. Every submitter must be told why the replica
    stopped: the error itself or ReplicaStoppedError caused by it."""
    memory = MemoryDirectory()
    disk = FaultyDirectory(memory)
    # Every unlink in the wal directory is held until the test opens the gate,
    # so the test knows the writer is inside a compaction.
    gate = disk.plan.gate("unlink", where="wal")
    outcomes: dict[int, BaseException] = {}
    checkpoint_errors: list[BaseException] = []
    async with trio.open_nursery() as outer:
        with pytest.raises(FatalStorageError) as stopped:
            async with open_replica(
                disk,
                Ledger(),
                snapshot_every=1_000_000,
                keep_snapshots=1,
                segment_bytes=256,
                max_batch=1,
                inbox_size=1,
            ) as replica:
                for value in range(30):
                    await replica.submit({"v": value})
                disk.plan.fail("unlink", where="wal")

                async def checkpointer() -> None:
                    try:
                        await replica.checkpoint()
                    except BaseException as exc:
                        checkpoint_errors.append(exc)

                async def submitter(task: int) -> None:
                    try:
                        await replica.submit({"v": 100 + task})
                    except BaseException as exc:
                        outcomes[task] = exc

                outer.start_soon(checkpointer)
                await gate.reached.wait()
                for task in range(3):
                    outer.start_soon(submitter, task)
                await trio.testing.wait_all_tasks_blocked()
                gate.open()
                await trio.sleep_forever()
    error = stopped.value
    assert checkpoint_errors == [error]
    assert sorted(outcomes) == [0, 1, 2]
    for outcome in outcomes.values():
        assert isinstance(outcome, ReplicaStoppedError), repr(outcome)
        assert outcome.__cause__ is error, f"{outcome!r} does not say why the replica stopped"


async def test_block_reraising_a_request_that_raced_the_stop_gets_the_failure_itself() -> None:
    """Deterministic: the block's own submit waits in send() on the full inbox
    while the compaction fails, and (as any caller naturally does) lets the
    error escape. docs/architecture.md promises that the failure itself
    propagates out of ``async with``, not wrapped in an exception group."""
    memory = MemoryDirectory()
    disk = FaultyDirectory(memory)
    # Every unlink in the wal directory is held until the test opens the gate,
    # so the test knows the writer is inside a compaction.
    gate = disk.plan.gate("unlink", where="wal")
    async with trio.open_nursery() as outer:
        with pytest.raises(FatalStorageError):
            async with open_replica(
                disk,
                Ledger(),
                snapshot_every=1_000_000,
                keep_snapshots=1,
                segment_bytes=256,
                max_batch=1,
                inbox_size=1,
            ) as replica:
                for value in range(30):
                    await replica.submit({"v": value})
                disk.plan.fail("unlink", where="wal")

                async def quietly(command: Any) -> None:
                    with contextlib.suppress(ReplicaStoppedError, FatalStorageError):
                        if command is None:
                            await replica.checkpoint()
                        else:
                            await replica.submit(command)

                async def release() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    gate.open()

                outer.start_soon(quietly, None)
                await gate.reached.wait()
                outer.start_soon(quietly, {"v": 100})  # takes the inbox's one slot
                await trio.testing.wait_all_tasks_blocked()
                outer.start_soon(release)
                await replica.submit({"v": 101})  # waits in send() on the full inbox


# --- 2. a failed snapshot rename is reported and retried -----------------------


async def test_snapshot_rename_failure_is_reported_and_a_later_checkpoint_succeeds() -> None:
    memory = MemoryDirectory()
    disk = FaultyDirectory(memory)
    async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
        for value in range(5):
            await replica.submit({"v": value})
        disk.plan.fail("rename", where="snapshots", times=1)
        with pytest.raises(SnapshotRenameError) as failed:
            await replica.checkpoint()
        assert failed.value.retryable is True
        assert disk.plan.failures == 1
        # Not fatal: the replica keeps serving.
        for value in range(5, 8):
            assert (await replica.execute({"v": value})).op == value + 1
        assert replica.applied_op == 8
        # The next checkpoint takes and persists a new snapshot.
        assert await replica.checkpoint() == 8
        await replica.submit({"v": 8})
    assert disk.plan.failures == 1
    snapshots = sorted(memory.subdir("snapshots").listdir())
    assert snapshot_name(8) in snapshots
    async with open_replica(memory, Ledger()) as reopened:
        assert reopened.recovery.snapshot_op == 8
        assert reopened.recovery.ops_replayed == 1
        ledger: Ledger = reopened.machine  # type: ignore[assignment]
        assert ledger.values == list(range(9))
        assert ledger.ops == list(range(1, 10))


# --- 3. restore() raising during recovery ---------------------------------------


class RestoreBug(Ledger):
    """A Ledger whose ``restore`` has a bug."""

    def restore(self, state: Any) -> None:
        self.ops = [-1]  # half-restored: must never be served
        raise RuntimeError("restore() has a bug")


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


async def test_restore_exception_is_a_state_machine_error_and_leaves_the_directory_alone(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_replica(data, Ledger(), snapshot_every=1_000_000) as replica:
        for value in range(10):
            await replica.submit({"v": value})
        assert await replica.checkpoint() == 10
        for value in range(10, 13):
            await replica.submit({"v": value})
    before = file_bytes(data)
    assert f"snapshots/{snapshot_name(10)}" in before

    entered = False
    with pytest.raises(StateMachineError, match="restoring the snapshot at op 10") as failed:
        async with open_replica(data, RestoreBug()):
            entered = True  # pragma: no cover
    assert not entered
    assert failed.value.op == 10
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert "restore() has a bug" in str(failed.value)
    # Nothing was written, renamed, truncated or deleted.
    assert file_bytes(data) == before

    # The lock was released: a good state machine opens the same directory
    # and recovers the whole state.
    async with open_replica(data, Ledger()) as reopened:
        assert reopened.recovery.snapshot_op == 10
        assert reopened.recovery.ops_replayed == 3
        ledger: Ledger = reopened.machine  # type: ignore[assignment]
        assert ledger.values == list(range(13))
        assert ledger.ops == list(range(1, 14))
