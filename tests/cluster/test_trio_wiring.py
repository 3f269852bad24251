"""The Trio wiring of a cluster: in-process replicas on SimulatedDisks over a SimNetwork."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio

from trio_replica.cluster import ClusterConfig, Timing, open_cluster_client, open_cluster_replica
from trio_replica.cluster.header import decode_header
from trio_replica.cluster.storage import ClusterIdentityError, decode_envelope
from trio_replica.errors import DirectoryLockedError, InvalidCommand
from trio_replica.journal import Journal
from trio_replica.machines.counter import Counter
from trio_replica.stm.protocol import StateMachine
from trio_replica.testing import (
    HistoryRecorder,
    NetworkFaults,
    SimulatedDisk,
    Verdict,
    cancel_at_each_schedule_point,
    check_linearizability,
    open_sim_transport,
)
from trio_replica.testing.inprocess_cluster import InProcessCluster, open_inprocess_cluster


class Log(StateMachine):
    """Appends every command; the result is the log's length (exactly-once shows as no repeats)."""

    name: ClassVar[str] = "log"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def apply(self, op: int, command: Any) -> int:
        if command == "bad":
            raise InvalidCommand("bad command")
        self.entries.append(command)
        return len(self.entries)

    def snapshot(self) -> Any:
        return list(self.entries)

    def restore(self, state: Any) -> None:
        self.entries = list(state)


async def _journal_checksums(disk: SimulatedDisk) -> dict[int, bytes]:
    """op -> prepare checksum of every op journaled on ``disk`` (a copy: no lock)."""
    out = {}
    async with await Journal.open(disk.clone(), lock=False, create=False) as journal:
        async for entry in journal.entries(after=journal.first_op - 1):
            header, _ = decode_envelope(entry.body, op=entry.op, path="")
            out[entry.op] = header.checksum
    return out


async def _assert_agreement(cluster: InProcessCluster) -> None:
    """Invariant 11: the same op has the same prepare checksum everywhere it is committed."""
    commit = min(r.status.commit for r in cluster.replicas if r is not None)
    logs = [await _journal_checksums(disk) for disk in cluster.disks]
    # Below the oldest op every journal still holds, checkpoints vouch instead.
    first = max(min(log, default=1) for log in logs)
    for op in range(first, commit + 1):
        assert len({log[op] for log in logs}) == 1, f"replicas disagree on op {op}"


