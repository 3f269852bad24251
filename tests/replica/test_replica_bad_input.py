"""Bad input gets a clear, typed error and loses nothing (invariant 10, docs/invariants.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
from replica_machines import Ledger, check_prefix

from trio_replica import (
    CommandEncodingError,
    DirectoryLockedError,
    InvalidCommand,
    ReplicaStoppedError,
    StateMachineError,
    open_replica,
)
from trio_replica.journal import Journal
from trio_replica.pipeline import Commit, Reply, RequestGroup, SnapshotTaken, ToApplier
from trio_replica.replica import Applied, CommandTooLargeError
from trio_replica.stm.applier import Applier
from trio_replica.storage import MemoryDirectory


async def journal_last_op(disk: MemoryDirectory) -> int:
    journal = await Journal.open(disk, lock=False)
    try:
        return journal.last_op
    finally:
        await journal.aclose()


async def test_unencodable_command_is_refused_and_not_journaled() -> None:
    disk = MemoryDirectory()
    async with open_replica(disk, Ledger(), max_command_bytes=1000) as replica:
        await replica.submit({"v": 1})
        with pytest.raises(CommandEncodingError, match="nothing was journaled"):
            await replica.submit({"v": object()})
        with pytest.raises(CommandEncodingError):
            await replica.submit({"v": {1, 2, 3}.__iter__()})
        with pytest.raises(CommandTooLargeError) as too_large:
            await replica.submit({"v": 2, "pad": b"x" * 2000})
        assert too_large.value.limit == 1000
        assert too_large.value.size > 1000
        # The replica keeps serving, and the refused commands took no op.
        assert (await replica.execute({"v": 3})).op == 2
    assert await journal_last_op(disk) == 2


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


async def test_deeply_nested_or_cyclic_command_is_refused_not_a_crash() -> None:
    """cbor2's encoder crashes the process on ~10,000 levels of nesting; submit
    must refuse such a command with a typed error before it gets there."""
    disk = MemoryDirectory()
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    async with open_replica(disk, Ledger()) as replica:
        for command in (nested(300), nested(100_000), {"v": cyclic}):
            with pytest.raises(CommandEncodingError, match="nested deeper"):
                await replica.submit(command)
        # Deep but within the limit still round-trips, and the replica keeps serving.
        assert (await replica.execute({"v": 1, "deep": nested(200)})).op == 1
    assert await journal_last_op(disk) == 1


async def test_invalid_command_reaches_submitter_and_replays_identically() -> None:
    disk = MemoryDirectory()
    commands: list[Any] = [{"v": 1}, {"reject": "no"}, {"v": 2}, "not a map", {"v": "x"}, {"v": 3}]
    async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
        outcomes: list[object] = []
        for command in commands:
            try:
                outcomes.append(await replica.execute(command))
            except InvalidCommand as exc:
                outcomes.append(exc)
        assert [type(o).__name__ for o in outcomes] == [
            "Applied",
            "InvalidCommand",
            "Applied",
            "InvalidCommand",
            "InvalidCommand",
            "Applied",
        ]
        rejected = outcomes[1]
        assert isinstance(rejected, InvalidCommand)
        assert rejected.reason == "rejected: no"
        assert rejected.op == 2
        live_state = replica.machine.snapshot()
        assert replica.applied_op == 6  # rejected commands still consume an op
    # Every op, rejected ones included, is journaled, and replay rejects the
    # same ones: the recovered state is the live one.
    assert await journal_last_op(disk) == 6
    async with open_replica(disk, Ledger()) as replica:
        assert replica.recovery.ops_replayed == 6
        assert replica.recovery.ops_rejected == 3
        assert replica.machine.snapshot() == live_state
        assert live_state == {"ops": [1, 3, 6], "values": [1, 2, 3]}


class FixedLedger(Ledger):
    """The same machine after its bug was fixed: "boom" is now rejected."""

    def apply(self, op: int, command: Any) -> int:
        if isinstance(command, dict) and "boom" in command:
            raise InvalidCommand("boom is not allowed")
        return super().apply(op, command)


async def test_exception_in_apply_stops_replica_and_recovery_names_the_op() -> None:
    disk = MemoryDirectory()
    errors: list[BaseException] = []
    acked: dict[int, int] = {}
    with pytest.raises(StateMachineError) as stopped:
        async with open_replica(disk, Ledger(), snapshot_every=1_000_000) as replica:
            for value in range(5):
                acked[(await replica.execute({"v": value})).op] = value
            try:
                await replica.submit({"boom": True})
            except StateMachineError as exc:
                errors.append(exc)
                raise
    assert stopped.value.op == 6
    assert isinstance(stopped.value.__cause__, ZeroDivisionError)
    assert errors and errors[0] is stopped.value
    # The handle refuses further use, saying why.
    with pytest.raises(ReplicaStoppedError) as after:
        await replica.submit({"v": 99})
    assert after.value.__cause__ is stopped.value
    # The op is durable in the journal (it was fsynced before apply ran), so
    # recovery meets the same bug and says which op it is; no half-applied
    # state is ever served.
    assert await journal_last_op(disk) == 6
    with pytest.raises(StateMachineError, match="op 6") as at_recovery:
        async with open_replica(disk, Ledger()):
            pass  # pragma: no cover - recovery fails before the block runs
    assert at_recovery.value.op == 6
    # Once the state machine is fixed, recovery replays past it.
    async with open_replica(disk, FixedLedger()) as replica:
        assert replica.recovery.ops_rejected == 1
        assert replica.machine.pairs() == acked  # type: ignore[attr-defined]
        assert (await replica.execute({"v": 7})).op == 7


async def test_exception_in_apply_fails_the_rest_of_its_batch() -> None:
    """The applier, fed one durable batch [ok, bug, ok] (as two Prepares, one
    request group) + a checkpoint: the first
    op is answered, the bug and everything after it in the batch fail with the
    StateMachineError, and the applier raises it (which stops the replica)."""
    group = RequestGroup()
    for command in ({"v": 1}, {"boom": 1}, {"v": 3}):
        group.add(b"", command)
    prepares = group.number(1)
    checkpoint: Reply[int] = Reply()
    batch = Commit(
        op=3,
        prepares=(prepares.split(1)[0], prepares.split(1)[1]),
        groups=(group,),
        checkpoints=(checkpoint,),
        remaining_capacity=100,
    )
    applier = Applier(Ledger(), applied_op=0, last_snapshot_op=0, snapshot_every=10, low_capacity=1)
    send, receive = trio.open_memory_channel[ToApplier](1)
    to_coordinator, snapshots = trio.open_memory_channel[SnapshotTaken](1)
    await send.send(batch)
    with pytest.raises(StateMachineError) as raised:
        await applier.run(receive, to_coordinator)
    assert raised.value.op == 2
    await group.wait()
    assert group.outcome(0) == Applied(op=1, result=1)
    for index in (1, 2):
        with pytest.raises(StateMachineError) as failed:
            group.outcome(index)
        assert failed.value is raised.value
    with pytest.raises(StateMachineError) as failed:
        await checkpoint.wait()
    assert failed.value is raised.value
    assert applier.applied_op == 1
    with pytest.raises(trio.EndOfChannel):
        snapshots.receive_nowait()  # closed with no snapshot of a half-applied state


class BadSnapshot(Ledger):
    def snapshot(self) -> dict[str, list[int]]:
        raise KeyError("snapshot bug")


class UnencodableSnapshot(Ledger):
    def snapshot(self) -> Any:
        return {"ops": object()}


@pytest.mark.parametrize("machine_type", [BadSnapshot, UnencodableSnapshot])
async def test_snapshot_bug_stops_replica(machine_type: type[Ledger]) -> None:
    disk = MemoryDirectory()
    acked: dict[int, int] = {}
    with pytest.raises(StateMachineError, match="at op 3") as stopped:
        async with open_replica(disk, machine_type(), snapshot_every=3, max_batch=1) as replica:
            for value in range(10):
                acked[(await replica.execute({"v": value})).op] = value
    assert stopped.value.op == 3
    # The snapshot failed, not the journal: every acked op recovers.
    async with open_replica(disk, Ledger()) as replica:
        assert replica.recovery.snapshot_op == 0
        check_prefix(replica.machine, acked)  # type: ignore[arg-type]


async def test_second_opener_in_process_is_refused(tmp_path: Path) -> None:
    for target in (MemoryDirectory(), tmp_path / "data"):
        async with open_replica(target, Ledger()) as replica:
            await replica.submit({"v": 1})
            with pytest.raises(DirectoryLockedError):
                async with open_replica(target, Ledger()):
                    pass  # pragma: no cover
            with pytest.raises(DirectoryLockedError):
                await Journal.open(target)
            # The refused opener changed nothing: this replica keeps serving.
            assert (await replica.execute({"v": 2})).op == 2
        # Released on close: it opens again.
        async with open_replica(target, Ledger()) as replica:
            assert replica.recovery.last_op == 2


CHILD = textwrap.dedent(
    """
    import sys, trio
    from trio_replica import open_replica, DirectoryLockedError
    from trio_replica.machines.counter import Counter

    async def main():
        try:
            async with open_replica(sys.argv[1], Counter()):
                print("opened")
        except DirectoryLockedError as exc:
            print("locked:", exc.path)

    trio.run(main)
    """
)


async def test_second_opener_in_another_process_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    from trio_replica.machines.counter import Counter

    async with open_replica(data, Counter()) as replica:
        await replica.submit({"add": 1})
        result = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [sys.executable, "-c", CHILD, str(data)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("locked:"), result.stdout
        assert await replica.submit({"add": 1}) == 2
    done = await trio.run_process(
        [sys.executable, "-c", CHILD, str(data)], capture_stdout=True, capture_stderr=True
    )
    assert done.stdout.decode().strip() == "opened", done.stderr
