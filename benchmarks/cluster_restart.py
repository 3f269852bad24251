"""Restarts of a loopback cluster of real ``serve`` processes: catch-up speed.

Starts a 3-replica cluster (:class:`~trio_replica.testing.local_cluster.LocalCluster`),
stops one backup, commits ``--ops`` adds from ``--clients`` clients with the
other two, then starts the backup again and measures how long it takes to
apply everything (ops/s of catch-up, and whether its view changed). Then
stops every replica (SIGTERM), starts them all again and measures how long
the cluster takes to be normal with everything applied, and how many views
that took.

    python benchmarks/cluster_restart.py [--ops 5000] [--clients 16]

Numbers depend on the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from trio_replica.cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport
from trio_replica.testing.local_cluster import LocalCluster


async def _load(cluster: LocalCluster, config: ClusterConfig, ops: int, clients: int) -> int:
    done = 0

    async def client_loop(name: int) -> None:
        nonlocal done
        async with (
            open_tcp_client_transport(cluster.cluster_id, cluster.addresses) as transport,
            open_cluster_client(config, transport=transport, retry_seconds=0.25) as client,
        ):
            while done < ops:
                await client.submit({"add": name})
                done += 1

    async with trio.open_nursery() as nursery:
        for name in range(1, clients + 1):
            nursery.start_soon(client_loop, name)
    return done


async def _until_applied(
    cluster: LocalCluster, ops: int, replicas: list[int]
) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    while True:
        found = await cluster.statuses()
        ready = [found[i] for i in replicas]
        if all(s is not None and s.get("status") == "normal" for s in ready):
            answers = [s for s in ready if s is not None]
            if all(int(s["applied"]) >= ops for s in answers):
                return time.monotonic() - started, answers
        await trio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=5000, help="adds committed meanwhile")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trio-replica-restart-") as root:
        # Plain TCP, to measure the protocol's catch-up rather than TLS.
        cluster = LocalCluster(Path(root), clients_max=args.clients + 4, tls=False)
        config = ClusterConfig(cluster.cluster_id, 3, clients_max=args.clients + 4)
        try:
            cluster.start_all()

            async def first() -> tuple[int, int]:
                with trio.fail_after(60):
                    statuses = await cluster.wait_normal(quiet=True)
                backup = next(int(s["replica"]) for s in statuses if not s["primary"])
                cluster.stop(backup)
                committed = await _load(cluster, config, args.ops, args.clients)
                return backup, committed

            backup, committed = trio.run(first)
            before = trio.run(cluster.statuses)
            target = max(int(s["applied"]) for s in before if s is not None)
            view = max(int(s["view"]) for s in before if s is not None)
            cluster.start(backup)
            took, statuses = trio.run(_until_applied, cluster, target, [backup])
            print(
                f"backup catch-up: {target} ops in {took:.2f} s from process start "
                f"({target / took:,.0f} ops/s), view {view} -> {statuses[0]['view']}",
                flush=True,
            )
            cluster.stop_all()
            cluster.start_all()
            took, statuses = trio.run(_until_applied, cluster, target, [0, 1, 2])
            print(
                f"whole-cluster restart: normal with {target} ops applied in {took:.2f} s "
                f"from process start, view {view} -> {statuses[0]['view']}"
            )
            print(f"({committed} adds committed by {args.clients} clients)")
            cluster.stop_all()
        finally:
            cluster.kill_all()


if __name__ == "__main__":
    main()
