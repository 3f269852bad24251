"""One segment file: naming, durable creation, batched writes, and reading it back.

Everything here is synchronous and runs inside one ``run_io`` call of its
caller. :class:`SegmentFile` is the writer's handle on the segment being
appended to; :class:`SegmentReader` and :func:`check_record` are the single
place where records are read back and verified, shared by the recovery
scan, the read-only tools, :meth:`Journal.read` and :meth:`Journal.entries`.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import struct
from collections.abc import Callable, Iterator

import attrs

from ..errors import CorruptionError
from ..storage import Directory, Storage
from .decision import ProbeHit
from .record import (
    KIND_OP,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    RECORD_INDEX,
    RECORD_MAGIC,
    RECORD_MAGIC_OFFSET,
    RECORD_OFFSET,
    RECORD_VERSION,
    RecordHeader,
    decode_record_header,
    encode_segment_header,
    field_problem,
)

__all__ = [
    "CHUNK_BYTES",
    "SEGMENT_SUFFIX",
    "BodySink",
    "CheckKind",
    "RecordCheck",
    "RecordSink",
    "RunEnd",
    "SegmentFile",
    "SegmentReader",
    "check_record",
    "parse_segment_name",
    "probe_headers",
    "segment_name",
    "verify_run",
]

CHUNK_BYTES = 1 << 20
"""How much of a segment is read at once: reads stream, memory stays flat."""

SEGMENT_SUFFIX = ".wal"
_NAME_DIGITS = 20
_ZEROS = bytes(8)
_blake2b = hashlib.blake2b
# Positions of the fields the hot loop reads, from the one declaration in record.py.
_I_CHECKSUM = RECORD_INDEX["checksum"]
_I_MAGIC = RECORD_INDEX["magic"]
_RESERVED16 = bytes(16)
# verify_run reads only what it compares: checksum, checksum_body, parent, op,
# batch_first, body_len and the 28 bytes from epoch on (client, view and
# request are covered by the header checksum and not checked by value).
_RUN_FIELDS = struct.Struct("<16s16s16s16xQ16xQI28s")
assert _RUN_FIELDS.size == RECORD_HEADER_SIZE
assert RECORD_OFFSET["op"] == 64 and RECORD_OFFSET["batch_first"] == 88
assert RECORD_OFFSET["body_len"] == 96 and RECORD_OFFSET["epoch"] == 100
_GOOD_TAIL = struct.pack("<I4sHBB16s", 0, RECORD_MAGIC, RECORD_VERSION, KIND_OP, 0, _RESERVED16)


def segment_name(first_op: int) -> str:
    """The file name of the segment whose first op is ``first_op``."""
    return f"{first_op:0{_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first op encoded in a segment file name, or None if it is not one.

    Only ``<20 digits>.wal`` with a value of at least 1 is a segment name.
    """
    stem = name[: -len(SEGMENT_SUFFIX)]
    if not name.endswith(SEGMENT_SUFFIX) or len(stem) != _NAME_DIGITS:
        return None
    if not (stem.isascii() and stem.isdigit()):
        return None
    first_op = int(stem)
    return first_op if first_op >= 1 else None


