"""The journal's bytes: encoding and decoding of segment headers and records.

Pure functions over bytes, no I/O. Every layout here is described byte for
byte in ``docs/format.md`` ("Journal"); change both together. The record
header is declared once, in :data:`RECORD_FIELDS`: the struct, the field
offsets and the hot loop in ``segment.py`` all derive from it.

Segment header (80 bytes, at offset 0 of every ``wal/<first op:020d>.wal``)::

    0   8  magic         b"\\x89TRWAL\\r\\n"
    8   2  version       u16 = 2
    10  2  reserved      0
    12  4  reserved      0
    16  8  first_op      u64, equal to the op in the file name
    24 16  parent        checksum of the last record of the previous segment
                         (GENESIS_PARENT for the segment that starts at op 1)
    40 16  directory_id  the data directory's identity (see ``superblock.py``)
    56  8  reserved      0
    64 16  checksum      blake2b-128 over bytes [0, 64)

Record (8-byte aligned): a 128-byte header that is the prepare header of
Viewstamped Replication, the body, zero padding to a multiple of 8::

    0   16 checksum       blake2b-128 over header bytes [16, 128): the op's identity
    16  16 checksum_body  blake2b-128 over the body
    32  16 parent         checksum of the previous record (the hash chain)
    48  16 client         u128 client id (0: no client session, as a single replica writes)
    64   8 op             u64
    72   8 view           u64 view the op was prepared in (0 for a single replica)
    80   8 request        u64 client request number (0 without a client session)
    88   8 batch_first    u64 op of the first record of the same append() batch
    96   4 body_len       u32
    100  4 epoch          u32, reserved: 0
    104  4 magic          b"TRJR"
    108  2 version        u16 = 2
    110  1 kind           u8: 1 = op; 2 = seal (reserved, refused until written)
    111  1 flags          0
    112 16 reserved       0

The header checksum covers ``checksum_body``, hence the body: one compare
proves the whole record, and a header can be verified without its body (a
view change exchanges headers only). It is separate from the body checksum
so that a recovery scan can test any 8-byte offset for "is a record header
here" without trusting a length field.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Sequence

import attrs

__all__ = [
    "CHECKSUM_SIZE",
    "FORMAT_VERSION",
    "GENESIS_PARENT",
    "KIND_OP",
    "KIND_SEAL",
    "MAX_BODY_LEN",
    "RECORD_FIELDS",
    "RECORD_HEADER",
    "RECORD_HEADER_SIZE",
    "RECORD_INDEX",
    "RECORD_OFFSET",
    "RECORD_MAGIC",
    "RECORD_MAGIC_OFFSET",
    "RECORD_VERSION",
    "SEGMENT_HEADER_SIZE",
    "SEGMENT_MAGIC",
    "SEGMENT_VERSION",
    "EncodedBatch",
    "HeaderStatus",
    "RecordHeader",
    "SegmentHeader",
    "checksum",
    "decode_record_header",
    "decode_segment_header",
    "encode_batch",
    "encode_record",
    "encode_segment_header",
    "field_problem",
    "padded_size",
    "record_problem",
    "record_size",
]

FORMAT_VERSION = 2
"""The on-disk format version this code writes and reads (segments, records,
superblock and snapshots change together)."""

CHECKSUM_SIZE = 16
SEGMENT_MAGIC = b"\x89TRWAL\r\n"
SEGMENT_VERSION = FORMAT_VERSION
SEGMENT_HEADER_SIZE = 80
RECORD_MAGIC = b"TRJR"
RECORD_VERSION = FORMAT_VERSION
MAX_BODY_LEN = 2**32 - 1

KIND_OP = 1
"""A record holding one op (a command)."""
KIND_SEAL = 2
"""Reserved for a seal record (written after a batch is durable); refused until it is written."""

RECORD_FIELDS: tuple[tuple[str, str], ...] = (
    ("checksum", "16s"),
    ("checksum_body", "16s"),
    ("parent", "16s"),
    ("client", "16s"),
    ("op", "Q"),
    ("view", "Q"),
    ("request", "Q"),
    ("batch_first", "Q"),
    ("body_len", "I"),
    ("epoch", "I"),
    ("magic", "4s"),
    ("version", "H"),
    ("kind", "B"),
    ("flags", "B"),
    ("reserved", "16s"),
)
"""The record header, field by field in file order (name, struct code): the one declaration."""

RECORD_HEADER = struct.Struct("<" + "".join(code for _, code in RECORD_FIELDS))
"""The whole record header, unpacked in :data:`RECORD_FIELDS` order."""
RECORD_HEADER_SIZE = RECORD_HEADER.size
_RECORD_INDEX = {name: i for i, (name, _) in enumerate(RECORD_FIELDS)}
_RECORD_OFFSET = {
    name: struct.calcsize("<" + "".join(code for _, code in RECORD_FIELDS[:i]))
    for i, (name, _) in enumerate(RECORD_FIELDS)
}
RECORD_MAGIC_OFFSET = _RECORD_OFFSET["magic"]
"""Where the magic sits inside a record header (the probe searches for it)."""
_CHECKED_FROM = _RECORD_OFFSET["checksum_body"]  # the header checksum covers [16, size)
assert RECORD_HEADER_SIZE == 128 and RECORD_MAGIC_OFFSET == 104 and _CHECKED_FROM == 16
# The tail after checksum_body and parent, as encode_batch packs it per record.
_RECORD_AFTER_PARENT = struct.Struct("<" + "".join(code for _, code in RECORD_FIELDS[3:]))

_SEGMENT_HEADER = struct.Struct("<8sHHIQ16s16s8s16s")
assert _SEGMENT_HEADER.size == SEGMENT_HEADER_SIZE
_SEGMENT_CHECKED = SEGMENT_HEADER_SIZE - CHECKSUM_SIZE  # header bytes covered by its checksum
_V1_SEGMENT_HEADER_SIZE = 64  # format version 1, recognised only to name it in the refusal
_RESERVED8 = bytes(8)
_RESERVED16 = bytes(16)
_ZERO_ID = bytes(16)
_PADDING = bytes(8)


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """The journal's checksum: BLAKE2b with a 16-byte digest (see docs/decisions.md)."""
    return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()


