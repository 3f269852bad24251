"""The one CBOR policy for every user value the replica writes: commands and snapshot states.

The rule (invariant 16, docs/invariants.md):
every value is either refused with a typed error before anything is written,
or proven decodable by the very decoder, with the very limits, that recovery
uses. :func:`encode` is the only way a user value becomes bytes on disk and
:func:`decode` the only way such bytes become a value again.

Three steps, in this order, each for a reason:

1. :func:`nesting_exceeds` walks the value the way cbor2's encoder does (any
   ``Mapping``, any ``Sequence`` or ``deque``, sets, ``CBORTag``) and refuses
   anything nested deeper than :data:`MAX_NESTING`. It must run first: the
   encoder recurses on the C stack and crashes the process (not an
   exception) some thousands of levels deep.
2. cbor2 encodes.
3. :func:`decode` decodes the bytes back. Some values encode but cannot be
   decoded (``CBORTag(2, "x")``: a bignum tag around a string), and the
   decoder has its own depth limit; only decoding proves a snapshot can be
   restored. The decoded value is returned, so a caller can use the value
   that replay will see (``Replica.submit`` applies it).

:func:`encode_bytes` is :func:`encode` for a caller that does not use the
decoded value (a snapshot state). It proves decodability by construction
where it can: when step 1 met only the plain built-in types (``dict``,
``list``, ``tuple``, ``set``, ``frozenset``, ``str``, ``bytes``, ``int``,
``float``, ``bool``, ``None``, exactly those types, no subclasses) within
:data:`MAX_NESTING`, cbor2 writes them with its own major types and tags
(bignums, sets) that its decoder reads back within :data:`DECODE_MAX_DEPTH`,
so step 3 is skipped; any other type anywhere in the value, and step 3 runs.

The trailing-bytes policy is one: a body is exactly one CBOR value, and
bytes after it make the body undecodable.
"""

from __future__ import annotations

import gc
import io
from collections import deque
from collections.abc import Mapping, Sequence, Set
from itertools import compress
from typing import Any

import cbor2

from .errors import ReplicaError

__all__ = [
    "DECODE_MAX_DEPTH",
    "MAX_NESTING",
    "UndecodableError",
    "UnencodableError",
    "decode",
    "encode",
    "encode_bytes",
    "nesting_exceeds",
]

DECODE_MAX_DEPTH = 400
"""The deepest container nesting :func:`decode` accepts (cbor2's own default,
stated here so that writing and reading agree on one number)."""

MAX_NESTING = 256
"""The deepest nesting of containers :func:`encode` accepts: well inside
:data:`DECODE_MAX_DEPTH`, leaving room for the few levels a scalar adds (a
tag around an array), so whatever passes the guard decodes."""


class UnencodableError(ReplicaError):
    """A value cannot be written: it is not CBOR-encodable, nests deeper than
    :data:`MAX_NESTING` (or holds a reference cycle), or its encoding does not
    decode back. ``reason`` says which. Callers wrap it in their own error
    (``CommandEncodingError``, ``SnapshotEncodeError``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UndecodableError(ReplicaError):
    """Bytes are not exactly one CBOR value within :data:`DECODE_MAX_DEPTH`
    (malformed, too deep, a tag whose value does not fit it, or trailing
    bytes). ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def encode_bytes(value: Any) -> bytes:
    """``encode(value)[0]``, without decoding a value made of plain built-in types.

    Refuses exactly what :func:`encode` refuses (:class:`UnencodableError`):
    the round-trip decode is skipped only for values whose every object is
    one of the plain types of the module docstring, whose encoding decodes
    by construction (the codec tests check this over generated values).
    """
    body, plain = _encode_walked(value)
    if not plain:
        try:
            decode(body)
        except UndecodableError as exc:
            raise UnencodableError(
                f"its CBOR encoding does not decode back ({exc.reason})"
            ) from exc
    return body


def _encode_walked(value: Any) -> tuple[bytes, bool]:
    """Steps 1 and 2: the bytes, and whether the value holds plain types only."""
    try:
        too_deep, plain = _walk(value, MAX_NESTING)
    except MemoryError:
        raise
    except Exception as exc:
        # A user Mapping or Sequence whose iteration raises.
        raise UnencodableError(f"cannot be walked ({type(exc).__name__}: {exc})") from exc
    if too_deep:
        raise UnencodableError(
            f"nested deeper than {MAX_NESTING} levels (or contains a reference cycle)"
        )
    try:
        body = bytes(cbor2.dumps(value))
    except MemoryError:
        raise
    except Exception as exc:
        # cbor2 raises CBOREncodeError for unsupported types, but a value's own
        # hooks (__iter__, __getitem__, ...) may raise anything.
        raise UnencodableError(f"cannot be CBOR-encoded ({type(exc).__name__}: {exc})") from exc
    return body, plain


