"""Prepare headers, view state bytes, the restart decision table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_replica.cluster import (
    ROOT,
    Operation,
    Status,
    ViewState,
    decode_view_state,
    encode_view_state,
    make_header,
    restart_decision,
)
from trio_replica.cluster.header import HEADER_SIZE, decode_header, encode_header
from trio_replica.errors import CorruptionError

headers = st.builds(
    lambda parent, op, view, client, request, operation, body: make_header(
        parent=parent,
        op=op,
        view=view,
        client=client,
        request=request,
        operation=operation,
        body=body,
    ),
    st.binary(min_size=16, max_size=16),
    st.integers(1, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**64 - 1),
    st.sampled_from([Operation.REGISTER, Operation.REQUEST]),
    st.binary(max_size=64),
)


@given(headers)
def test_header_round_trips_and_verifies(header: object) -> None:
    data = encode_header(header)  # type: ignore[arg-type]
    assert len(data) == HEADER_SIZE
    assert decode_header(data) == header
    assert header.valid()  # type: ignore[attr-defined]


@given(headers, st.integers(0, HEADER_SIZE * 8 - 1))
def test_any_flipped_header_bit_is_refused(header: object, bit: int) -> None:
    data = bytearray(encode_header(header))  # type: ignore[arg-type]
    data[bit // 8] ^= 1 << (bit % 8)
    assert decode_header(bytes(data)) is None


def test_body_checksum_binds_the_body() -> None:
    h = make_header(
        parent=ROOT.checksum,
        op=1,
        view=0,
        client=1,
        request=1,
        operation=Operation.REQUEST,
        body=b"abc",
    )
    assert h.valid_body(b"abc") and not h.valid_body(b"abd") and not h.valid_body(b"ab")


def test_the_identity_includes_every_field() -> None:
    base = dict(
        parent=ROOT.checksum,
        op=1,
        view=0,
        client=1,
        request=1,
        operation=Operation.REQUEST,
        body=b"x",
    )
    first = make_header(**base)  # type: ignore[arg-type]
    for field, other in [
        ("op", 2),
        ("view", 1),
        ("client", 2),
        ("request", 2),
        ("body", b"y"),
        ("parent", bytes(16)),
        ("operation", Operation.REGISTER),
    ]:
        assert make_header(**(base | {field: other})).checksum != first.checksum  # type: ignore[arg-type]


view_states = st.builds(
    lambda view, lag, commit, checkpoint, hs, rejoining: ViewState(
        view, view - lag, commit, checkpoint, tuple(hs), rejoining=rejoining
    ),
    st.integers(0, 2**31),
    st.integers(0, 5),
    st.integers(0, 2**63),
    st.integers(0, 2**63),
    st.lists(headers, max_size=4),
    st.booleans(),
).filter(lambda s: s.log_view >= 0)


@given(view_states)
def test_view_state_round_trips(state: ViewState) -> None:
    assert decode_view_state(encode_view_state(state)) == state


@given(view_states, st.data())
def test_damaged_view_state_refuses_to_open(state: ViewState, data: st.DataObject) -> None:
    raw = bytearray(encode_view_state(state))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CorruptionError):
        decode_view_state(bytes(raw), path="superblock")


def test_truncated_view_state_refuses_to_open() -> None:
    raw = encode_view_state(ViewState(3, 2, 10, 0, ()))
    for cut in range(len(raw)):
        with pytest.raises(CorruptionError):
            decode_view_state(raw[:cut])


def test_view_state_order() -> None:
    old = ViewState(4, 3, 10)
    assert ViewState(5, 3, 10).advances(old)
    assert not ViewState(3, 3, 10).advances(old)
    assert not ViewState(4, 2, 10).advances(old)
    assert not ViewState(4, 3, 9).advances(old)


@pytest.mark.parametrize(
    ("count", "replica", "state", "uncertain", "expected"),
    [
        (1, 0, ViewState(0, 0), True, (Status.NORMAL, 0, 1)),
        (3, 1, ViewState(4, 4), True, (Status.RECOVERING_HEAD, 4, 2)),
        (3, 1, ViewState(5, 4), False, (Status.VIEW_CHANGE, 5, 3)),
        (3, 1, ViewState(4, 3), False, (Status.VIEW_CHANGE, 5, 4)),  # was becoming primary
        (3, 1, ViewState(4, 4), False, (Status.VIEW_CHANGE, 5, 4)),  # 4 % 3 == 1: was primary
        (3, 2, ViewState(4, 4), False, (Status.NORMAL, 4, 5)),
        (5, 4, ViewState(9, 9), False, (Status.VIEW_CHANGE, 10, 4)),
        (5, 0, ViewState(9, 9), False, (Status.NORMAL, 9, 5)),
        (3, 1, ViewState(4, 4, rejoining=True), False, (Status.RECOVERING_HEAD, 4, 6)),
        (3, 1, ViewState(4, 4, rejoining=True), True, (Status.RECOVERING_HEAD, 4, 6)),
        (1, 0, ViewState(0, 0, rejoining=True), False, (Status.NORMAL, 0, 1)),
    ],
)
def test_restart_decision_table_older_rows(
    count: int, replica: int, state: ViewState, uncertain: bool, expected: tuple[Status, int, int]
) -> None:
    """The table with ``Rules.restart_recovers`` off (the broken variant)."""
    d = restart_decision(
        replica_count=count,
        replica=replica,
        state=state,
        head_uncertain=uncertain,
        recovers=False,
    )
    assert (d.status, d.view, d.row) == expected


@pytest.mark.parametrize(
    ("count", "replica", "state", "uncertain", "expected"),
    [
        (1, 0, ViewState(0, 0), True, (Status.NORMAL, 0, 1)),
        (3, 1, ViewState(4, 4), True, (Status.RECOVERING_HEAD, 4, 2)),
        (3, 1, ViewState(5, 4), False, (Status.RECOVERING, 5, 3)),
        (3, 1, ViewState(4, 3), False, (Status.RECOVERING, 4, 3)),
        (3, 1, ViewState(4, 4), False, (Status.RECOVERING, 4, 4)),  # 4 % 3 == 1: was primary
        (3, 2, ViewState(4, 4), False, (Status.RECOVERING, 4, 5)),
        (5, 4, ViewState(9, 9), False, (Status.RECOVERING, 9, 4)),
        (5, 0, ViewState(9, 9), False, (Status.RECOVERING, 9, 5)),
        (3, 1, ViewState(4, 4, rejoining=True), False, (Status.RECOVERING_HEAD, 4, 6)),
    ],
)
def test_restart_decision_table(
    count: int, replica: int, state: ViewState, uncertain: bool, expected: tuple[Status, int, int]
) -> None:
    d = restart_decision(
        replica_count=count, replica=replica, state=state, head_uncertain=uncertain
    )
    assert (d.status, d.view, d.row) == expected


@given(st.sampled_from([1, 3, 5]), st.data(), st.integers(0, 50), st.integers(0, 3), st.booleans())
def test_every_restart_maps_to_exactly_one_row(
    count: int, data: st.DataObject, view: int, lag: int, uncertain: bool
) -> None:
    replica = data.draw(st.integers(0, count - 1))
    state = ViewState(view, max(0, view - lag), rejoining=data.draw(st.booleans()))
    recovers = data.draw(st.booleans())
    d = restart_decision(
        replica_count=count,
        replica=replica,
        state=state,
        head_uncertain=uncertain,
        recovers=recovers,
    )
    assert d.row in {1, 2, 3, 4, 5, 6}
    if state.rejoining and count > 1:
        assert d.status == Status.RECOVERING_HEAD  # it never votes
    assert d.view >= state.view
    if d.row == 4 and not recovers:
        assert d.view % count != replica  # it joins as a backup
    if recovers and d.row in {3, 4, 5}:
        assert (d.status, d.view) == (Status.RECOVERING, state.view)  # asks before it acts
