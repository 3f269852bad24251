"""State transfer of a snapshot file: one chunk in flight, each verified, installed atomically.

A serving store's snapshot is fetched chunk by chunk into another data
directory on the simulated disk. Checked: the installed file is the served
one byte for byte and loads; every bad chunk (wrong offset, short, flipped
bit), a header of another op, a file that does not verify as a whole, and a
state that does not record the prepare a quorum vouched for are refused with
the stage named and leave no file behind; a failing fetch propagates and
leaves nothing; and every state a crash could leave at any step of an
install is either no snapshot at the op or the whole verified one.
"""

from __future__ import annotations

from typing import Any

import pytest

from trio_replica.coordinator import Snapshot, SnapshotStore
from trio_replica.coordinator.snapshot_files import MachineCheck
from trio_replica.coordinator.snapshot_format import snapshot_name
from trio_replica.coordinator.transfer import (
    SnapshotChunk,
    SnapshotTransferError,
    TransferTarget,
    chunk_checksum,
    install_snapshot,
    read_snapshot_chunk,
)
from trio_replica.testing import CrashRecorder, SimulatedDisk

MACHINE = {"machine_name": "kv", "machine_version": 3}
CHECK = MachineCheck("kv", 3)
PREPARE = bytes(range(100, 116))
STATE = {"checkpoint": PREPARE, "keys": {str(i): i * i for i in range(400)}}


def bound(state: Any) -> bytes:
    return bytes(state["checkpoint"])


async def served(op: int = 40, state: Any = STATE) -> tuple[SimulatedDisk, bytes]:
    """A serving replica's disk with a durable snapshot at ``op``; its file bytes."""
    disk = SimulatedDisk(seed=op)
    store = SnapshotStore(disk, **MACHINE)
    await store.persist(Snapshot(op, state))
    directory = disk.subdir("snapshots")
    storage = directory.open(snapshot_name(op))
    try:
        data = storage.read_at(0, storage.size())
    finally:
        storage.close()
    return disk, data


def fetcher(server: SimulatedDisk, op: int, log: list[tuple[int, int]], tamper: Any = None) -> Any:
    async def fetch(offset: int, length: int) -> SnapshotChunk:
        log.append((offset, length))
        chunk = read_snapshot_chunk(server, op, offset, length)
        return tamper(chunk) if tamper is not None else chunk

    return fetch


def files(disk: SimulatedDisk) -> list[str]:
    return sorted(disk.subdir("snapshots").listdir()) if disk.is_dir("snapshots") else []


async def test_install_fetches_one_chunk_at_a_time_and_loads() -> None:
    server, data = await served()
    target_disk = SimulatedDisk(seed=1)
    log: list[tuple[int, int]] = []
    target = TransferTarget(40, len(data), PREPARE)
    snapshot = await install_snapshot(
        target_disk, target, fetcher(server, 40, log), machine=CHECK, bound=bound, chunk_bytes=1000
    )
    assert snapshot.op == 40 and snapshot.state == STATE
    # in order, each chunk asked after the previous one arrived, covering the file once
    assert [o for o, _ in log] == list(range(0, len(data), 1000))
    assert sum(n for _, n in log) == len(data)
    assert files(target_disk) == [snapshot_name(40)]
    crashed = target_disk.crash()  # everything it promised is durable
    loaded = await SnapshotStore(crashed, **MACHINE).load_latest()
    assert loaded is not None and loaded.op == 40 and loaded.state == STATE
    storage = crashed.subdir("snapshots").open(snapshot_name(40))
    assert storage.read_at(0, storage.size()) == data
    storage.close()


def _flip(chunk: SnapshotChunk) -> SnapshotChunk:
    if chunk.offset != 2000:
        return chunk
    data = bytearray(chunk.data)
    data[7] ^= 1
    return SnapshotChunk(chunk.op, chunk.offset, bytes(data), chunk.checksum)


def _flip_with_checksum(chunk: SnapshotChunk) -> SnapshotChunk:
    # damage the peer's own copy: the chunk checksum matches, the file's does not
    if chunk.offset != 2000:
        return chunk
    data = bytearray(chunk.data)
    data[7] ^= 1
    return SnapshotChunk(chunk.op, chunk.offset, bytes(data), chunk_checksum(bytes(data)))


def _short(chunk: SnapshotChunk) -> SnapshotChunk:
    data = chunk.data[:-1]
    return SnapshotChunk(chunk.op, chunk.offset, data, chunk_checksum(data))


def _shifted(chunk: SnapshotChunk) -> SnapshotChunk:
    return SnapshotChunk(chunk.op, chunk.offset + 1, chunk.data, chunk.checksum)


