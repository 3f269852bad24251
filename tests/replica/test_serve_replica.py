"""serve_replica: the task form of open_replica, for nursery.start."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from trio_replica import DirectoryLockedError, open_replica, serve_replica
from trio_replica.machines import Counter
from trio_replica.testing import SimulatedDisk


async def test_start_hands_over_a_running_replica_and_cancel_stops_it() -> None:
    disk = SimulatedDisk(seed=3)
    async with trio.open_nursery() as nursery:
        replica = await nursery.start(partial(serve_replica, snapshot_every=4), disk, Counter())
        for _ in range(10):
            total = await replica.submit({"add": 1})
        assert total == 10 and not replica.closed
        nursery.cancel_scope.cancel()
    assert replica.closed
    # Stopped, so the directory is free again, and what was acked is there.
    machine = Counter()
    async with open_replica(disk.crash(), machine) as reopened:
        assert machine.total == 10 and reopened.applied_op == 10


async def test_startup_errors_are_raised_by_start() -> None:
    disk = SimulatedDisk(seed=4)
    async with open_replica(disk, Counter()), trio.open_nursery() as nursery:
        with pytest.raises(DirectoryLockedError):
            await nursery.start(serve_replica, disk, Counter())
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError, match="snapshot_every"):
            await nursery.start(partial(serve_replica, snapshot_every=0), disk, Counter())
