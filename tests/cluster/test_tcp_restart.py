"""Real processes on loopback: restarts of a cluster with thousands of ops.

Three ``trio-replica serve`` processes; 16 clients commit a few thousand adds
(no view change, so the durable view state is older than most of the log).
Then:

* every replica is stopped with SIGTERM and started again: the cluster must
  be normal in one view with every acknowledged add applied, within a
  bounded time and a few views (it used to change views forever);
* one backup is stopped and started again: it must rejoin the view it left
  (no view change) and catch up;
* every acknowledged add is applied exactly once and the replicas' journals
  hold the same committed prepares.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from tcp_processes import LocalCluster

from trio_replica.cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport
from trio_replica.machines.counter import Counter
from trio_replica.testing.cluster_replay import replay_cluster_journal

OPS = 2500
CLIENTS = 16


async def _replay(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    machine = Counter()
    chain = await replay_cluster_journal(str(path), machine)
    return chain, machine.total


@pytest.mark.slow
def test_a_whole_cluster_restart_after_thousands_of_ops_converges(tmp_path: Path) -> None:
    # Plain TCP: restarts do not depend on TLS (tests/cluster/test_tls.py covers it).
    cluster = LocalCluster(tmp_path, clients_max=CLIENTS + 4, tls=False)
    config = ClusterConfig(cluster.cluster_id, 3, clients_max=CLIENTS + 4)
    acked: list[int] = []

    async def client_loop(name: int) -> None:
        async with (
            open_tcp_client_transport(cluster.cluster_id, cluster.addresses) as transport,
            open_cluster_client(config, transport=transport, retry_seconds=0.25) as client,
        ):
            while len(acked) < OPS:
                with trio.fail_after(30):
                    await client.submit({"add": name})
                acked.append(name)

    async def load() -> list[dict[str, object]]:
        with trio.fail_after(60):
            await cluster.wait_normal(quiet=True)
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for name in range(1, CLIENTS + 1):
                    nursery.start_soon(client_loop, name)
        with trio.fail_after(60):
            return await cluster.wait_normal(quiet=True)

    async def converged(seconds: float) -> list[dict[str, object]]:
        # Normal in one view, at one commit, everything acknowledged applied.
        with trio.fail_after(seconds):
            while True:
                statuses = await cluster.wait_normal(quiet=True, poll=0.2)
                if all(int(str(s["applied"])) >= len(acked) for s in statuses):
                    return statuses
                await trio.sleep(0.2)

    try:
        cluster.start_all()
        before = trio.run(load)
        view = int(str(before[0]["view"]))
        # The whole cluster, stopped and started again.
        assert cluster.stop_all() == [0, 0, 0]
        cluster.start_all()
        started = time.monotonic()
        after = trio.run(converged, 90.0)
        full_restart = time.monotonic() - started
        # One view change after the restart timeout, a few more at worst.
        restarted_view = int(str(after[0]["view"]))
        assert view < restarted_view <= view + 4, (view, after)
        # A backup, stopped and started again: it rejoins that view quietly.
        backup = next(int(str(s["replica"])) for s in after if not s["primary"])
        assert cluster.stop(backup) == 0
        cluster.start(backup)
        rejoined = trio.run(converged, 60.0)
        assert {int(str(s["view"])) for s in rejoined} == {restarted_view}, rejoined
        assert cluster.stop_all() == [0, 0, 0]
    finally:
        cluster.kill_all()
    replays = [trio.run(_replay, d) for d in cluster.dirs]
    chains = [chain for chain, _ in replays]
    assert chains[0] == chains[1] == chains[2]
    assert {total for _, total in replays} == {sum(acked)}
    print(f"{len(acked)} adds; whole-cluster restart converged in {full_restart:.1f} s")
