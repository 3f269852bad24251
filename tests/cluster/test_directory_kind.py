"""A data directory is a single replica's or a cluster member's, never both."""

from __future__ import annotations

from typing import Any

import pytest

from trio_replica import ReplicaKindError, open_replica
from trio_replica.cluster import (
    ClusterConfig,
    ClusterIdentityError,
    open_cluster_client,
    open_cluster_replica,
)
from trio_replica.machines.counter import Counter
from trio_replica.testing import SimulatedDisk, open_sim_transport


async def test_open_replica_refuses_a_cluster_directory(autojump_clock: Any) -> None:
    config = ClusterConfig(cluster_id=12, replica_count=1)
    disk = SimulatedDisk(3)
    async with open_sim_transport(seed=1) as transport:
        async with (
            open_cluster_replica(disk, Counter(), config, replica=0, transport=transport),
            open_cluster_client(config, transport=transport) as client,
        ):
            assert await client.submit({"add": 2}) == 2
        before = disk.digest()
        with pytest.raises(ReplicaKindError) as caught:
            async with open_replica(disk, Counter()):
                pass
        assert caught.value.replica_count == 1 and "open_cluster_replica" in str(caught.value)
        assert disk.digest() == before  # nothing was changed
        # ... and it still opens as the cluster member it is.
        async with (
            open_cluster_replica(disk, Counter(), config, replica=0, transport=transport),
            open_cluster_client(config, transport=transport) as client,
        ):
            assert await client.submit({"add": 3}) == 5


async def test_a_cluster_member_refuses_a_single_replica_directory(autojump_clock: Any) -> None:
    disk = SimulatedDisk(4)
    async with open_replica(disk, Counter()) as replica:
        await replica.submit({"add": 1})
    async with open_sim_transport(seed=1) as transport:
        with pytest.raises(ClusterIdentityError, match="written by a single replica"):
            async with open_cluster_replica(
                disk,
                Counter(),
                ClusterConfig(cluster_id=1, replica_count=3),
                replica=0,
                transport=transport,
            ):
                pass
