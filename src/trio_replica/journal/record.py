"""The journal's bytes: encoding and decoding of segment headers and records.

Pure functions over bytes, no I/O. Every layout here is described byte for
byte in ``docs/format.md`` ("Journal"); change both together.

Segment header (64 bytes, at offset 0 of every ``wal/<first op:020d>.wal``)::

    0   8  magic        b"\\x89TRWAL\\r\\n"
    8   2  version      u16 = 1
    10  2  reserved     0
    12  4  reserved     0
    16  8  first_op     u64, equal to the op in the file name
    24 16  parent       checksum of the last record of the previous segment
                        (GENESIS_PARENT for the segment that starts at op 1)
    40  8  reserved     0
    48 16  checksum     blake2b-128 over bytes [0, 48)

Record (8-byte aligned): an 80-byte header, the body, zero padding to a
multiple of 8::

    0  16 checksum       blake2b-128 over header bytes [16, 80)
    16 16 checksum_body  blake2b-128 over the body
    32 16 parent         checksum of the previous record (the hash chain)
    48  8 op             u64
    56  8 batch_first    u64: op of the first record of the same append() batch
    64  4 body_len       u32
    68  4 magic          b"TRJR"
    72  2 version        u16 = 1
    74  2 flags          0
    76  4 reserved       0

The header checksum covers ``checksum_body``, hence the body: one compare
proves the whole record. It is separate from the body checksum so that a
recovery scan can test any 8-byte offset for "is a record header here"
without trusting a length field.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Sequence

import attrs

__all__ = [
    "CHECKSUM_SIZE",
    "GENESIS_PARENT",
    "MAX_BODY_LEN",
    "RECORD_HEADER_SIZE",
    "RECORD_MAGIC",
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
    "padded_size",
    "record_size",
    "record_problem",
]

CHECKSUM_SIZE = 16
SEGMENT_MAGIC = b"\x89TRWAL\r\n"
SEGMENT_VERSION = 1
SEGMENT_HEADER_SIZE = 64
RECORD_MAGIC = b"TRJR"
RECORD_VERSION = 1
RECORD_HEADER_SIZE = 80
MAX_BODY_LEN = 2**32 - 1

_SEGMENT_HEADER = struct.Struct("<8sHHIQ16s8s16s")
_RECORD_TAIL = struct.Struct("<16s16sQQI4sHHI")  # header bytes [16, 80)
_RECORD_HEADER = struct.Struct("<16s16s16sQQI4sHHI")
assert _SEGMENT_HEADER.size == SEGMENT_HEADER_SIZE
assert _RECORD_HEADER.size == RECORD_HEADER_SIZE

_SEGMENT_CHECKED = SEGMENT_HEADER_SIZE - CHECKSUM_SIZE  # header bytes covered by its checksum
_RESERVED8 = bytes(8)
_PADDING = bytes(8)


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """The journal's checksum: BLAKE2b with a 16-byte digest."""
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
    """A valid header of a format version this code does not know."""


@attrs.frozen
class SegmentHeader:
    """A decoded segment header."""

    first_op: int
    parent: bytes
    version: int = SEGMENT_VERSION


def encode_segment_header(first_op: int, parent: bytes) -> bytes:
    """The 64 header bytes of the segment whose first record is ``first_op``."""
    if not 1 <= first_op < 2**64:
        raise ValueError(f"first_op out of range: {first_op}")
    if len(parent) != CHECKSUM_SIZE:
        raise ValueError("parent must be a 16-byte checksum")
    body = _SEGMENT_HEADER.pack(
        SEGMENT_MAGIC, SEGMENT_VERSION, 0, 0, first_op, parent, _RESERVED8, bytes(CHECKSUM_SIZE)
    )[:_SEGMENT_CHECKED]
    return body + checksum(body)