async def test_three_replicas_commit_and_converge(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    async with cluster_factory(Log) as cluster, cluster.client() as client:
        results = [await client.submit(i) for i in range(20)]
        assert results == list(range(1, 21))
        with pytest.raises(InvalidCommand):
            await client.submit("bad")
        assert await client.submit("after") == 21
        with trio.fail_after(120):
            await cluster.wait_converged()
        for replica in cluster.replicas:
            assert replica is not None
            assert replica.machine.entries == [*range(20), "after"]  # type: ignore[attr-defined]
            assert replica.status.primary == (replica.status.replica == 0)
            # one append (fsync) per batch: never more appends than ops
            assert 1 <= replica.fsyncs <= replica.status.op
        await _assert_agreement(cluster)


async def test_killed_primary_view_change_exactly_once(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    async with cluster_factory(Log) as cluster:
        async with cluster.client() as client:
            for i in range(5):
                await client.submit(i)
            old = cluster.primary()
            await cluster.kill(old)  # power loss: only what was fsynced survives
            for i in range(5, 10):
                await client.submit(i)
            assert client.retries > 0  # the client had to retry past the dead primary
        running = [r for r in cluster.replicas if r is not None]
        assert all(r.status.view >= 1 for r in running)
        assert cluster.primary() != old
        await cluster.start(old)  # reopened from what its disk kept
        with trio.fail_after(120):
            await cluster.wait_converged()
        for replica in cluster.replicas:
            assert replica is not None
            assert replica.machine.entries == list(range(10))  # type: ignore[attr-defined]
        await _assert_agreement(cluster)


async def test_concurrent_clients_lossy_network_linearizable(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    faults = NetworkFaults(delay_mean=2.0, loss=0.05, duplication=0.05, reorder=0.1)
    recorder = HistoryRecorder()
    async with cluster_factory(Counter, faults=faults) as cluster:

        async def client_loop(name: int, count: int) -> None:
            async with cluster.client(retry_seconds=0.3) as client:
                for i in range(count):
                    command = {"add": name * 10 + i}
                    pending = recorder.invoke(name, command)
                    pending.ok(await client.submit(command))

        async with trio.open_nursery() as nursery:
            for name in range(1, 4):
                nursery.start_soon(client_loop, name, 6)
            await trio.sleep(0.5)
            await cluster.kill(cluster.primary(), power_loss=False)
        for r in range(3):
            if cluster.replicas[r] is None:
                await cluster.start(r)
        with trio.fail_after(120):
            await cluster.wait_converged()
        totals = {r.machine.total for r in cluster.replicas if r is not None}  # type: ignore[attr-defined]
        expected = sum(name * 10 + i for name in range(1, 4) for i in range(6))
        assert totals == {expected}  # every acknowledged add applied exactly once
        await _assert_agreement(cluster)
    result = check_linearizability(recorder.operations(), Counter)
    assert result.verdict == Verdict.LINEARIZABLE, result.describe()


async def test_view_state_is_durable_in_the_superblock(autojump_clock: Any) -> None:
    config = ClusterConfig(cluster_id=9, replica_count=3)
    disks = [SimulatedDisk(i) for i in range(3)]
    async with (
        open_sim_transport(seed=3, partitionable=3) as transport,
        trio.open_nursery() as nursery,
    ):
        scopes = []
        for i in (1, 2):
            scope = trio.CancelScope()
            scopes.append(scope)

            async def run(i: int = i, scope: trio.CancelScope = scope) -> None:
                with scope:
                    async with open_cluster_replica(
                        disks[i], Counter(), config, replica=i, transport=transport
                    ):
                        await trio.sleep_forever()

            nursery.start_soon(run)
        # replica 0 (the primary of view 0) never starts: 1 and 2 change view
        async with open_cluster_client(config, transport=transport) as client:
            assert await client.submit({"add": 4}) == 4
        for scope in scopes:
            scope.cancel()
    for i in (1, 2):
        async with await Journal.open(disks[i].crash(), lock=False, create=False) as journal:
            block = journal.superblock
            assert block.view >= 1 and block.log_view >= 1
            assert block.replica == i and block.replica_count == 3
            assert int.from_bytes(block.cluster_id, "little") == 9
            assert all(decode_header(h[:96]) is not None for h in block.suffix_headers)


async def test_directory_of_another_member_is_refused(autojump_clock: Any) -> None:
    config = ClusterConfig(cluster_id=5, replica_count=3)
    disk = SimulatedDisk(1)
    async with open_sim_transport(seed=1) as transport:
        async with open_cluster_replica(disk, Counter(), config, replica=1, transport=transport):
            with pytest.raises(DirectoryLockedError):
                async with open_cluster_replica(
                    disk, Counter(), config, replica=1, transport=transport
                ):
                    pass
        with pytest.raises(ClusterIdentityError):
            async with open_cluster_replica(
                disk, Counter(), config, replica=2, transport=transport
            ):
                pass
        other = ClusterConfig(cluster_id=6, replica_count=3)
        with pytest.raises(ClusterIdentityError):
            async with open_cluster_replica(disk, Counter(), other, replica=1, transport=transport):
                pass


async def test_threaded_apply_gives_the_same_results(autojump_clock: Any) -> None:
    async with open_inprocess_cluster(Log, seed=4, apply_in_thread=True) as cluster:
        async with cluster.client() as client:
            assert [await client.submit(i) for i in range(8)] == list(range(1, 9))
        with trio.fail_after(120):
            await cluster.wait_converged()
        for replica in cluster.replicas:
            assert replica is not None
            assert replica.machine.entries == list(range(8))  # type: ignore[attr-defined]


async def test_cancel_a_replica_at_each_schedule_point(autojump_clock: Any) -> None:
    """Replica 2's nursery is cancelled at its 1st, 2nd, ... schedule point while
    it rejoins and a client submits; each time its disk then loses power, it
    restarts from what survived, and the cluster must converge with every
    acknowledged command applied exactly once and the replicas in agreement.

    Bounded: replicas checkpoint every 4 ops and compact below a short
    retention, so a restart replays a few ops and the disk stays small,
    however many runs came before (without checkpoints each run replayed the
    whole log, one more op each time, and the sweep never ended)."""
    acked: list[Any] = []
    options: dict[str, Any] = {
        "timing": Timing(checkpoint_retain=8),
        "segment_bytes": 1024,
    }
    async with open_inprocess_cluster(Log, seed=6, checkpoint_interval=4, **options) as cluster:
        async with cluster.client() as client:
            for i in range(3):
                await client.submit(f"warm-{i}")
                acked.append(f"warm-{i}")
        await cluster.kill(2, power_loss=False)
        counter = iter(range(10_000))

        async def scenario() -> None:
            async with (
                open_cluster_replica(
                    cluster.disks[2],
                    Log(),
                    cluster.config,
                    replica=2,
                    transport=cluster.transport,
                    apply_in_thread=False,
                    **options,
                ),
                cluster.client() as client,
            ):
                command = f"run-{next(counter)}"
                await client.submit(command)
                acked.append(command)

        async def check() -> None:
            cluster.disks[2] = cluster.disks[2].crash()
            await cluster.start(2)
            with trio.fail_after(120):
                await cluster.wait_converged()
            for replica in cluster.replicas:
                assert replica is not None
                entries = replica.machine.entries  # type: ignore[attr-defined]
                assert len(entries) == len(set(entries))  # nothing applied twice
                assert set(acked) <= set(entries)  # every acknowledged command applied
            await _assert_agreement(cluster)
            await cluster.kill(2, power_loss=False)

        report = await cancel_at_each_schedule_point(scenario, check)
        # Every schedule point of the run (opening from a checkpoint, rejoining,
        # the submit) was a cancel point, and the runs went through checkpoints.
        assert report.exhaustive and report.delivered >= 40
        running = [r for r in cluster.replicas if r is not None]
        assert len(running) == 2  # replica 2 was killed after the last check
        assert all(r.status.checkpoint >= 40 for r in running)  # registers are ops too
