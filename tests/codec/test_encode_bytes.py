"""encode_bytes: encode without the round-trip decode, only where decoding is certain.

A snapshot state is encoded with ``codec.encode_bytes``, which skips the
decode-back for values made only of plain built-in types. These tests show
that (1) every generated plain value, at every depth the guard allows and
with every scalar cbor2 writes specially (bignums, NaN, infinities, sets as
tags, tuple and frozenset map keys), does decode with recovery's decoder,
(2) anything else still takes the decode-back and is refused like
``encode`` refuses it, and (3) the bytes are ``encode``'s.
"""

from __future__ import annotations

import enum
from collections import UserDict
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_replica.codec import (
    MAX_NESTING,
    UnencodableError,
    _walk,
    decode,
    encode,
    encode_bytes,
)

keys = st.one_of(
    st.text(max_size=6),
    st.integers(),
    st.binary(max_size=6),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.frozensets(st.integers(), max_size=3),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),  # bignums too
    st.floats(),  # NaN and infinities too
    st.text(),
    st.binary(),
)
plain_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=4),
        st.sets(keys, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=40,
)


@given(plain_values)
def test_plain_values_decode_without_the_round_trip(value: Any) -> None:
    too_deep, plain = _walk(value, MAX_NESTING)
    assert not too_deep and plain
    body = encode_bytes(value)
    assert body == encode(value)[0] == cbor2.dumps(value)
    decode(body)  # the step encode_bytes skipped: it must succeed


@pytest.mark.parametrize("kind", ["list", "set", "dict"])
def test_plain_values_at_the_nesting_limit_decode(kind: str) -> None:
    value: Any = 1
    levels = MAX_NESTING // 2 if kind == "set" else MAX_NESTING
    for _ in range(levels):
        if kind == "list":
            value = [value]
        elif kind == "dict":
            value = {"k": value}
        else:
            value = {frozenset({1})} if value == 1 else [value]  # a set at the bottom
    assert _walk(value, MAX_NESTING) == (False, True)
    assert decode(encode_bytes(value)) is not None


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        cbor2.CBORTag(2, "x"),
        [cbor2.CBORTag(1, "not a time")],
        {"k": cbor2.CBORTag(258, 5)},
        [Colour.RED],
        UserDict({"k": 1}),
        {"k": cbor2.frozendict({"a": 1})},
    ],
    ids=["tag", "tag in list", "tag in dict", "int subclass", "user dict", "frozendict"],
)
def test_anything_else_takes_the_round_trip(value: Any) -> None:
    assert _walk(value, MAX_NESTING)[1] is False
    try:
        expected = encode(value)[0]
    except UnencodableError as exc:
        with pytest.raises(UnencodableError) as raised:
            encode_bytes(value)
        assert raised.value.reason == exc.reason
    else:
        assert encode_bytes(value) == expected


def test_encode_bytes_refuses_what_encode_refuses() -> None:
    deep: Any = 1
    for _ in range(MAX_NESTING + 1):
        deep = [deep]
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    for value in (deep, cyclic, object(), "\ud800"):
        with pytest.raises(UnencodableError):
            encode(value)
        with pytest.raises(UnencodableError):
            encode_bytes(value)