class SegmentReader:
    """Reads a segment through a window of ``chunk_bytes`` (streaming, flat memory).

    ``get(offset, n)`` returns a view of ``n`` bytes, re-reading from
    ``offset`` when they are not all in the window. ``size`` bounds every
    read: bytes past it are treated as absent.
    """

    def __init__(self, storage: Storage, size: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.storage = storage
        self.size = size
        self._chunk = chunk_bytes
        self._buf = b""
        self._start = 0

    def window(self, offset: int, n: int) -> tuple[bytes, int]:
        """The buffer holding bytes ``[offset, offset + n)`` and where they start in it.

        The caller has checked ``offset + n <= size``. Avoids creating views on
        the hot path of the scan.
        """
        rel = offset - self._start
        if rel < 0 or rel + n > len(self._buf):
            self._buf = self.storage.read_at(offset, min(max(n, self._chunk), self.size - offset))
            self._start = offset
            rel = 0
        return self._buf, rel

    def get(self, offset: int, n: int) -> memoryview | None:
        """``n`` bytes at ``offset``, or None if the file ends before them."""
        if offset + n > self.size:
            return None
        rel = offset - self._start
        if rel < 0 or rel + n > len(self._buf):
            want = min(max(n, self._chunk), self.size - offset)
            self._buf = self.storage.read_at(offset, want)
            self._start = offset
            rel = 0
            if len(self._buf) < n:  # the file shrank under us: treat as its end
                return None
        return memoryview(self._buf)[rel : rel + n]


class CheckKind(enum.Enum):
    """The outcome of :func:`check_record` at one position."""

    OK = "ok"
    END = "end"
    """The position is exactly the end of the file."""
    BAD = "bad"
    """No valid record here (torn or damaged): header, body or padding."""
    UNSUPPORTED = "unsupported"
    OP_GAP = "op_gap"
    CHAIN_BREAK = "chain_break"


@attrs.frozen
class RecordCheck:
    """What is at one record position.

    ``header`` is set whenever the header's checksum was valid. ``body`` is
    a view of the body for ``OK``. ``probe_from`` is, for ``BAD``, the first
    offset where a later record may start: right after the record when its
    header (and so its length) is trustworthy, else the next 8-byte offset.
    """

    kind: CheckKind
    offset: int
    header: RecordHeader | None = None
    body: memoryview | None = attrs.field(default=None, eq=False)
    reason: str = ""
    probe_from: int = 0
    end: int = 0
    """The offset right after the record (for ``OK``)."""


def check_record(
    reader: SegmentReader, offset: int, expected_op: int, parent: bytes | None
) -> RecordCheck:
    """Verify the record at ``offset``: header checksum, fields, op, parent, body.

    ``parent`` None skips the chain check (a reader that starts mid-chain).
    This is the hot loop of recovery and replay, hence written flat.
    """
    size = reader.size
    if offset == size:
        return RecordCheck(CheckKind.END, offset)
    if offset + RECORD_HEADER_SIZE > size:
        return RecordCheck(
            CheckKind.BAD,
            offset,
            reason=f"only {size - offset} bytes left, less than a record header",
            probe_from=offset + 8,
        )
    buf, rel = reader.window(offset, RECORD_HEADER_SIZE)
    if len(buf) < rel + RECORD_HEADER_SIZE:  # the file shrank under us
        return RecordCheck(CheckKind.BAD, offset, reason="file shrank", probe_from=offset + 8)
    fields = RECORD_HEADER.unpack_from(buf, rel)
    if (
        fields[_I_MAGIC] != RECORD_MAGIC
        or _blake2b(buf[rel + 16 : rel + RECORD_HEADER_SIZE], digest_size=16).digest()
        != fields[_I_CHECKSUM]
    ):
        return RecordCheck(
            CheckKind.BAD,
            offset,
            reason="record header checksum or magic is invalid",
            probe_from=offset + 8,
        )
    header = RecordHeader(*fields)
    op = header.op
    body_len = header.body_len
    body_sum = header.checksum_body
    rec_parent = header.parent
    problem = field_problem(
        header.version,
        header.kind,
        header.flags,
        header.epoch,
        header.reserved,
        op,
        header.batch_first,
    )
    if problem is not None:
        return RecordCheck(CheckKind.UNSUPPORTED, offset, header, reason=problem)
    if op != expected_op:
        return RecordCheck(
            CheckKind.OP_GAP,
            offset,
            header,
            reason=f"record has op {op} where op {expected_op} belongs",
        )
    if parent is not None and rec_parent != parent:
        return RecordCheck(
            CheckKind.CHAIN_BREAK,
            offset,
            header,
            reason="record's parent is not the checksum of the previous record (chain break)",
        )
    body_end = RECORD_HEADER_SIZE + body_len
    total = (body_end + 7) & ~7
    if offset + total > size:
        return RecordCheck(
            CheckKind.BAD,
            offset,
            header,
            reason=f"record of {total} bytes extends past the end of the file",
            probe_from=offset + total,
        )
    if rel + total > len(buf):
        buf, rel = reader.window(offset, total)
        if len(buf) < rel + total:
            return RecordCheck(CheckKind.BAD, offset, header, reason="file shrank")
    body = memoryview(buf)[rel + RECORD_HEADER_SIZE : rel + body_end]
    if _blake2b(body, digest_size=16).digest() != body_sum:
        return RecordCheck(
            CheckKind.BAD,
            offset,
            header,
            reason="record body checksum mismatch",
            probe_from=offset + total,
        )
    if total != body_end and buf[rel + body_end : rel + total] != _ZEROS[: total - body_end]:
        return RecordCheck(
            CheckKind.BAD,
            offset,
            header,
            reason="record padding is not zero",
            probe_from=offset + total,
        )
    return RecordCheck(CheckKind.OK, offset, header, body, end=offset + total)


RecordSink = Callable[[int, int, int, int, bytes], None]
"""Told of each verified record: (segment first op, offset, op, body length, checksum)."""

BodySink = Callable[[int, memoryview], None]
"""Given each verified record's (op, body); the view is valid only during the call."""


@attrs.frozen
class RunEnd:
    """Where :func:`verify_run` stopped: the offset, the next expected op, the
    chain tip there, the ``batch_first`` of the last record it verified (None
    when it verified none) and how many it verified."""

    offset: int
    expected_op: int
    tip: bytes
    batch_first: int | None
    records: int


def verify_run(
    reader: SegmentReader,
    offset: int,
    expected_op: int,
    parent: bytes,
    *,
    segment_first_op: int,
    path: str,
    on_record: RecordSink | None = None,
    body_after: int = 0,
    on_body: BodySink | None = None,
) -> RunEnd:
    """Verify the run of valid records starting at ``offset``, one pass, no objects.

    Applies exactly the checks of :func:`check_record` (magic and header
    checksum, format fields, op, parent, body checksum, zero padding) to
    each record, without building a header, a check result or a copy of the
    body, and stops at the first record that does not pass all of them or
    at the end of the file. The caller then asks :func:`check_record` what
    is at the returned offset: the end of the file, or the one record that
    failed (which is classified there, so its checks run a second time;
    every record the run accepted is verified once).

    For each accepted record, ``on_record`` is told where it is, and
    ``on_body`` (when its op is above ``body_after``) receives the verified
    body: this is what lets recovery replay from the same bytes the scan
    verified, in the same pass. A :class:`CorruptionError` ``on_body``
    raises without a path is raised again naming this file and the record's
    offset; anything else it raises propagates unchanged.
    """
    size = reader.size
    blake2b = _blake2b
    unpack_from = _RUN_FIELDS.unpack_from
    good_tail = _GOOD_TAIL
    zeros = _ZEROS
    expected = expected_op
    tip = parent
    batch_first: int | None = None
    buf = b""
    end = 0  # len(buf)
    view = memoryview(buf)
    rel = 0
    while True:
        # The window never extends past ``size``, so what fits in it is in the file.
        if rel + RECORD_HEADER_SIZE > end:
            if offset + RECORD_HEADER_SIZE > size:
                break
            buf, rel = reader.window(offset, RECORD_HEADER_SIZE)
            end = len(buf)
            if end < rel + RECORD_HEADER_SIZE:
                break  # the file shrank: check_record says so
            view = memoryview(buf)
        checksum, body_sum, rec_parent, op, record_first, body_len, tail = unpack_from(buf, rel)
        # One compare covers epoch, magic, version, kind, flags and the
        # reserved bytes: a record this version writes has exactly this tail.
        if (
            tail != good_tail
            or op != expected
            or rec_parent != tip
            or not 1 <= record_first <= op
            or blake2b(view[rel + 16 : rel + RECORD_HEADER_SIZE], digest_size=16).digest()
            != checksum
        ):
            break
        body_end = rel + RECORD_HEADER_SIZE + body_len
        total = (RECORD_HEADER_SIZE + body_len + 7) & ~7
        if rel + total > end:
            if offset + total > size:
                break
            buf, rel = reader.window(offset, total)
            end = len(buf)
            if end < rel + total:
                break
            view = memoryview(buf)
            body_end = rel + RECORD_HEADER_SIZE + body_len
        body = view[rel + RECORD_HEADER_SIZE : body_end]
        if blake2b(body, digest_size=16).digest() != body_sum:
            break
        rel += total
        if rel != body_end and buf[body_end:rel] != zeros[: rel - body_end]:
            rel -= total
            break
        if on_record is not None:
            on_record(segment_first_op, offset, op, body_len, checksum)
        if on_body is not None and op > body_after:
            try:
                on_body(op, body)
            except CorruptionError as exc:
                if exc.path is not None:
                    raise
                raise CorruptionError(exc.reason, path=path, offset=offset, op=op) from exc
        tip = checksum
        batch_first = record_first
        expected += 1
        offset += total
    count = expected - expected_op
    return RunEnd(offset, expected, tip, batch_first, count)


def probe_headers(
    storage: Storage, start: int, end: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[ProbeHit]:
    """Every valid record header at an 8-byte aligned offset in ``[start, end)``.

    Lazily, in file order. Candidates are found by searching for the record
    magic (cheap), then confirmed by the header checksum, so a whole segment
    is probed at close to read speed.
    """
    pos = (start + 7) & ~7
    magic_at = RECORD_MAGIC_OFFSET
    while pos + RECORD_HEADER_SIZE <= end:
        data = storage.read_at(pos, min(chunk_bytes + RECORD_HEADER_SIZE, end - pos))
        limit = min(chunk_bytes, len(data) - RECORD_HEADER_SIZE + 1)  # header starts < limit
        i = data.find(RECORD_MAGIC, magic_at)
        while i != -1 and i - magic_at < limit:
            h = i - magic_at
            if (pos + h) % 8 == 0:
                header = decode_record_header(memoryview(data)[h : h + RECORD_HEADER_SIZE])
                if header is not None:
                    yield ProbeHit(
                        offset=pos + h,
                        op=header.op,
                        batch_first=header.batch_first,
                        checksum=header.checksum,
                        parent=header.parent,
                        size=header.size,
                    )
            i = data.find(RECORD_MAGIC, i + 1)
        pos += chunk_bytes


class SegmentFile:
    """The writer's handle on one segment: its name, first op, open file and size."""

    def __init__(self, directory: Directory, first_op: int, storage: Storage, size: int) -> None:
        self.directory = directory
        self.first_op = first_op
        self.name = segment_name(first_op)
        self.storage = storage
        self.size = size

    @property
    def path(self) -> str:
        """Where the segment is, for error messages."""
        return self.directory.path_of(self.name)

    @classmethod
    def create(
        cls, directory: Directory, first_op: int, parent: bytes, directory_id: bytes
    ) -> SegmentFile:
        """Create the segment durably, before any record goes in.

        File created, header written, file fsynced, then the directory
        fsynced. Because of this order a segment whose header is torn can
        only be the last one, and can hold no records (recovery removes it).
        """
        header = encode_segment_header(first_op, parent, directory_id)
        storage = directory.open(segment_name(first_op), create=True)
        try:
            storage.write_at(0, header)
            storage.sync()
            directory.sync()
        except BaseException:
            storage.close()
            raise
        return cls(directory, first_op, storage, len(header))

    @classmethod
    def open(cls, directory: Directory, first_op: int, size: int) -> SegmentFile:
        """Open an existing segment for appending at ``size`` (its verified end)."""
        storage = directory.open(segment_name(first_op))
        return cls(directory, first_op, storage, size)

    def write_batch(self, data: bytes) -> int:
        """Write one encoded batch at the end with ONE write, then ONE fdatasync.

        Returns the offset the batch starts at. ``OSError`` propagates; the
        caller must treat it as fatal (never retry an fsync).
        """
        offset = self.size
        storage = self.storage
        try:
            storage.write_at(offset, data)
            storage.sync()
        except OSError:
            # The batch's outcome is unknown, and after a failed fsync its
            # bytes may stay visible in the page cache although they were
            # never written: cut the file back to its last durable size, so
            # no later open in this boot reads them as if they were durable.
            self.cut_back(offset)
            raise
        if storage.link_count() == 0:
            # The file was unlinked under us (rm -rf of the data directory):
            # what was just written will never be found again. Never ack it.
            raise FileNotFoundError(
                errno.ENOENT, "the segment was unlinked while in use; nothing is durable", self.path
            )
        self.size = offset + len(data)
        return offset

    def cut_back(self, size: int) -> bool:
        """Best effort: truncate to ``size`` and fsync; True when both worked."""
        try:
            self.storage.truncate(size)
            self.storage.sync()
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the file handle. Idempotent."""
        self.storage.close()