GENESIS_PARENT = checksum(b"trio-replica journal genesis")
"""The ``parent`` of op 1 and of the segment that starts at op 1: the chain's fixed root."""


def padded_size(n: int) -> int:
    """``n`` rounded up to a multiple of 8."""
    return (n + 7) & ~7


def record_size(body_len: int) -> int:
    """Bytes a record with a ``body_len``-byte body takes on disk, padding included."""
    return RECORD_HEADER_SIZE + padded_size(body_len)


# --- segment header -----------------------------------------------------


class HeaderStatus(enum.Enum):
    """What decoding a segment header found."""

    VALID = "valid"
    """Magic, version and checksum are right."""
    INVALID = "invalid"
    """Ours or empty (the magic bytes present are ours, or all zero) but
    short or failing its checksum: a crash while creating the segment, or
    damage."""
    FOREIGN = "foreign"
    """The magic is neither ours nor zeros: not a journal segment."""
    UNKNOWN_VERSION = "unknown_version"
    """A header of another format version (``SegmentHeader.version`` says which)."""


@attrs.frozen
class SegmentHeader:
    """A decoded segment header (for ``UNKNOWN_VERSION`` only ``version`` is meaningful)."""

    first_op: int
    parent: bytes
    directory_id: bytes = _ZERO_ID
    version: int = SEGMENT_VERSION


def encode_segment_header(first_op: int, parent: bytes, directory_id: bytes = _ZERO_ID) -> bytes:
    """The 80 header bytes of the segment whose first record is ``first_op``."""
    if not 1 <= first_op < 2**64:
        raise ValueError(f"first_op out of range: {first_op}")
    if len(parent) != CHECKSUM_SIZE:
        raise ValueError("parent must be a 16-byte checksum")
    if len(directory_id) != 16:
        raise ValueError("directory_id must be 16 bytes")
    body = _SEGMENT_HEADER.pack(
        SEGMENT_MAGIC,
        SEGMENT_VERSION,
        0,
        0,
        first_op,
        parent,
        directory_id,
        _RESERVED8,
        bytes(CHECKSUM_SIZE),
    )[:_SEGMENT_CHECKED]
    return body + checksum(body)


