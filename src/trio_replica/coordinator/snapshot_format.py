"""The snapshot file format: pure encoding, decoding and verification of bytes.

A snapshot file is a fixed header, the state machine's name, a checksum and a
CBOR body (every byte is described in ``docs/format.md``)::

    magic | format version | name length | machine version | op | body length
    | directory id | chain checksum | machine name (UTF-8) | xxh3-128 checksum
    | CBOR body

The checksum covers everything before it and the whole body, so a flipped
bit anywhere is caught. It detects damage only (no one chooses a snapshot's
bytes to collide with a damaged copy of it), so it is the fast xxh3-128;
what binds a snapshot to its journal is the ``chain checksum``: the
journal's (cryptographic) record checksum at the snapshot's op. The
``directory id`` says which data directory wrote it. Nothing here does I/O:
the functions take and return bytes and small value objects, so every rule
is testable without a disk.

Two rules keep decoding bounded, whatever the bytes claim:

* the body length in the header must match the file size exactly, and it is
  checked before any body byte is read, so a corrupt length can never make a
  reader allocate more than the file holds;
* the checksum is verified before the body is CBOR-decoded, and the decoder
  reads from a buffer of known size (cbor2 reads long strings in bounded
  chunks and never pre-allocates containers), so a length *inside* the CBOR
  that claims more than the body holds fails as a truncated body.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import attrs
import xxhash

from .. import codec
from ..codec import MAX_NESTING
from ..errors import SnapshotError

__all__ = [
    "CHECKSUM_SIZE",
    "FIXED_HEADER_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_MACHINE_NAME_BYTES",
    "MAX_MACHINE_VERSION",
    "MAX_NESTING",
    "MAX_OP",
    "UNBOUND",
    "FixedHeader",
    "SnapshotEncodeError",
    "SnapshotFormatError",
    "check_machine",
    "decode_body",
    "encode_header",
    "encode_state",
    "parse_fixed_header",
    "parse_snapshot_name",
    "parse_temp_name",
    "snapshot_name",
    "temp_name",
    "verify_checksum",
]

MAGIC = b"\x89TRSNAP\n"
"""The first 8 bytes of every snapshot file. The high first byte and the
newline catch files mangled by text-mode transfers, as in PNG."""

FORMAT_VERSION = 2
"""The only format version this code writes and reads (the journal's too)."""

_FIXED = struct.Struct("<8sHHIQQ16s16s")
FIXED_HEADER_SIZE = _FIXED.size  # 64
"""Size of the fixed part of the header: magic, versions, lengths, op, identity, chain."""

CHECKSUM_SIZE = 16
"""xxh3-128 digest size in bytes."""

_VERSION_BYTES = FORMAT_VERSION.to_bytes(2, "little")

UNBOUND = bytes(16)
"""The chain checksum of a snapshot written by a store that has no journal
(a standalone :class:`SnapshotStore`): recovery never loads it."""

MAX_MACHINE_NAME_BYTES = 1024
"""Longest state machine name (UTF-8 bytes). Also a bound on what a reader
allocates for a corrupt name length before the checksum is checked."""

MAX_MACHINE_VERSION = 2**32 - 1
MAX_OP = 2**64 - 1

_SNAPSHOT_NAME = re.compile(r"^(\d{20})\.snapshot$")
_TEMP_NAME = re.compile(r"^(\d{20})\.snapshot\.tmp$")


class SnapshotFormatError(SnapshotError):
    """A snapshot file failed verification: it is skipped, never loaded.

    ``reason`` says which check failed (bad magic, unknown format version,
    truncated, bad checksum, state machine mismatch, ...); ``path`` and
    ``op`` locate the file.
    """

    def __init__(self, reason: str, *, path: str | None = None, op: int | None = None):
        where = f" ({path})" if path is not None else ""
        super().__init__(f"invalid snapshot{where}: {reason}", path=path, op=op)
        self.reason = reason


class SnapshotEncodeError(SnapshotError):
    """The state cannot be stored as CBOR (an unsupported type, a reference
    cycle, or nesting deeper than :data:`MAX_NESTING`). Raised before anything
    is written; fix the state machine's ``snapshot()``. Not retryable."""


@attrs.frozen
class FixedHeader:
    """The fixed-size part of a snapshot header, as parsed (not yet checksummed)."""

    format_version: int
    name_size: int
    machine_version: int
    op: int
    body_size: int
    directory_id: bytes = UNBOUND
    chain_checksum: bytes = UNBOUND

    @property
    def checksum_offset(self) -> int:
        """Where the checksum starts: after the fixed header and the name."""
        return FIXED_HEADER_SIZE + self.name_size

    @property
    def body_offset(self) -> int:
        """Where the CBOR body starts."""
        return self.checksum_offset + CHECKSUM_SIZE

    @property
    def file_size(self) -> int:
        """The exact size a file with this header must have."""
        return self.body_offset + self.body_size


# --- file names ----------------------------------------------------------


def snapshot_name(op: int) -> str:
    """The file name of the snapshot at ``op``: ``<op:020d>.snapshot``."""
    return f"{op:020d}.snapshot"


def temp_name(op: int) -> str:
    """The temporary file a snapshot at ``op`` is written to before its rename."""
    return f"{op:020d}.snapshot.tmp"


def parse_snapshot_name(name: str) -> int | None:
    """The op of a snapshot file name, or None when ``name`` is not one."""
    match = _SNAPSHOT_NAME.match(name)
    return int(match.group(1)) if match else None


def parse_temp_name(name: str) -> int | None:
    """The op of a temporary snapshot file name, or None when ``name`` is not one."""
    match = _TEMP_NAME.match(name)
    return int(match.group(1)) if match else None


# --- encoding ------------------------------------------------------------


def encode_state(state: Any, *, op: int) -> bytes:
    """CBOR-encode ``state`` for the snapshot at ``op``, proven decodable.

    The codec (:func:`trio_replica.codec.encode_bytes`) proves the bytes
    decode with the decoder and limits a load uses (by decoding them back,
    or by construction for a state of plain built-in types), so a snapshot
    that could not be read back is never written (and never lets compaction
    delete what it covers).
    Raises :class:`SnapshotEncodeError` (the codec's error as ``__cause__``)
    when the state holds a value CBOR cannot represent, a reference cycle,
    nesting deeper than :data:`MAX_NESTING`, or encodes to bytes that do not
    decode.
    """
    try:
        body = codec.encode_bytes(state)
    except codec.UnencodableError as exc:
        raise SnapshotEncodeError(
            f"snapshot state at op {op} is refused: {exc.reason}", op=op
        ) from exc
    return body


def encode_header(
    *,
    op: int,
    machine_name: str,
    machine_version: int,
    body: bytes,
    directory_id: bytes = UNBOUND,
    chain_checksum: bytes = UNBOUND,
) -> bytes:
    """Everything before the body: fixed header, machine name and checksum.

    The checksum covers the fixed header, the name and ``body``, which is
    hashed in place (never concatenated with the header, to avoid copying a
    big state).
    """
    name = machine_name.encode("utf-8")
    if len(name) > MAX_MACHINE_NAME_BYTES:
        raise ValueError(f"machine name is longer than {MAX_MACHINE_NAME_BYTES} bytes")
    if not 0 <= machine_version <= MAX_MACHINE_VERSION:
        raise ValueError(f"machine version {machine_version} is not in 0..{MAX_MACHINE_VERSION}")
    if not 0 <= op <= MAX_OP:
        raise ValueError(f"op {op} is not in 0..{MAX_OP}")
    if len(directory_id) != 16 or len(chain_checksum) != 16:
        raise ValueError("directory_id and chain_checksum are 16 bytes each")
    prefix = (
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            len(name),
            machine_version,
            op,
            len(body),
            directory_id,
            chain_checksum,
        )
        + name
    )
    digest = xxhash.xxh3_128(prefix)
    digest.update(body)
    return prefix + digest.digest()


