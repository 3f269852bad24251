"""A guard on the nesting depth of values about to be CBOR-encoded.

Commands (encoded by ``Replica.submit``) and snapshot states (encoded by the
snapshot store) are both user values. cbor2 decodes at most about 400 levels
of nesting, and its encoder crashes the whole process (not an exception)
somewhere near 10,000 levels, so a value nested too deeply must be refused
with a typed error *before* it reaches the encoder. :func:`nesting_exceeds`
is that check; each caller raises its own error class.
"""

from __future__ import annotations

import gc
from itertools import compress
from typing import Any

import cbor2

__all__ = ["MAX_NESTING", "nesting_exceeds"]

MAX_NESTING = 256
"""The deepest nesting of containers accepted for encoding: well inside the
~400 levels cbor2 can decode, so whatever is written can be read back."""

_FLAT_TYPES = frozenset({str, bytes, int, bool, float, type(None)})
_PLAIN_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_CONTAINERS = (list, tuple, dict, set, frozenset, cbor2.CBORTag)
_SETS = (set, frozenset)


def nesting_exceeds(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether ``value`` nests containers deeper than ``limit`` levels.

    A reference cycle counts as infinitely deep, so this always terminates
    and a cyclic value is refused too. Sets count two levels (CBOR writes a
    set as a tag around an array).
    """
    # Breadth first, one level of the value at a time, with the per-item work
    # done by C loops (map, compress, gc.get_referents, which returns the items
    # of lists, tuples and sets and the keys and values of dicts): a Python
    # loop per container would cost several times the encoding itself.
    level: list[Any] = [value]
    depth = 0
    while level:
        types = set(map(type, level)) - _FLAT_TYPES
        if not types:
            return False
        tags: list[Any] = []
        if types <= _PLAIN_CONTAINERS:
            containers = list(
                compress(level, map(_PLAIN_CONTAINERS.__contains__, map(type, level)))
            )
            has_set = set in types or frozenset in types
        else:
            # Subclasses, tags and other encodable objects: the slow path.
            containers = [v for v in level if isinstance(v, _CONTAINERS)]
            tags = [v.value for v in containers if isinstance(v, cbor2.CBORTag)]
            containers = [v for v in containers if not isinstance(v, cbor2.CBORTag)]
            has_set = any(isinstance(v, _SETS) for v in containers)
        depth += 2 if has_set else 1
        if depth > limit:
            return True
        level = [*gc.get_referents(*containers), *tags]
    return False