def decode_segment_header(data: bytes) -> tuple[HeaderStatus, SegmentHeader | None]:
    """Classify the first (up to 80) bytes of a segment file.

    Returns the status and, for ``VALID``, the decoded header; for
    ``UNKNOWN_VERSION`` a header whose ``version`` names the version found.
    Version 1 is recognised by its own checksum; a version above 2 is
    reported as unknown without a checksum check (its layout is unknown).
    """
    magic = data[:8]
    if magic != SEGMENT_MAGIC[: len(magic)] and any(magic):
        return HeaderStatus.FOREIGN, None
    if magic == SEGMENT_MAGIC and len(data) >= 10:
        version = int.from_bytes(data[8:10], "little")
        if version == 1:
            v1 = data[:_V1_SEGMENT_HEADER_SIZE]
            if len(v1) == _V1_SEGMENT_HEADER_SIZE and checksum(v1[:48]) == v1[48:64]:
                return HeaderStatus.UNKNOWN_VERSION, SegmentHeader(0, b"", version=1)
            return HeaderStatus.INVALID, None
        if version > SEGMENT_VERSION:
            return HeaderStatus.UNKNOWN_VERSION, SegmentHeader(0, b"", version=version)
    if len(data) < SEGMENT_HEADER_SIZE:
        return HeaderStatus.INVALID, None
    head = data[:SEGMENT_HEADER_SIZE]
    (_, version, res16, res32, first_op, parent, directory_id, res8, stored) = (
        _SEGMENT_HEADER.unpack(head)
    )
    if magic != SEGMENT_MAGIC or checksum(head[:_SEGMENT_CHECKED]) != stored:
        return HeaderStatus.INVALID, None
    if version != SEGMENT_VERSION or res16 or res32 or res8 != _RESERVED8 or first_op < 1:
        return HeaderStatus.UNKNOWN_VERSION, SegmentHeader(0, b"", version=version)
    return HeaderStatus.VALID, SegmentHeader(first_op, parent, directory_id, version)


# --- records -------------------------------------------------------------


@attrs.frozen
class RecordHeader:
    """A record header whose checksum and magic were verified (fields as in RECORD_FIELDS)."""

    checksum: bytes
    checksum_body: bytes
    parent: bytes
    client: bytes
    op: int
    view: int
    request: int
    batch_first: int
    body_len: int
    epoch: int
    magic: bytes
    version: int
    kind: int
    flags: int
    reserved: bytes

    @property
    def size(self) -> int:
        """Bytes of the whole record on disk (header, body, padding)."""
        return record_size(self.body_len)

    @property
    def client_id(self) -> int:
        """The client id as an integer (``client`` is its 16 little-endian bytes)."""
        return int.from_bytes(self.client, "little")


def _client_bytes(client: int) -> bytes:
    if not 0 <= client < 2**128:
        raise ValueError(f"client id out of range: {client}")
    return client.to_bytes(16, "little")


def encode_record(
    op: int,
    batch_first: int,
    parent: bytes,
    body: bytes,
    *,
    view: int = 0,
    client: int = 0,
    request: int = 0,
    kind: int = KIND_OP,
) -> bytes:
    """The bytes of one record, padding included."""
    body_sum = checksum(body)
    tail = (
        body_sum
        + RECORD_HEADER.pack(
            b"",
            b"",
            parent,
            _client_bytes(client),
            op,
            view,
            request,
            batch_first,
            len(body),
            0,
            RECORD_MAGIC,
            RECORD_VERSION,
            kind,
            0,
            _RESERVED16,
        )[32:]
    )
    pad = padded_size(len(body)) - len(body)
    return b"".join((checksum(tail), tail, body, _PADDING[:pad]))


