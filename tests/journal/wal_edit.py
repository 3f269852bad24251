"""Direct access to the bytes of a journal's segment files, for crash and corruption tests.

Works on any ``Directory`` (in memory or on disk) through the storage
protocol, so a test can tear, flip or delete exactly the bytes it means to.
"""

from __future__ import annotations

import attrs

from trio_replica.journal import iter_records
from trio_replica.journal.record import record_size
from trio_replica.storage import Directory, MemoryDirectory


def wal_dir(data: Directory) -> Directory:
    return data.subdir("wal")


def segment_names(data: Directory) -> list[str]:
    return [name for name in wal_dir(data).listdir() if name.endswith(".wal")]


def read_file(data: Directory, name: str) -> bytes:
    f = wal_dir(data).open(name)
    try:
        return f.read_at(0, f.size())
    finally:
        f.close()


def write_file(data: Directory, name: str, content: bytes) -> None:
    """Replace the whole content of ``name`` (creating it if needed)."""
    wal = wal_dir(data)
    f = wal.open(name, create=not wal.exists(name))
    try:
        f.truncate(0)
        f.write_at(0, content)
    finally:
        f.close()


def truncate_file(data: Directory, name: str, size: int) -> None:
    f = wal_dir(data).open(name)
    try:
        f.truncate(size)
    finally:
        f.close()


def patch_file(data: Directory, name: str, offset: int, content: bytes) -> None:
    f = wal_dir(data).open(name)
    try:
        f.write_at(offset, content)
    finally:
        f.close()


def flip_bit(data: Directory, name: str, offset: int, bit: int = 0) -> None:
    content = bytearray(read_file(data, name))
    content[offset] ^= 1 << bit
    write_file(data, name, bytes(content))


def wal_bytes(data: Directory) -> dict[str, bytes]:
    """Every file in the wal directory with its content (to compare before/after)."""
    wal = wal_dir(data)
    return {name: read_file(data, name) for name in wal.listdir()}


@attrs.frozen
class Placed:
    """Where one record lives."""

    name: str
    offset: int
    op: int
    batch_first: int
    size: int


def records(data: Directory) -> list[Placed]:
    """Every valid record, in op order, with its segment file name and offset."""
    out = []
    for info in iter_records(data):
        assert info.status == "ok", info
        out.append(
            Placed(
                name=info.path.rsplit("/", 1)[-1],
                offset=info.offset,
                op=info.op,
                batch_first=info.batch_first,
                size=record_size(info.body_size),
            )
        )
    return out


def clone(files: dict[str, bytes], *, like: Directory) -> MemoryDirectory:
    """A fresh in-memory data directory whose wal holds exactly ``files``,
    with the superblock (identity, journal-end evidence) of ``like``."""
    data = MemoryDirectory()
    source = like.open("superblock")
    try:
        block = source.read_at(0, source.size())
    finally:
        source.close()
    f = data.open("superblock", create=True)
    f.write_at(0, block)
    f.close()
    wal = data.subdir("wal", create=True)
    for name, content in files.items():
        f = wal.open(name, create=True)
        f.write_at(0, content)
        f.close()
    return data
