"""The byte format: records and segment headers round-trip, and every damage is detected."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from trio_replica.journal.record import (
    GENESIS_PARENT,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    HeaderStatus,
    checksum,
    decode_record_header,
    decode_segment_header,
    encode_batch,
    encode_record,
    encode_segment_header,
    padded_size,
    record_problem,
    record_size,
)
from trio_replica.journal.segment import (
    CheckKind,
    SegmentReader,
    check_record,
    parse_segment_name,
    probe_headers,
    segment_name,
)
from trio_replica.storage import MemoryDirectory

ops = st.integers(min_value=1, max_value=2**63)
parents = st.binary(min_size=16, max_size=16)


@given(op=ops, parent=parents, body=st.binary(max_size=300), back=st.integers(0, 10))
def test_record_round_trip(op: int, parent: bytes, body: bytes, back: int) -> None:
    batch_first = max(1, op - back)
    data = encode_record(op, batch_first, parent, body)
    assert len(data) == record_size(len(body)) and len(data) % 8 == 0
    header = decode_record_header(data)
    assert header is not None
    assert (header.op, header.batch_first, header.parent) == (op, batch_first, parent)
    assert header.body_len == len(body) and header.checksum_body == checksum(body)
    assert header.checksum == checksum(data[16:RECORD_HEADER_SIZE])
    assert record_problem(header) is None
    assert data[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + len(body)] == body
    assert data[RECORD_HEADER_SIZE + len(body) :] == bytes(padded_size(len(body)) - len(body))


def test_record_layout_is_the_documented_one() -> None:
    body = b"hello"
    data = encode_record(7, 5, GENESIS_PARENT, body)
    # Written out by hand from docs/format.md, independently of RECORD_FIELDS.
    fields = struct.unpack_from("<16s16s16s16sQQQQII4sHBB16s", data)
    assert fields[2] == GENESIS_PARENT
    assert fields[3] == bytes(16)  # client
    assert fields[4:] == (7, 0, 0, 5, 5, 0, b"TRJR", 2, 1, 0, bytes(16))
    assert data[:16] == checksum(data[16:128]) and data[16:32] == checksum(body)
    assert len(data) == 128 + 8


def test_prepare_header_fields_round_trip() -> None:
    data = encode_record(9, 8, GENESIS_PARENT, b"cmd", view=3, client=2**100 + 5, request=77)
    header = decode_record_header(data)
    assert header is not None
    assert (header.view, header.client_id, header.request) == (3, 2**100 + 5, 77)
    assert record_problem(header) is None


@given(body=st.binary(max_size=64), position=st.data())
def test_any_bit_flip_in_a_record_is_detected(body: bytes, position: st.DataObject) -> None:
    data = bytearray(encode_record(3, 2, GENESIS_PARENT, body))
    index = position.draw(st.integers(0, len(data) - 1))
    bit = position.draw(st.integers(0, 7))
    data[index] ^= 1 << bit
    store = MemoryDirectory().open("f", create=True)
    store.write_at(0, bytes(data))
    check = check_record(SegmentReader(store, len(data)), 0, 3, GENESIS_PARENT)
    assert check.kind is not CheckKind.OK


def test_batch_encoding_chains_and_marks_its_batch() -> None:
    batch = encode_batch(10, GENESIS_PARENT, [b"a", b"", b"ccc" * 5])
    assert batch.body_lens == [1, 0, 15]
    parent = GENESIS_PARENT
    for i, offset in enumerate(batch.offsets):
        header = decode_record_header(batch.data[offset : offset + RECORD_HEADER_SIZE])
        assert header is not None
        assert (header.op, header.batch_first, header.parent) == (10 + i, 10, parent)
        parent = header.checksum
    assert batch.tip == parent
    # One batch is the concatenation of its records.
    single = b""
    parent = GENESIS_PARENT
    for i, body in enumerate([b"a", b"", b"ccc" * 5]):
        rec = encode_record(10 + i, 10, parent, body)
        parent = checksum(rec[16:128])
        single += rec
    assert single == batch.data


@given(first_op=ops, parent=parents)
def test_segment_header_round_trip(first_op: int, parent: bytes) -> None:
    data = encode_segment_header(first_op, parent)
    assert len(data) == SEGMENT_HEADER_SIZE and data[:8] == SEGMENT_MAGIC
    status, header = decode_segment_header(data)
    assert status is HeaderStatus.VALID and header is not None
    assert (header.first_op, header.parent) == (first_op, parent)


def test_segment_header_classification() -> None:
    good = encode_segment_header(1, GENESIS_PARENT)
    assert decode_segment_header(b"")[0] is HeaderStatus.INVALID
    assert decode_segment_header(bytes(80))[0] is HeaderStatus.INVALID
    assert decode_segment_header(good[:40])[0] is HeaderStatus.INVALID
    assert decode_segment_header(good[:5])[0] is HeaderStatus.INVALID
    damaged = bytearray(good)
    damaged[30] ^= 4
    assert decode_segment_header(bytes(damaged))[0] is HeaderStatus.INVALID
    assert decode_segment_header(b"SQLite format 3\x00" + bytes(64))[0] is HeaderStatus.FOREIGN
    assert decode_segment_header(b"PK")[0] is HeaderStatus.FOREIGN
    # A well-formed header of a future version.
    future = bytearray(good[:64])
    future[8:10] = (3).to_bytes(2, "little")
    future_header = bytes(future) + checksum(bytes(future))
    status, header = decode_segment_header(future_header)
    assert status is HeaderStatus.UNKNOWN_VERSION and header is not None and header.version == 3
    # A version 1 header (64 bytes, checksum over [0, 48)) is named as such.
    v1 = bytearray(good[:48])
    v1[8:10] = (1).to_bytes(2, "little")
    v1[40:48] = bytes(8)
    status, header = decode_segment_header(bytes(v1) + checksum(bytes(v1)) + bytes(16))
    assert status is HeaderStatus.UNKNOWN_VERSION and header is not None and header.version == 1


def test_segment_names() -> None:
    assert segment_name(1) == "00000000000000000001.wal"
    assert parse_segment_name(segment_name(123456789)) == 123456789
    for bad in ["1.wal", "00000000000000000000.wal", "0000000000000000000x.wal", "a.wal", ".wal"]:
        assert parse_segment_name(bad) is None
    assert parse_segment_name("00000000000000000001.wal.broken") is None


def test_probe_finds_exactly_the_aligned_valid_headers() -> None:
    a = encode_record(1, 1, GENESIS_PARENT, b"x" * 13)
    b = encode_record(2, 1, checksum(a[16:128]), b"y" * 2000)
    garbage = b"TRJR" * 50  # magic everywhere, but no valid header
    content = bytes(24) + a + garbage + b + bytes(3)
    store = MemoryDirectory().open("f", create=True)
    store.write_at(0, content)
    expected = [(24, 1), (24 + len(a) + len(garbage), 2)]
    for chunk in (8, 64, 96, 4096):
        hits = list(probe_headers(store, 0, len(content), chunk_bytes=chunk))
        assert [(h.offset, h.op) for h in hits] == expected, chunk
    # A misaligned copy is not a record position.
    store.write_at(0, bytes(3) + a)
    assert [h.offset for h in probe_headers(store, 0, 3 + len(a))] == []


def test_ring_index_keeps_the_newest_slot_count_ops() -> None:
    from trio_replica.journal.ring import RingIndex

    ring = RingIndex(5)
    ring.put_batch(1, 1, [64, 100, 200], [1, 2, 3])
    assert [ring.get(op) for op in (1, 2, 3)] == [(1, 64, 1), (1, 100, 2), (1, 200, 3)]
    assert ring.get(4) is None and ring.get(0) is None
    # A batch that wraps around the end of the ring, and one longer than it.
    ring.put_batch(4, 9, [10, 20, 30, 40], [4, 5, 6, 7])
    assert ring.get(1) is None and ring.get(2) is None  # overwritten by ops 6 and 7
    assert [ring.get(op) for op in (3, 4, 7)] == [(1, 200, 3), (9, 10, 4), (9, 40, 7)]
    ring.put_batch(8, 11, list(range(7)), list(range(7)))
    assert [ring.get(op) for op in range(8, 15)] == [None, None, *[(11, i, i) for i in range(2, 7)]]
    ring.put(15, 12, 1, 2)
    assert ring.get(15) == (12, 1, 2) and ring.get(10) is None