@pytest.mark.parametrize(
    "tamper, stage",
    [
        (_flip, "chunk"),
        (_short, "chunk"),
        (_shifted, "chunk"),
        (_flip_with_checksum, "verify"),
    ],
)
async def test_a_bad_chunk_or_file_is_refused_and_leaves_nothing(tamper: Any, stage: str) -> None:
    server, data = await served()
    target_disk = SimulatedDisk(seed=2)
    with pytest.raises(SnapshotTransferError) as caught:
        await install_snapshot(
            target_disk,
            TransferTarget(40, len(data), PREPARE),
            fetcher(server, 40, [], tamper),
            machine=CHECK,
            bound=bound,
            chunk_bytes=1000,
        )
    assert caught.value.stage == stage
    assert caught.value.op == 40
    assert files(target_disk) == []


async def test_the_header_must_name_the_op_and_size_announced() -> None:
    server, data = await served(op=41)
    target_disk = SimulatedDisk(seed=3)
    # the peer serves its op 41 file for a request of op 40 (relabelled chunks)
    with pytest.raises(SnapshotTransferError) as caught:
        await install_snapshot(
            target_disk,
            TransferTarget(40, len(data), PREPARE),
            fetcher(server, 41, [], lambda c: SnapshotChunk(40, c.offset, c.data, c.checksum)),
            machine=CHECK,
            bound=bound,
            chunk_bytes=1000,
        )
    assert (caught.value.stage, caught.value.offset) == ("header", 0)
    with pytest.raises(SnapshotTransferError) as caught:
        await install_snapshot(
            target_disk,
            TransferTarget(41, len(data) + 8, PREPARE),
            fetcher(server, 41, []),
            machine=CHECK,
            bound=bound,
            chunk_bytes=1000,
        )
    assert caught.value.stage in ("header", "serve")
    assert files(target_disk) == []


async def test_a_snapshot_of_another_prepare_or_machine_is_refused() -> None:
    server, data = await served()
    target_disk = SimulatedDisk(seed=4)
    with pytest.raises(SnapshotTransferError) as caught:
        await install_snapshot(
            target_disk,
            TransferTarget(40, len(data), bytes(16)),  # the quorum vouched for another prepare
            fetcher(server, 40, []),
            machine=CHECK,
            bound=bound,
        )
    assert caught.value.stage == "bound"
    with pytest.raises(SnapshotTransferError) as caught:
        await install_snapshot(
            target_disk,
            TransferTarget(40, len(data), PREPARE),
            fetcher(server, 40, []),
            machine=MachineCheck("kv", 4),
            bound=bound,
        )
    assert caught.value.stage == "verify"
    assert files(target_disk) == []


async def test_a_failing_fetch_propagates_and_leaves_nothing() -> None:
    server, data = await served()
    target_disk = SimulatedDisk(seed=5)

    class PeerGone(Exception):
        pass

    async def fetch(offset: int, length: int) -> SnapshotChunk:
        if offset >= 2000:
            raise PeerGone
        return read_snapshot_chunk(server, 40, offset, length)

    with pytest.raises(PeerGone):
        await install_snapshot(
            target_disk,
            TransferTarget(40, len(data), PREPARE),
            fetch,
            machine=CHECK,
            bound=bound,
            chunk_bytes=1000,
        )
    assert files(target_disk) == []


async def test_serving_a_missing_snapshot_or_beyond_its_end_is_refused() -> None:
    server, data = await served()
    with pytest.raises(SnapshotTransferError) as caught:
        read_snapshot_chunk(server, 39, 0, 100)
    assert caught.value.stage == "serve"
    with pytest.raises(SnapshotTransferError):
        read_snapshot_chunk(server, 40, len(data), 100)
    last = read_snapshot_chunk(server, 40, len(data) - 10, 100)
    assert len(last.data) == 10 and last.checksum == chunk_checksum(last.data)


async def test_every_crash_state_of_an_install_is_nothing_or_the_whole_snapshot() -> None:
    server, data = await served()
    target_disk = SimulatedDisk(seed=6)
    # an older local snapshot must survive whatever happens
    await SnapshotStore(target_disk, **MACHINE).persist(Snapshot(10, {"old": True}))
    target_disk = target_disk.crash()
    phase = "installing"
    with CrashRecorder(target_disk, context=lambda: phase, max_states_per_point=48) as recorder:
        await install_snapshot(
            target_disk,
            TransferTarget(40, len(data), PREPARE),
            fetcher(server, 40, []),
            machine=CHECK,
            bound=bound,
            chunk_bytes=1500,
        )
        phase = "installed"
    assert len(recorder.points) > 40  # the temp file's writes are sampled, not exhaustive
    seen = set()
    for point in recorder.points:
        store = SnapshotStore(point.state, **MACHINE)
        loaded = await store.load_latest()
        assert loaded is not None, point.operation
        if loaded.op == 40:
            assert loaded.state == STATE, point.operation
            seen.add("new")
        else:
            assert loaded.op == 10 and loaded.state == {"old": True}, point.operation
            assert point.context == "installing", point.operation
            seen.add("old")
        # never a half-installed file: whatever is at the op's name verifies
        assert all(info.valid for info in store.list()), point.operation
        assert not any(n.endswith(".tmp") for n in files(point.state)), point.operation
    assert seen == {"old", "new"}