# --- decoding ------------------------------------------------------------


def parse_fixed_header(data: bytes, *, file_size: int, path: str | None = None) -> FixedHeader:
    """Parse and sanity-check the fixed header against the file's real size.

    ``data`` is the first :data:`FIXED_HEADER_SIZE` bytes (or fewer, for a
    short file). Checks, in order: long enough, magic, format version, name
    length, and that the declared name and body lengths add up to exactly
    ``file_size``. Only after this passes may a reader read the rest, so the
    amount it reads is bounded by the real file, never by a corrupt field.
    """
    if len(data) >= 8 and data[:8] != MAGIC:
        raise SnapshotFormatError(f"bad magic {data[:8]!r} (not a snapshot file)", path=path)
    if len(data) >= 10 and data[8:10] != _VERSION_BYTES:
        version = int.from_bytes(data[8:10], "little")
        raise SnapshotFormatError(
            f"unknown format version {version} (this version reads {FORMAT_VERSION})", path=path
        )
    if len(data) < FIXED_HEADER_SIZE or file_size < FIXED_HEADER_SIZE:
        raise SnapshotFormatError(
            f"truncated: the file is {file_size} bytes, shorter than the "
            f"{FIXED_HEADER_SIZE}-byte header",
            path=path,
        )
    magic, version, name_size, machine_version, op, body_size, directory_id, chain = (
        _FIXED.unpack_from(data)
    )
    if magic != MAGIC:
        raise SnapshotFormatError(f"bad magic {magic!r} (not a snapshot file)", path=path)
    if name_size > MAX_MACHINE_NAME_BYTES:
        raise SnapshotFormatError(
            f"corrupt header: machine name length {name_size} exceeds {MAX_MACHINE_NAME_BYTES}",
            path=path,
        )
    header = FixedHeader(version, name_size, machine_version, op, body_size, directory_id, chain)
    if header.file_size > file_size:
        raise SnapshotFormatError(
            f"truncated: the header declares {header.file_size} bytes, the file has {file_size}",
            path=path,
        )
    if header.file_size < file_size:
        raise SnapshotFormatError(
            f"length mismatch: the header declares {header.file_size} bytes, "
            f"the file has {file_size}",
            path=path,
        )
    return header


