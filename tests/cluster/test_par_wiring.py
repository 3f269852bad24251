"""Protocol-aware recovery with real journals: a cluster replica whose journal
rotted on disk opens anyway, keeps the evidence, repairs from its peers and
never loses a committed op; a cluster of one still refuses."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from trio_replica.cluster import ClusterConfig, open_cluster_client, open_cluster_replica
from trio_replica.cluster.header import HEADER_SIZE
from trio_replica.cluster.salvage import open_cluster_journal
from trio_replica.cluster.storage import decode_envelope, recover_cluster_storage
from trio_replica.errors import CorruptionError
from trio_replica.journal import Journal
from trio_replica.journal.record import RECORD_HEADER_SIZE
from trio_replica.journal.superblock import read_superblock
from trio_replica.machines.counter import Counter
from trio_replica.testing import SimulatedDisk, open_sim_transport
from trio_replica.testing.inprocess_cluster import InProcessCluster


async def _prepares(disk: SimulatedDisk) -> dict[int, bytes]:
    """op -> prepare checksum of every op journaled on ``disk`` (a copy: no lock)."""
    out = {}
    async with await Journal.open(disk.clone(), lock=False, create=False) as journal:
        async for entry in journal.entries():
            header, _ = decode_envelope(entry.body, op=entry.op, path="")
            out[entry.op] = header.checksum
    return out


async def _location(disk: SimulatedDisk, op: int) -> tuple[str, int]:
    async with await Journal.open(disk.clone(), lock=False, create=False) as journal:
        path, offset = await journal.location_of(op)
    return path, offset


async def _submit(cluster: InProcessCluster, count: int) -> None:
    async with cluster.client() as client:
        for _ in range(count):
            await client.submit({"add": 1})


@pytest.mark.parametrize(
    ("where", "what"),
    [
        # a bit of the command inside op 3's body: the record's body checksum
        # fails, its prepare header still verifies (header known)
        ("body", RECORD_HEADER_SIZE + HEADER_SIZE + 1),
        # a bit of op 3's record header: nothing of op 3 can be read
        ("record header", 70),
    ],
)
async def test_a_rotted_record_is_repaired_from_peers(
    cluster_factory: Any,
    autojump_clock: Any,
    caplog: pytest.LogCaptureFixture,
    where: str,
    what: int,
) -> None:
    async with cluster_factory(Counter) as cluster:
        await _submit(cluster, 8)
        with trio.fail_after(120):
            await cluster.wait_converged()
        committed = await _prepares(cluster.disks[0])
        assert len(committed) >= 9  # the session's register op, then 8 adds
        await cluster.kill(1, power_loss=False)
        path, offset = await _location(cluster.disks[1], 3)
        cluster.disks[1].corrupt(path, offset + what)
        # A single replica's open refuses exactly this.
        with pytest.raises(CorruptionError):
            await Journal.open(cluster.disks[1].clone(), lock=False, create=False)
        with caplog.at_level(logging.WARNING, logger="trio_replica.cluster"):
            await cluster.start(1)
        assert any("journal damage at op 3" in r.getMessage() for r in caplog.records)
        disk = cluster.disks[1]
        broken = [name for name in disk.files() if name.endswith(".broken")]
        assert broken, disk.files()  # the evidence is kept
        block = read_superblock(disk)
        assert block is not None and block.lost_to >= len(committed)
        await _submit(cluster, 2)
        with trio.fail_after(300):
            await cluster.wait_converged()
        replica = cluster.replicas[1]
        assert replica is not None and replica.machine.total == 10  # type: ignore[attr-defined]
        repaired = await _prepares(disk)
        for op, checksum in committed.items():
            assert repaired[op] == checksum, op
        block = read_superblock(disk)
        assert block is not None and block.lost_to == 0  # held again: nothing lost


async def test_a_cluster_of_one_refuses_damage(autojump_clock: Any) -> None:
    """No peer can give the op back: the journal refuses as a single replica's does."""
    disk = SimulatedDisk(5)
    config = ClusterConfig(cluster_id=3, replica_count=1)

    async def run() -> None:
        async with (
            open_sim_transport(seed=1) as transport,
            open_cluster_replica(
                disk, Counter(), config, replica=0, transport=transport, apply_in_thread=False
            ),
            open_cluster_client(config, transport=transport) as client,
        ):
            for _ in range(4):
                await client.submit({"add": 1})

    await run()
    path, offset = await _location(disk, 2)
    disk.corrupt(path, offset + RECORD_HEADER_SIZE + HEADER_SIZE + 1)
    before = disk.snapshot_bytes()
    with pytest.raises(BaseExceptionGroup) as info:  # through the transport's nursery
        await run()
    refused = _leaves(info.value)
    assert len(refused) == 1 and isinstance(refused[0], CorruptionError)
    assert refused[0].op == 2
    assert disk.snapshot_bytes() == before  # nothing cut, no copies made


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_damage_a_cut_cannot_fix_still_refuses(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    """A lost trailing segment (not damage inside a segment) is refused by a
    cluster replica too, and nothing is changed."""
    async with cluster_factory(Counter, segment_bytes=4096) as cluster:
        await _submit(cluster, 40)
        with trio.fail_after(120):
            await cluster.wait_converged()
        await cluster.kill(2, power_loss=False)
        disk = cluster.disks[2]
        segments = sorted(name for name in disk.files() if name.endswith(".wal"))
        assert len(segments) >= 2
        disk.subdir("wal").unlink(segments[-1].split("/")[-1])
        before = disk.snapshot_bytes()
        with pytest.raises(CorruptionError):
            await cluster.start(2)
        assert disk.snapshot_bytes() == before


async def test_a_rotted_sealed_segment_header_is_repaired_from_peers(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    """The header of the oldest of several segments rots: every segment goes
    (kept as .broken copies) and the whole log comes back from the peers."""
    async with cluster_factory(Counter, segment_bytes=4096) as cluster:
        await _submit(cluster, 30)
        with trio.fail_after(120):
            await cluster.wait_converged()
        committed = await _prepares(cluster.disks[0])
        await cluster.kill(0, power_loss=False)  # the primary
        disk = cluster.disks[0]
        segments = sorted(name for name in disk.files() if name.endswith(".wal"))
        assert len(segments) >= 2
        disk.corrupt(segments[0], 20)
        await cluster.start(0)
        broken = sorted(name for name in disk.files() if name.endswith(".broken"))
        assert len(broken) == len(segments)
        await _submit(cluster, 1)
        with trio.fail_after(300):
            await cluster.wait_converged()
        repaired = await _prepares(disk)
        for op, checksum in committed.items():
            assert repaired[op] == checksum, op
        replica = cluster.replicas[0]
        assert replica is not None and replica.machine.total == 31  # type: ignore[attr-defined]


async def test_the_lost_ops_survive_a_second_crash_before_the_repair(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    """lost_to is durable before the cut: reopening the cut journal (a crash
    right after it, before any repair) still reports every op lost."""
    async with cluster_factory(Counter) as cluster:
        await _submit(cluster, 6)
        with trio.fail_after(120):
            await cluster.wait_converged()
        await cluster.kill(2, power_loss=False)
    disk = cluster.disks[2]
    top = max(await _prepares(disk))
    path, offset = await _location(disk, 4)
    disk.corrupt(path, offset + RECORD_HEADER_SIZE + HEADER_SIZE + 1)
    journal, salvage = await open_cluster_journal(disk, replica_count=3)
    async with journal:
        assert salvage is not None and (salvage.op, salvage.lost_to) == (4, top)
        assert [h.op for h in salvage.headers] == list(range(4, top + 1))
        assert journal.last_op == 3
    crashed = disk.crash()  # everything above was made durable: nothing is lost
    journal, again = await open_cluster_journal(crashed, replica_count=3)
    async with journal:
        assert again is None and journal.last_op == 3
        found = await recover_cluster_storage(
            journal, cluster_id=cluster.config.cluster_id, replica=2, replica_count=3
        )
    assert found.journal.lost_to == top and found.journal.lost == ()


async def test_the_last_acknowledged_batch_rotting_is_remembered_as_lost(
    cluster_factory: Any, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Bit rot in the newest record looks exactly like a torn write; the cut
    still happens, but the op is recorded lost (never a nack) before it."""
    async with cluster_factory(Counter) as cluster:
        await _submit(cluster, 5)
        with trio.fail_after(120):
            await cluster.wait_converged()
        committed = await _prepares(cluster.disks[0])
        last = max(committed)
        await cluster.kill(1, power_loss=False)
        disk = cluster.disks[1]
        path, offset = await _location(disk, last)
        disk.corrupt(path, offset + RECORD_HEADER_SIZE + HEADER_SIZE + 1)
        with caplog.at_level(logging.WARNING, logger="trio_replica.cluster"):
            await cluster.start(1)
        assert any(f"torn tail at op {last}" in r.getMessage() for r in caplog.records)
        block = read_superblock(disk)
        assert block is not None and block.lost_to == last
        await _submit(cluster, 1)
        with trio.fail_after(300):
            await cluster.wait_converged()
        repaired = await _prepares(disk)
        for op, checksum in committed.items():
            assert repaired[op] == checksum, op
        block = read_superblock(disk)
        assert block is not None and block.lost_to == 0
