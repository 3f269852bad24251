"""CBOR-encodable snapshot states for tests: a Hypothesis strategy and a strict equality."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

# Integers well beyond 64 bits in both directions (CBOR bignums, tags 2 and 3),
# next to the ordinary range and the 64-bit edges.
big_ints = (
    st.integers()
    | st.integers(min_value=2**64 - 2, max_value=2**64 + 2)
    | st.integers(min_value=-(2**64) - 2, max_value=-(2**64) + 2)
    | st.integers(min_value=2**64, max_value=2**300)
    | st.integers(min_value=-(2**300), max_value=-(2**64) - 1)
)

scalars = (
    st.none()
    | st.booleans()
    | big_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.nan, -0.0, math.inf, -math.inf])
    | st.text()
    | st.binary(max_size=64)
)

map_keys = st.text(max_size=8) | st.integers() | st.binary(max_size=8)

states = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(map_keys, children, max_size=6)
    ),
    max_leaves=40,
)


def same(a: Any, b: Any) -> bool:
    """Structural equality that also compares types (True is not 1), treats
    NaN as equal to NaN and tells 0.0 from -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keys_b = {(type(k), k): k for k in b}
        for key, value in a.items():
            if (type(key), key) not in keys_b:
                return False
            if not same(value, b[keys_b[(type(key), key)]]):
                return False
        return True
    return bool(a == b)
