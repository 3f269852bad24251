"""The metadata state machine through a replica: concurrent clients, rejections,
snapshots and a restart all lead to the state of applying the ops in op order."""

from __future__ import annotations

import random
from itertools import islice

import trio

from trio_replica import InvalidCommand, open_replica
from trio_replica.machines.metadata import MetadataStateMachine
from trio_replica.machines.workload import metadata_steps
from trio_replica.storage import MemoryDirectory


async def test_concurrent_metadata_clients_recover_to_the_op_order_state() -> None:
    disk = MemoryDirectory()
    accepted: dict[int, dict[str, object]] = {}
    rejected = 0
    options = {"snapshot_every": 25, "segment_bytes": 2048, "max_batch": 8}
    async with open_replica(disk, MetadataStateMachine(), **options) as replica:

        async def client(client_id: int) -> None:
            nonlocal rejected
            steps = metadata_steps(random.Random(client_id), client_id, invalid_ratio=0.1)
            for step in islice(steps, 60):
                try:
                    applied = await replica.execute(step.command)
                except InvalidCommand:
                    assert not step.valid, f"valid command rejected: {step.command}"
                    rejected += 1
                else:
                    assert step.valid, f"invalid command accepted: {step.command}"
                    accepted[applied.op] = step.command

        async with trio.open_nursery() as nursery:
            for client_id in range(6):
                nursery.start_soon(client, client_id)
        live = replica.machine
        assert isinstance(live, MetadataStateMachine)
        live_digest = live.state_digest()
    assert rejected > 0
    assert len(accepted) + rejected == 360

    # Rejected ops change nothing, so the accepted ones in op order rebuild it.
    reference = MetadataStateMachine()
    for op in sorted(accepted):
        reference.apply(op, accepted[op])
    assert reference.state_digest() == live_digest

    async with open_replica(disk, MetadataStateMachine(), **options) as replica:
        recovered = replica.machine
        assert isinstance(recovered, MetadataStateMachine)
        assert recovered.state_digest() == live_digest
        assert replica.recovery.snapshot_op > 0
        assert replica.recovery.last_op == 360
