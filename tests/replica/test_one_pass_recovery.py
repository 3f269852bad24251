"""Recovery reads the journal once: replay takes its bodies from the open's scan.

Each byte of every segment is read once during ``recover`` (the scan that
verifies a record is the pass that replays it), and the snapshot file once
(its catalog entry and its load are one read).
"""

from __future__ import annotations

from collections import Counter

import pytest
from replica_machines import Ledger

from trio_replica import CorruptionError, open_replica
from trio_replica.replica import recover
from trio_replica.storage import MemoryDirectory
from trio_replica.storage.memory import MemoryFile


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Bytes read through every in-memory file, by file name."""
    read: Counter[str] = Counter()
    original = MemoryFile.read_at

    def read_at(self: MemoryFile, offset: int, size: int) -> bytes:
        data = original(self, offset, size)
        read[self.path.rsplit("/", 1)[-1]] += len(data)
        return data

    monkeypatch.setattr(MemoryFile, "read_at", read_at)
    return read


def _sizes(disk: MemoryDirectory, sub: str) -> dict[str, int]:
    directory = disk.subdir(sub)
    sizes = {}
    for name in directory.listdir():
        storage = directory.open(name)
        sizes[name] = storage.size()
        storage.close()
    return sizes


@pytest.mark.parametrize("checkpoint_at", [None, 300])
async def test_recovery_reads_each_journal_and_snapshot_byte_once(
    monkeypatch: pytest.MonkeyPatch, checkpoint_at: int | None
) -> None:
    disk = MemoryDirectory()
    async with open_replica(disk, Ledger(), snapshot_every=10**6, max_batch=64) as replica:
        for first in range(1, 1001, 50):
            await replica.submit_many([{"v": v} for v in range(first, first + 50)])
            if checkpoint_at is not None and first + 49 == checkpoint_at:
                await replica.checkpoint()
    segments = _sizes(disk, "wal")
    snapshots = _sizes(disk, "snapshots")
    read = _count_reads(monkeypatch)
    machine = Ledger()
    journal, store, report = await recover(disk, machine)
    await store.aclose()
    await journal.aclose()
    assert machine.values == list(range(1, 1001))
    assert report.ops_replayed == 1000 - (checkpoint_at or 0)
    for name, size in segments.items():
        # The segment header is read on its own before the records, and the
        # snapshot's fit check reads one record header again.
        assert read[name] <= size + 80 + 128, (name, read[name], size)
    for name, size in snapshots.items():
        assert read[name] == size, (name, read[name], size)


async def test_an_undecodable_journaled_command_is_refused_naming_file_offset_and_op() -> None:
    from trio_replica.journal import Entry, Journal

    disk = MemoryDirectory()
    async with await Journal.open(disk) as journal:
        # Checksummed correctly, yet not CBOR: only damage (or a bug) writes this.
        await journal.append([Entry(1, b"\xa1\x61v\x01"), Entry(2, b"\xff\xff")])
    with pytest.raises(CorruptionError) as raised:
        await recover(disk, Ledger())
    error = raised.value
    assert error.op == 2
    assert error.path is not None and error.path.endswith(".wal")
    assert error.offset is not None and error.offset > 0
    assert "does not hold a valid CBOR command" in error.reason
