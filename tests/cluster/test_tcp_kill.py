"""A real 3-process cluster on loopback: the primary SIGKILLed under load, again and again.

Every connection is mutual TLS (certificates made for the test).

Three ``trio-replica serve`` processes; four clients submit adds without
pause. Five times, the primary is SIGKILLed (a different replica each time:
a kill counts only when it hits another replica than the last one), the
load keeps going through the view change, and the killed replica is
restarted and catches up. Then:

* every acknowledged add is applied exactly once: each replica's journal,
  replayed with the protocol's de-duplication, totals exactly the sum of the
  acknowledged adds (clients never abandon a request, so none is unknown);
* the replicas converge: the same committed prepares (checksums) op by op,
  the same replayed state, and the same status;
* the history the clients saw is linearizable;
* ``trio-replica verify`` is clean on every data directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from tcp_processes import LocalCluster, cli

from trio_replica.cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport
from trio_replica.machines.counter import Counter
from trio_replica.testing import HistoryRecorder, Verdict, check_linearizability
from trio_replica.testing.cluster_replay import replay_cluster_journal

KILLS = 5
CLIENTS = 4


async def _replay(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """Every journaled (op, prepare checksum), and the Counter total of the
    journaled requests applied with the protocol's de-duplication."""
    machine = Counter()
    chain = await replay_cluster_journal(str(path), machine)
    return chain, machine.total


@pytest.mark.slow
def test_primary_killed_five_times_under_load(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    recorder = HistoryRecorder()
    acked: list[int] = []
    killed: list[int] = []
    config = ClusterConfig(cluster.cluster_id, 3, tls=cluster.client_tls)

    async def client_loop(name: int, stop: trio.Event) -> None:
        async with (
            open_tcp_client_transport(
                cluster.cluster_id, cluster.addresses, tls=config.tls
            ) as transport,
            open_cluster_client(config, transport=transport, retry_seconds=0.25) as client,
        ):
            i = 0
            while not stop.is_set():
                i += 1
                command = {"add": name * 1000 + i}
                pending = recorder.invoke(name, command)
                with trio.fail_after(30):  # never abandoned: a timeout fails the test
                    result = await client.submit(command)
                pending.ok(result)
                acked.append(command["add"])

    def distinct_kills() -> int:
        return sum(1 for i, r in enumerate(killed) if i == 0 or r != killed[i - 1])

    async def scenario() -> None:
        t0 = time.monotonic()
        with trio.fail_after(100):
            await cluster.wait_normal(quiet=True)
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                for name in range(1, CLIENTS + 1):
                    nursery.start_soon(client_loop, name, stop)
                # The cluster picks the next primary; when it picks the replica
                # killed last, that kill happens too but does not count as one
                # of the KILLS kills of a different replica (at most 2 * KILLS kills).
                while distinct_kills() < KILLS and len(killed) < 2 * KILLS:
                    statuses = await cluster.wait_normal(quiet=False)
                    primary = next(s["replica"] for s in statuses if s["primary"])
                    before = len(acked)
                    await trio.sleep(0.3)  # under load
                    cluster.kill(primary)
                    killed.append(primary)
                    # The survivors elect a primary and keep committing.
                    while len(acked) < before + 20:  # noqa: ASYNC110 (a count, polled)
                        await trio.sleep(0.05)
                    cluster.start(primary)
                    print(f"killed {primary} at {time.monotonic() - t0:.1f} s, {len(acked)} acked")
                stop.set()
            await cluster.wait_normal(quiet=True)

    try:
        cluster.start_all()
        started = time.monotonic()
        trio.run(scenario)
        elapsed = time.monotonic() - started
        assert cluster.stop_all() == [0, 0, 0]
    finally:
        cluster.kill_all()
    assert distinct_kills() >= KILLS and len(set(killed)) == 3
    assert len(acked) > 100
    replays = [trio.run(_replay, d) for d in cluster.dirs]
    chains = [chain for chain, _ in replays]
    assert chains[0] == chains[1] == chains[2]
    assert {total for _, total in replays} == {sum(acked)}
    result = check_linearizability(recorder.operations(), Counter)
    assert result.verdict == Verdict.LINEARIZABLE, result.describe()
    for d in cluster.dirs:
        done = cli("verify", d)
        assert done.returncode == 0, done.stdout + done.stderr
    logs = "".join(cluster.log_text(i) for i in range(3))
    assert logs.count("received SIGTERM") == 3
    print(f"{len(acked)} acknowledged adds, {KILLS} primaries killed, {elapsed:.1f} s")
