"""Building and damaging real data directories for the command-line tests.

The template directory is written by the real :class:`Journal` and
:class:`SnapshotStore` (small segments, so there are several, and two
snapshots); each test gets its own copy and damages bytes in it directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import sys
from itertools import islice
from pathlib import Path
from typing import Any

import cbor2

from trio_replica.coordinator import Snapshot, SnapshotStore
from trio_replica.errors import InvalidCommand
from trio_replica.journal import Entry, Journal
from trio_replica.journal.scan import RecordInfo, iter_records
from trio_replica.machines.metadata import MetadataStateMachine
from trio_replica.machines.workload import metadata_workload
from trio_replica.storage import OsDirectory

OPS = 200
BATCH = 8
SNAPSHOT_OPS = (96, 192)
SEGMENT_BYTES = 4096
BLOB_OP = OPS + 1  # one record whose body holds a CBOR byte string
BLOB_COMMAND = {"type": "blob", "data": b"\x00\xffraw"}


def commands() -> list[Any]:
    """The commands of the template journal, op 1 first."""
    return [*islice(metadata_workload(random.Random(7), 0), OPS), BLOB_COMMAND]


async def build_data_dir(path: Path) -> None:
    cmds = commands()
    journal = await Journal.open(path, segment_bytes=SEGMENT_BYTES)
    for first in range(0, len(cmds), BATCH):
        batch = cmds[first : first + BATCH]
        await journal.append(
            [Entry(op=first + i + 1, body=cbor2.dumps(c)) for i, c in enumerate(batch)]
        )
    machine = MetadataStateMachine()
    # Snapshots carry the journal's chain checksum at their op (bound to it).
    store = SnapshotStore(
        path,
        machine_name=machine.name,
        machine_version=machine.version,
        directory_id=journal.directory_id,
        chain_checksum=journal.checksum_at,
    )
    for op, command in enumerate(cmds, start=1):
        with contextlib.suppress(InvalidCommand):  # rejected: replayed as a no-op
            machine.apply(op, command)
        if op in SNAPSHOT_OPS:
            await store.persist(Snapshot(op, machine.snapshot()))
    await store.aclose()
    await journal.aclose()


def run_cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trio_replica ARGS``; no run may ever print a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "trio_replica", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


def records(path: Path) -> list[RecordInfo]:
    return list(iter_records(OsDirectory(path)))


def segments(path: Path) -> list[Path]:
    return sorted((path / "wal").glob("*.wal"))


def flip_bit(file: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 1 << bit
    file.write_bytes(bytes(data))


def tear_tail(path: Path) -> RecordInfo:
    """Cut the last segment inside its last record, as a crash mid-write can; return it."""
    last = records(path)[-1]
    os.truncate(last.path, last.offset + 20)
    return last


def corrupt_middle(path: Path) -> RecordInfo:
    """Flip a bit in a record of the last segment that has a later batch after it.

    The checksum covers header and body, so any bit of the record's extent
    must be caught; the middle of it is as good as any.
    """
    recs = records(path)
    last_segment = recs[-1].path
    last_batch = recs[-1].batch_first
    victim = next(r for r in recs if r.path == last_segment and r.batch_first < last_batch)
    following = next(r for r in recs if r.op == victim.op + 1)
    flip_bit(Path(victim.path), (victim.offset + following.offset) // 2)
    return victim


def corrupt_sealed(path: Path) -> RecordInfo:
    """Flip a bit in the middle of a record in the first (sealed) segment."""
    recs = records(path)
    victim, following = recs[3], recs[4]
    assert victim.path == following.path == str(segments(path)[0])
    flip_bit(Path(victim.path), (victim.offset + following.offset) // 2)
    return victim


def newest_snapshot(path: Path) -> Path:
    return sorted((path / "snapshots").glob("*.snapshot"))[-1]


def tree_state(path: Path) -> dict[str, tuple[str, int, int]]:
    """(sha256, size, mtime_ns) of every file and directory under ``path``."""
    state: dict[str, tuple[str, int, int]] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(root, name)
            st = full.stat()
            digest = hashlib.sha256(full.read_bytes()).hexdigest() if full.is_file() else "dir"
            state[str(full.relative_to(path))] = (digest, st.st_size, st.st_mtime_ns)
    root_stat = path.stat()
    state["."] = ("dir", 0, root_stat.st_mtime_ns)
    return state
