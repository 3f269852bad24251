"""Every crash state of a replica under concurrent submitters, snapshots and compaction
recovers to a prefix of the ops holding every acked op (invariants 1, 2, 7, docs/invariants.md)."""

from __future__ import annotations

import random

import trio
from crash_checks import quiet_recovery_logs

from trio_replica import open_replica
from trio_replica.testing import CrashRecorder, SimulatedDisk
from trio_replica.testing.simulate import LedgerMachine

OPTIONS = {"snapshot_every": 6, "segment_bytes": 1500, "keep_snapshots": 2}


def setup_module() -> None:
    quiet_recovery_logs()


async def test_every_crash_state_of_a_replica_recovers_a_prefix_with_every_acked_op() -> None:
    disk = SimulatedDisk(seed=41)
    acked: dict[int, int] = {}  # op -> command id
    amounts: dict[int, int] = {}  # command id -> amount

    async def submitter(replica: object, first_id: int) -> None:
        rng = random.Random(first_id)
        for command_id in range(first_id, first_id + 15):
            amounts[command_id] = rng.randint(-50, 50)
            op = await replica.submit({"id": command_id, "add": amounts[command_id]})  # type: ignore[attr-defined]
            acked[op] = command_id

    recorder: CrashRecorder[tuple[tuple[int, int], ...]] = CrashRecorder(
        disk, context=lambda: tuple(sorted(acked.items())), max_states_per_point=64
    )
    with recorder:
        async with open_replica(disk, LedgerMachine(), **OPTIONS) as replica:
            async with trio.open_nursery() as nursery:
                for first_id in (100, 200, 300):
                    nursery.start_soon(submitter, replica, first_id)
            await replica.checkpoint()
    kinds = {p.operation.kind for p in recorder.points if p.operation}
    assert {"rename", "unlink", "create"} <= kinds  # snapshots, compaction, segment rolls

    recovered_ops = []
    for point in recorder.points:
        machine = LedgerMachine()
        async with open_replica(point.state, machine, **OPTIONS) as replica:
            where = f"after {point.operation}"
            assert replica.applied_op == len(machine.ids), where
            for op, command_id in point.context:
                assert op <= len(machine.ids), f"{where}: acked op {op} lost"
                assert machine.ids[op - 1] == command_id, f"{where}: op {op} changed"
            assert len(set(machine.ids)) == len(machine.ids), where
            assert machine.total == sum(amounts[i] for i in machine.ids), where
            recovered_ops.append(replica.applied_op)
    print(
        f"replica: {len(recorder.points)} crash states checked over {recorder.operations} "
        f"disk operations ({recorder.sampled_points} sampled); "
        f"recovered ops ranged {min(recovered_ops)}..{max(recovered_ops)}"
    )
    assert len(recorder.points) > 100
    assert recorder.exhaustive
    assert max(recovered_ops) == 45 and min(recovered_ops) == 0