def decode_segment_header(data: bytes) -> tuple[HeaderStatus, SegmentHeader | None]:
    """Classify the first (up to 64) bytes of a segment file.

    Returns the status and, for ``VALID``, the decoded header.
    """
    magic = data[:8]
    if magic != SEGMENT_MAGIC[: len(magic)] and any(magic):
        return HeaderStatus.FOREIGN, None
    if len(data) < SEGMENT_HEADER_SIZE:
        return HeaderStatus.INVALID, None
    head = data[:SEGMENT_HEADER_SIZE]
    (_, version, res16, res32, first_op, parent, res8, stored) = _SEGMENT_HEADER.unpack(head)
    if magic != SEGMENT_MAGIC or checksum(head[:_SEGMENT_CHECKED]) != stored:
        return HeaderStatus.INVALID, None
    if version != SEGMENT_VERSION or res16 or res32 or res8 != _RESERVED8 or first_op < 1:
        return HeaderStatus.UNKNOWN_VERSION, None
    return HeaderStatus.VALID, SegmentHeader(first_op=first_op, parent=parent, version=version)


# --- records -------------------------------------------------------------


@attrs.frozen
class RecordHeader:
    """A record header whose checksum and magic were verified."""

    checksum: bytes
    checksum_body: bytes
    parent: bytes
    op: int
    batch_first: int
    body_len: int
    version: int
    flags: int
    reserved: int

    @property
    def size(self) -> int:
        """Bytes of the whole record on disk (header, body, padding)."""
        return record_size(self.body_len)


def encode_record(op: int, batch_first: int, parent: bytes, body: bytes) -> bytes:
    """The bytes of one record, padding included."""
    body_sum = checksum(body)
    tail = _RECORD_TAIL.pack(
        body_sum, parent, op, batch_first, len(body), RECORD_MAGIC, RECORD_VERSION, 0, 0
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


_RECORD_VARIABLE = struct.Struct("<16s16sQQI")  # header bytes [16, 68)
_RECORD_CONSTANT = struct.pack("<4sHHI", RECORD_MAGIC, RECORD_VERSION, 0, 0)  # [68, 80)
_PADS = [bytes(i) for i in range(8)]


def encode_batch(first_op: int, parent: bytes, bodies: Sequence[bytes]) -> EncodedBatch:
    """Encode ``bodies`` as ops ``first_op, first_op + 1, ...`` chained from ``parent``.

    Every record carries ``batch_first = first_op``, which is what lets
    recovery tell a torn, never acknowledged batch from damage to a durable
    one (see ``decision.py``). Produces the same bytes as :func:`encode_record`
    applied op by op; written for speed, since it runs once per op on the
    append path.
    """
    blake2b = hashlib.blake2b
    pack = _RECORD_VARIABLE.pack
    constant = _RECORD_CONSTANT
    pads = _PADS
    parts: list[bytes] = []
    extend = parts.extend
    offsets: list[int] = []
    body_lens: list[int] = []
    offset = 0
    op = first_op
    for body in bodies:
        n = len(body)
        tail = pack(blake2b(body, digest_size=16).digest(), parent, op, first_op, n) + constant
        parent = blake2b(tail, digest_size=16).digest()
        pad = (-n) & 7
        extend((parent, tail, body, pads[pad]))
        offsets.append(offset)
        body_lens.append(n)
        offset += RECORD_HEADER_SIZE + n + pad
        op += 1
    return EncodedBatch(data=b"".join(parts), offsets=offsets, body_lens=body_lens, tip=parent)


def decode_record_header(view: bytes | memoryview) -> RecordHeader | None:
    """Decode the 80 bytes at the start of ``view`` as a record header.

    Returns ``None`` unless the magic and the header checksum are right. A
    header that passes was written exactly like this by some append (or is
    a copy of one): its fields, ``body_len`` included, can be trusted.
    """
    if len(view) < RECORD_HEADER_SIZE or view[68:72] != RECORD_MAGIC:
        return None
    if checksum(view[16:RECORD_HEADER_SIZE]) != view[:16]:
        return None
    (stored, body_sum, parent, op, batch_first, body_len, _, version, flags, reserved) = (
        _RECORD_HEADER.unpack_from(view)
    )
    return RecordHeader(
        stored, body_sum, parent, op, batch_first, body_len, version, flags, reserved
    )


def record_problem(header: RecordHeader) -> str | None:
    """Why a header with a valid checksum is not one this version writes, or None."""
    if header.version != RECORD_VERSION:
        return f"unknown record version {header.version}"
    if header.flags or header.reserved:
        return f"unknown record flags {header.flags:#x} / reserved {header.reserved:#x}"
    if not 1 <= header.batch_first <= header.op:
        return f"batch_first {header.batch_first} is not in [1, op {header.op}]"
    return None