def verify_checksum(
    header: FixedHeader,
    prefix: bytes,
    checksum: bytes,
    body_chunks: Any,
    *,
    path: str | None = None,
) -> str:
    """Check the checksum; return the machine name it protects.

    ``prefix`` is the fixed header plus the name, ``checksum`` the stored
    digest, ``body_chunks`` an iterable of the body's bytes (one chunk or
    many, so that a verifier can stream a big file in bounded memory).
    """
    digest = xxhash.xxh3_128(prefix)
    total = 0
    for chunk in body_chunks:
        digest.update(chunk)
        total += len(chunk)
    if total != header.body_size:
        raise SnapshotFormatError(
            f"truncated: read {total} of {header.body_size} body bytes", path=path, op=header.op
        )
    if digest.digest() != checksum:
        raise SnapshotFormatError("bad checksum", path=path, op=header.op)
    try:
        return prefix[FIXED_HEADER_SIZE:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotFormatError(
            f"machine name is not UTF-8: {exc}", path=path, op=header.op
        ) from None


def check_machine(
    header: FixedHeader,
    machine_name: str,
    *,
    expected_op: int | None,
    expected_name: str | None,
    expected_version: int | None,
    oldest_version: int | None = None,
    path: str | None = None,
) -> None:
    """Refuse a verified snapshot that belongs elsewhere.

    The op must match the file name (a renamed or misplaced file is not the
    snapshot its name promises), and the state machine name and version must
    match the caller's (a snapshot of another machine, or another version of
    it, cannot be restored). ``None`` skips a check. With ``oldest_version``,
    any version in ``oldest_version..expected_version`` matches (a machine
    that upgrades older snapshot states).
    """
    if expected_op is not None and header.op != expected_op:
        raise SnapshotFormatError(
            f"op mismatch: the file name says op {expected_op}, the header says {header.op}",
            path=path,
            op=header.op,
        )
    if expected_version is None:
        version_ok = True
    elif oldest_version is None:
        version_ok = header.machine_version == expected_version
    else:
        version_ok = oldest_version <= header.machine_version <= expected_version
    if (expected_name is not None and machine_name != expected_name) or not version_ok:
        wanted = (
            f"version {expected_version}"
            if oldest_version is None
            else f"a version in {oldest_version}..{expected_version}"
        )
        hint = ""
        if machine_name == expected_name and expected_version is not None:
            if header.machine_version > expected_version:
                hint = " (a newer version of the state machine wrote it)"
            elif oldest_version is None:
                hint = (
                    " (an older version of the state machine wrote it: implement "
                    "upgrade_snapshot() to read it)"
                )
        raise SnapshotFormatError(
            f"state machine mismatch: the snapshot is of {machine_name!r} version "
            f"{header.machine_version}, expected {expected_name!r} {wanted}{hint}",
            path=path,
            op=header.op,
        )


def decode_body(body: bytes, *, path: str | None = None, op: int | None = None) -> Any:
    """Decode a verified CBOR body with the codec's one decoder and limits.

    The body has passed its checksum, so a failure here means the file was
    written wrong (or crafted); it is reported as a :class:`SnapshotFormatError`
    like any other invalid file. Memory stays bounded by the body's size (see
    the module docstring).
    """
    try:
        return codec.decode(body)
    except codec.UndecodableError as exc:
        raise SnapshotFormatError(f"undecodable body: {exc.reason}", path=path, op=op) from exc