@attrs.frozen
class EncodedBatch:
    """One append() batch, encoded into a single buffer.

    ``offsets[i]`` and ``body_lens[i]`` locate the i-th record inside
    ``data``; ``tip`` is the checksum of the last record (the new chain tip).
    """

    data: bytes
    offsets: list[int]
    body_lens: list[int]
    tip: bytes


_PADS = [bytes(i) for i in range(8)]
_NO_CLIENT = bytes(16)


def encode_batch(first_op: int, parent: bytes, bodies: Sequence[bytes]) -> EncodedBatch:
    """Encode ``bodies`` as ops ``first_op, first_op + 1, ...`` chained from ``parent``.

    Every record carries ``batch_first = first_op``, which is what lets
    recovery tell a torn, never acknowledged batch from damage to a durable
    one (see ``decision.py``); view, client and request are 0 (a single
    replica). Produces the same bytes as :func:`encode_record` applied op by
    op; written for speed, since it runs once per op on the append path.
    """
    blake2b = hashlib.blake2b
    pack = _RECORD_AFTER_PARENT.pack
    pads = _PADS
    parts: list[bytes] = []
    extend = parts.extend
    offsets: list[int] = []
    body_lens: list[int] = []
    offset = 0
    op = first_op
    for body in bodies:
        n = len(body)
        tail = (
            blake2b(body, digest_size=16).digest()
            + parent
            + pack(
                _NO_CLIENT,
                op,
                0,
                0,
                first_op,
                n,
                0,
                RECORD_MAGIC,
                RECORD_VERSION,
                KIND_OP,
                0,
                _RESERVED16,
            )
        )
        parent = blake2b(tail, digest_size=16).digest()
        pad = (-n) & 7
        extend((parent, tail, body, pads[pad]))
        offsets.append(offset)
        body_lens.append(n)
        offset += RECORD_HEADER_SIZE + n + pad
        op += 1
    return EncodedBatch(data=b"".join(parts), offsets=offsets, body_lens=body_lens, tip=parent)


def decode_record_header(view: bytes | memoryview) -> RecordHeader | None:
    """Decode the header at the start of ``view``.

    Returns ``None`` unless the magic and the header checksum are right. A
    header that passes was written exactly like this by some append (or is
    a copy of one): its fields, ``body_len`` included, can be trusted.
    """
    if (
        len(view) < RECORD_HEADER_SIZE
        or view[RECORD_MAGIC_OFFSET : RECORD_MAGIC_OFFSET + 4] != RECORD_MAGIC
    ):
        return None
    if checksum(view[_CHECKED_FROM:RECORD_HEADER_SIZE]) != view[:_CHECKED_FROM]:
        return None
    return RecordHeader(*RECORD_HEADER.unpack_from(view))


def record_problem(header: RecordHeader) -> str | None:
    """Why a header with a valid checksum is not one this version writes, or None."""
    return field_problem(
        header.version,
        header.kind,
        header.flags,
        header.epoch,
        header.reserved,
        header.op,
        header.batch_first,
    )


def field_problem(
    version: int, kind: int, flags: int, epoch: int, reserved: bytes, op: int, batch_first: int
) -> str | None:
    """:func:`record_problem` over raw fields (the scan's hot loop calls this directly)."""
    if version != RECORD_VERSION:
        return f"record of format version {version} (this version reads {RECORD_VERSION})"
    if kind != KIND_OP:
        return f"record kind {kind} is not one this version writes (1 = op)"
    if flags or epoch or reserved != _RESERVED16:
        return f"unknown record flags {flags:#x} / epoch {epoch} / reserved bytes"
    if not 1 <= batch_first <= op:
        return f"batch_first {batch_first} is not in [1, op {op}]"
    return None


RECORD_INDEX = _RECORD_INDEX
"""Field name -> position in a tuple unpacked with :data:`RECORD_HEADER`."""
RECORD_OFFSET = _RECORD_OFFSET
"""Field name -> byte offset inside the record header."""
