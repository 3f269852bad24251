"""The superblock: a data directory's identity and the evidence of where its journal is.

One small file, ``<data>/superblock``, replaced atomically (written to
``superblock.tmp``, fsynced, renamed over the old one, directory fsynced) at
the first open, at each segment roll and at each compaction, never per
batch. It holds:

* the directory's identity: a random 128-bit ``directory_id`` made at the
  first open (segment headers and snapshots carry it), and, reserved for a
  cluster replica, ``cluster_id``, ``replica`` and ``replica_count``;
* journal-end evidence: ``wal_head_op``, the first op of the newest segment
  ever created (so losing whole trailing segments, or all of ``wal/``, is
  detected), and ``wal_first_op`` / ``wal_first_parent``, where the journal
  starts after compaction and the chain checksum it starts from (so losing
  leading segments, or a replaced first segment, is detected);
* the durable view state of Viewstamped Replication, reserved here so that
  a cluster needs no new format version: ``checkpoint_op``,
  ``checkpoint_checksum``, ``view``, ``log_view``, ``commit_max`` and the
  suffix of prepare headers, and ``lost_to`` (protocol-aware recovery: the
  highest op a cut at damage removed, written before the cut). A single
  replica writes zeros (and no headers).

Layout (little-endian; ``docs/format.md`` "Superblock")::

    0    8  magic               b"\\x89TRSUPB\\n"
    8    2  version             u16 = 2
    10   2  replica             u16 (0 for a single replica)
    12   2  replica_count       u16 (1 for a single replica)
    14   2  flags               u16: bit 0 = rejoining (a cluster replica that lost
                                its data and has not caught up); others 0
    16   8  sequence            u64, +1 at every write
    24  16  directory_id
    40  16  cluster_id          (zeros for a single replica)
    56   8  wal_first_op        u64 (0: no segment yet)
    64  16  wal_first_parent    parent checksum in that segment's header
    80   8  wal_head_op         u64 first op of the newest segment created (0: none)
    88   8  checkpoint_op       u64
    96  16  checkpoint_checksum
    112  8  view                u64
    120  8  log_view            u64
    128  8  commit_max          u64
    136  4  suffix_count        u32
    140  4  reserved            0
    144  8  lost_to             u64, a cluster replica's ops up to it that damage cut
                                from its journal, not yet held again (0: none)
    152  suffix_count x 128     prepare headers (record headers, see record.py)
    end 16  checksum            blake2b-128 over every byte before it
"""

from __future__ import annotations

import struct

import attrs

from ..errors import CorruptionError, FormatError
from ..layout import SUPERBLOCK_NAME, SUPERBLOCK_TEMP_NAME
from ..storage import Directory
from .record import CHECKSUM_SIZE, FORMAT_VERSION, GENESIS_PARENT, RECORD_HEADER_SIZE, checksum

__all__ = [
    "FLAG_REJOINING",
    "MAX_SUFFIX_HEADERS",
    "SUPERBLOCK_MAGIC",
    "Superblock",
    "UnsupportedFormatError",
    "decode_superblock",
    "encode_superblock",
    "new_directory_id",
    "read_superblock",
    "remove_temp",
    "write_superblock",
]

SUPERBLOCK_MAGIC = b"\x89TRSUPB\n"
MAX_SUFFIX_HEADERS = 1 << 16
"""A bound on the reserved suffix, so a corrupt count never sizes a big read."""

FLAG_REJOINING = 1
"""``flags`` bit 0: a cluster replica formatted to replace a lost data
directory (or found restored from an old backup) that has not caught up
with its cluster yet; until it has, it neither votes in view changes nor
nacks (see ``cluster/restart.py``)."""
_KNOWN_FLAGS = FLAG_REJOINING

_FIXED = struct.Struct("<8sHHHHQ16s16sQ16sQQ16sQQQIIQ")
assert _FIXED.size == 152
_ZERO_ID = bytes(16)


class UnsupportedFormatError(FormatError):
    """The data directory was written in an on-disk format version this
    version of trio-replica does not read (``version`` says which).

    Version 1 directories are not converted: open them with the release that
    wrote them, or start a new directory. Nothing was changed.
    """

    def __init__(self, reason: str, *, version: int, path: str | None = None):
        super().__init__(reason, path=path)
        self.version = version


@attrs.frozen
class Superblock:
    """The decoded superblock (see the module docstring for every field)."""

    directory_id: bytes
    sequence: int = 0
    cluster_id: bytes = _ZERO_ID
    replica: int = 0
    replica_count: int = 1
    wal_first_op: int = 0
    wal_first_parent: bytes = GENESIS_PARENT
    wal_head_op: int = 0
    checkpoint_op: int = 0
    checkpoint_checksum: bytes = GENESIS_PARENT
    view: int = 0
    log_view: int = 0
    commit_max: int = 0
    suffix_headers: tuple[bytes, ...] = ()
    flags: int = 0
    lost_to: int = 0

    def next(self, **changes: object) -> Superblock:
        """A copy with ``changes`` and the sequence number advanced by one."""
        return attrs.evolve(self, sequence=self.sequence + 1, **changes)  # type: ignore[arg-type]


def new_directory_id(directory: Directory) -> bytes:
    """A fresh random 128-bit identity for ``directory`` (never all zeros)."""
    while True:
        ident = directory.random_bytes(16)
        if ident != _ZERO_ID:
            return ident


