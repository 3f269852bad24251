"""Property tests: persist/load round trips and the pure format functions."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
import trio
from cbor2 import CBORTag
from hypothesis import given
from hypothesis import strategies as st
from snapshot_values import same, states

from trio_replica.coordinator import (
    Snapshot,
    SnapshotEncodeError,
    SnapshotFormatError,
    SnapshotStore,
)
from trio_replica.coordinator.snapshot_format import (
    CHECKSUM_SIZE,
    FIXED_HEADER_SIZE,
    MAX_MACHINE_NAME_BYTES,
    MAX_NESTING,
    MAX_OP,
    check_machine,
    decode_body,
    encode_header,
    encode_state,
    parse_fixed_header,
    parse_snapshot_name,
    parse_temp_name,
    snapshot_name,
    temp_name,
    verify_checksum,
)
from trio_replica.storage import MemoryDirectory


async def round_trip(op: int, state: Any, name: str, version: int) -> Snapshot | None:
    disk = MemoryDirectory()
    await SnapshotStore(disk, machine_name=name, machine_version=version).persist(
        Snapshot(op, state)
    )
    return await SnapshotStore(disk, machine_name=name, machine_version=version).load_latest()


@given(
    state=states,
    op=st.integers(0, MAX_OP),
    name=st.text(max_size=20),
    version=st.integers(0, 2**32 - 1),
)
def test_persist_then_load_in_a_new_store_returns_the_same_state(
    state: Any, op: int, name: str, version: int
) -> None:
    loaded = trio.run(round_trip, op, state, name, version)
    assert loaded is not None
    assert loaded.op == op
    assert same(loaded.state, state), (loaded.state, state)


def test_the_state_strategy_reaches_the_interesting_values() -> None:
    # Guard against a strategy that silently stopped generating the values
    # the round trip is meant to cover.
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, bool):
            found.add("bool")
        elif isinstance(value, int) and not -(2**64) <= value < 2**64:
            found.add("bignum+" if value > 0 else "bignum-")
        elif isinstance(value, float) and value != value:
            found.add("nan")
        elif isinstance(value, bytes):
            found.add("bytes")
        elif isinstance(value, dict):
            found.add("map")
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            found.add("list")
            for item in value:
                walk(item)

    @given(states)
    def collect(state: Any) -> None:
        walk(state)

    collect()
    assert {"bool", "bignum+", "bignum-", "nan", "bytes", "map", "list"} <= found


@given(
    op=st.integers(0, MAX_OP),
    name=st.text(max_size=30),
    version=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=200),
)
def test_header_round_trip(op: int, name: str, version: int, body: bytes) -> None:
    header = encode_header(op=op, machine_name=name, machine_version=version, body=body)
    data = header + body
    fixed = parse_fixed_header(data[:FIXED_HEADER_SIZE], file_size=len(data))
    assert (fixed.op, fixed.machine_version, fixed.body_size) == (op, version, len(body))
    assert fixed.file_size == len(data)
    prefix = data[: fixed.checksum_offset]
    checksum = data[fixed.checksum_offset : fixed.body_offset]
    assert len(checksum) == CHECKSUM_SIZE
    got_name = verify_checksum(fixed, prefix, checksum, [data[fixed.body_offset :]])
    assert got_name == name
    check_machine(fixed, got_name, expected_op=op, expected_name=name, expected_version=version)


def test_encode_header_refuses_out_of_range_fields() -> None:
    for kwargs in (
        {"op": -1},
        {"op": MAX_OP + 1},
        {"machine_version": 2**32},
        {"machine_name": "x" * (MAX_MACHINE_NAME_BYTES + 1)},
    ):
        args: dict[str, Any] = {"op": 1, "machine_name": "m", "machine_version": 0, **kwargs}
        with pytest.raises(ValueError):
            encode_header(body=b"", **args)


@given(op=st.integers(0, 10**20 - 1))
def test_file_names_round_trip(op: int) -> None:
    assert parse_snapshot_name(snapshot_name(op)) == op
    assert parse_temp_name(temp_name(op)) == op
    assert parse_snapshot_name(temp_name(op)) is None
    assert parse_temp_name(snapshot_name(op)) is None


@pytest.mark.parametrize(
    "name",
    ["1.snapshot", "0000000000000000000a.snapshot", "00000000000000000001.snapshot.bak", "LOCK"],
)
def test_other_names_are_not_snapshots(name: str) -> None:
    assert parse_snapshot_name(name) is None
    assert parse_temp_name(name) is None


@given(state=states)
def test_encode_then_decode_body(state: Any) -> None:
    assert same(decode_body(encode_state(state, op=1)), state)


@given(data=st.binary(max_size=64))
def test_decoding_arbitrary_bytes_fails_only_with_a_format_error(data: bytes) -> None:
    try:
        decode_body(data)
    except SnapshotFormatError as exc:
        assert exc.reason.startswith("undecodable body")


@given(data=st.binary(max_size=80), size=st.integers(0, 2**70))
def test_parsing_arbitrary_headers_fails_only_with_a_format_error(data: bytes, size: int) -> None:
    try:
        fixed = parse_fixed_header(data, file_size=size)
    except SnapshotFormatError:
        return
    # Whatever it accepted is consistent with the real size.
    assert fixed.file_size == size


def wrap(kind: str, value: Any) -> Any:
    if kind == "list":
        return [value]
    if kind == "tuple":
        return (value, 1)
    if kind == "dict":
        return {"k": value}
    if kind == "ordered":
        return OrderedDict(k=value)
    if kind == "tag":
        return CBORTag(4000, value)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["list", "tuple", "dict", "ordered", "tag"])
@pytest.mark.parametrize("leaf", [0, 2**80, "text"], ids=["int", "bignum", "text"])
def test_nesting_limit_is_exact_and_everything_allowed_reads_back(kind: str, leaf: Any) -> None:
    for depth in (MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1):
        value: Any = leaf
        for _ in range(depth):
            value = wrap(kind, value)
        if depth <= MAX_NESTING:
            decode_body(encode_state(value, op=1))  # never a snapshot that cannot be read
        else:
            with pytest.raises(SnapshotEncodeError):
                encode_state(value, op=1)


def test_sets_count_two_levels() -> None:
    value: Any = frozenset({1})
    for _ in range(MAX_NESTING // 2 - 1):
        value = frozenset({value})
    decode_body(encode_state(value, op=1))
    with pytest.raises(SnapshotEncodeError):
        encode_state(frozenset({value}), op=1)
    # Mixed with other containers: tuples inside sets inside tuples.
    mixed: Any = 0
    for i in range(MAX_NESTING):
        mixed = (mixed,) if i % 3 else frozenset({mixed})
    with pytest.raises(SnapshotEncodeError):
        encode_state(mixed, op=1)