def encode(value: Any) -> tuple[bytes, Any]:
    """Return ``(body, decoded)``: ``value``'s CBOR bytes and those bytes decoded.

    Raises :class:`UnencodableError` (the underlying error as ``__cause__``)
    when the value is refused by any of the three steps of the module
    docstring. ``MemoryError`` propagates unchanged.
    """
    body, _ = _encode_walked(value)
    try:
        decoded = decode(body)
    except UndecodableError as exc:
        raise UnencodableError(f"its CBOR encoding does not decode back ({exc.reason})") from exc
    return body, decoded


def decode(body: bytes | memoryview) -> Any:
    """Decode ``body``, which must be exactly one CBOR value.

    Used for every body the replica reads back: journal commands at replay
    and snapshot states at load. Memory stays bounded by the body's size:
    the decoder reads from a buffer of known size and cbor2 never
    pre-allocates containers from a length it read. Raises
    :class:`UndecodableError`; ``MemoryError`` propagates unchanged.
    """
    stream = io.BytesIO(body)  # shares the bytes, no copy
    try:
        value = cbor2.CBORDecoder(stream, max_depth=DECODE_MAX_DEPTH).decode()
    except MemoryError:
        raise
    except Exception as exc:
        # Premature end, bad UTF-8, an unknown simple value, nesting too
        # deep, a tag whose value does not fit it: all the same to a reader.
        raise UndecodableError(f"{type(exc).__name__}: {exc}") from exc
    trailing = len(body) - stream.tell()
    if trailing:
        raise UndecodableError(f"{trailing} bytes after the CBOR value")
    return value


_FLAT_TYPES = frozenset({str, bytes, int, bool, float, type(None)})
_PLAIN_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_SCALARS = (str, bytes, bytearray, memoryview, int, float, complex)


def nesting_exceeds(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether ``value`` nests containers deeper than ``limit`` levels.

    Containers are what cbor2's encoder recurses into: every ``Mapping``
    (``dict``, ``MappingProxyType``, ``UserDict``, ``cbor2.frozendict``, ...),
    every ``Sequence`` that is not a string (``list``, ``tuple``,
    ``UserList``, ...), ``deque``, sets, and ``CBORTag`` values. A reference
    cycle counts as infinitely deep, so this always terminates and a cyclic
    value is refused too. Sets count two levels (CBOR writes a set as a tag
    around an array). May raise whatever a user container's iteration raises.
    """
    return _walk(value, limit)[0]


def _walk(value: Any, limit: int) -> tuple[bool, bool]:
    """``(nesting_exceeds(value, limit), plain)``: ``plain`` is whether every
    object the walk met is of a plain built-in type (meaningful only when
    the value is not too deep)."""
    # Breadth first, one level of the value at a time. For the plain built-in
    # containers the per-item work is done by C loops (map, compress,
    # gc.get_referents returns the items of lists, tuples and sets and the
    # keys and values of dicts): a Python loop per container would cost
    # several times the encoding itself.
    level: list[Any] = [value]
    depth = 0
    plain = True
    while level:
        types = set(map(type, level)) - _FLAT_TYPES
        if not types:
            return False, plain
        if types <= _PLAIN_CONTAINERS:
            containers = list(
                compress(level, map(_PLAIN_CONTAINERS.__contains__, map(type, level)))
            )
            depth += 2 if (set in types or frozenset in types) else 1
            if depth > limit:
                return True, plain
            level = gc.get_referents(*containers)
            continue
        plain = False
        children, has_container, has_set = _children_slow(level)
        if not has_container:
            return False, plain
        depth += 2 if has_set else 1
        if depth > limit:
            return True, plain
        level = children
    return False, plain


def _children_slow(level: list[Any]) -> tuple[list[Any], bool, bool]:
    """The next level below ``level``, visiting children as the encoder does.

    Subclasses, tags, ``Mapping`` and ``Sequence`` implementations: anything
    that is not a plain built-in container. Returns ``(children,
    any_container, any_set)``.
    """
    children: list[Any] = []
    has_container = has_set = False
    for item in level:
        if isinstance(item, _SCALARS) or item is None:
            continue
        if isinstance(item, cbor2.CBORTag):
            children.append(item.value)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                children.append(key)
                children.append(child)
        elif isinstance(item, Set):
            has_set = True
            children.extend(item)
        elif isinstance(item, (Sequence, deque)):
            children.extend(item)
        else:
            # A scalar cbor2 knows (datetime, Decimal, UUID, ...) adds at
            # most a tag and a small array; anything else it refuses.
            continue
        has_container = True
    return children, has_container, has_set