def encode_superblock(block: Superblock) -> bytes:
    """The bytes of ``block``, checksum included."""
    for header in block.suffix_headers:
        if len(header) != RECORD_HEADER_SIZE:
            raise ValueError("a suffix header must be a whole record header")
    if len(block.suffix_headers) > MAX_SUFFIX_HEADERS:
        raise ValueError(f"at most {MAX_SUFFIX_HEADERS} suffix headers")
    fixed = _FIXED.pack(
        SUPERBLOCK_MAGIC,
        FORMAT_VERSION,
        block.replica,
        block.replica_count,
        block.flags,
        block.sequence,
        block.directory_id,
        block.cluster_id,
        block.wal_first_op,
        block.wal_first_parent,
        block.wal_head_op,
        block.checkpoint_op,
        block.checkpoint_checksum,
        block.view,
        block.log_view,
        block.commit_max,
        len(block.suffix_headers),
        0,
        block.lost_to,
    )
    data = fixed + b"".join(block.suffix_headers)
    return data + checksum(data)


def decode_superblock(data: bytes, *, path: str | None = None) -> Superblock:
    """Decode and verify superblock bytes.

    Raises :class:`FormatError` for a foreign file,
    :class:`UnsupportedFormatError` for another version and
    :class:`CorruptionError` for a short file or a bad checksum.
    """
    if data[:8] != SUPERBLOCK_MAGIC:
        raise FormatError("not a trio-replica superblock (bad magic)", path=path, offset=0)
    if len(data) < _FIXED.size + CHECKSUM_SIZE:
        raise CorruptionError(
            f"superblock is truncated ({len(data)} bytes)", path=path, offset=len(data)
        )
    fields = _FIXED.unpack_from(data)
    version = fields[1]
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"superblock of format version {version}; this trio-replica reads version "
            f"{FORMAT_VERSION}",
            version=version,
            path=path,
        )
    count = fields[16]
    expected = _FIXED.size + count * RECORD_HEADER_SIZE + CHECKSUM_SIZE
    if count > MAX_SUFFIX_HEADERS or expected != len(data):
        raise CorruptionError(
            f"superblock size {len(data)} does not match its {count} suffix headers",
            path=path,
            offset=136,
        )
    if checksum(data[:-CHECKSUM_SIZE]) != data[-CHECKSUM_SIZE:]:
        raise CorruptionError("superblock checksum mismatch", path=path, offset=0)
    (
        _,
        _,
        replica,
        replica_count,
        flags,
        sequence,
        directory_id,
        cluster_id,
        wal_first_op,
        wal_first_parent,
        wal_head_op,
        checkpoint_op,
        checkpoint_checksum,
        view,
        log_view,
        commit_max,
        _,
        reserved32,
        lost_to,
    ) = fields
    if flags & ~_KNOWN_FLAGS or reserved32:
        raise UnsupportedFormatError(
            "superblock has reserved fields set (written by a newer trio-replica?)",
            version=version,
            path=path,
        )
    headers = tuple(
        data[_FIXED.size + i * RECORD_HEADER_SIZE : _FIXED.size + (i + 1) * RECORD_HEADER_SIZE]
        for i in range(count)
    )
    return Superblock(
        directory_id=directory_id,
        sequence=sequence,
        cluster_id=cluster_id,
        replica=replica,
        replica_count=replica_count,
        wal_first_op=wal_first_op,
        wal_first_parent=wal_first_parent,
        wal_head_op=wal_head_op,
        checkpoint_op=checkpoint_op,
        checkpoint_checksum=checkpoint_checksum,
        view=view,
        log_view=log_view,
        commit_max=commit_max,
        suffix_headers=headers,
        flags=flags,
        lost_to=lost_to,
    )


def read_superblock(data_dir: Directory) -> Superblock | None:
    """The superblock of ``data_dir``, or None when it has none. Blocking.

    Raises like :func:`decode_superblock`; an entry named ``superblock``
    that is not a regular file is refused by name.
    """
    if not data_dir.exists(SUPERBLOCK_NAME):
        return None
    path = data_dir.path_of(SUPERBLOCK_NAME)
    storage = data_dir.open(SUPERBLOCK_NAME)
    try:
        size = storage.size()
        limit = _FIXED.size + MAX_SUFFIX_HEADERS * RECORD_HEADER_SIZE + CHECKSUM_SIZE
        if size > limit:
            raise CorruptionError(f"superblock is {size} bytes, more than any", path=path)
        data = storage.read_at(0, size)
    finally:
        storage.close()
    return decode_superblock(data, path=path)


def write_superblock(data_dir: Directory, block: Superblock) -> None:
    """Replace the superblock of ``data_dir`` atomically and durably. Blocking.

    Temp file created, written, fsynced; renamed over ``superblock``; the
    directory fsynced. A crash at any step leaves either the old or the new
    superblock, never a mix. ``OSError`` propagates (the caller treats it as
    fatal: nothing is retried after a failed fsync).
    """
    data = encode_superblock(block)
    if data_dir.exists(SUPERBLOCK_TEMP_NAME):
        data_dir.unlink(SUPERBLOCK_TEMP_NAME)
    storage = data_dir.open(SUPERBLOCK_TEMP_NAME, create=True)
    try:
        storage.write_at(0, data)
        storage.sync()
    finally:
        storage.close()
    data_dir.rename(SUPERBLOCK_TEMP_NAME, SUPERBLOCK_NAME)
    data_dir.sync()


def remove_temp(data_dir: Directory) -> None:
    """Delete a leftover ``superblock.tmp`` (a write that crashed before its rename)."""
    if data_dir.exists(SUPERBLOCK_TEMP_NAME):
        data_dir.unlink(SUPERBLOCK_TEMP_NAME)
        data_dir.sync()
