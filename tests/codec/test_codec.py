"""One encoding policy for commands and snapshots (trio_replica.codec).

Every value is refused with a typed error before anything is written, or
proven decodable by the decoder and limits that recovery uses. The inputs
are the ones a replay of public bug reports found: containers the first
nesting guard did not count (frozendict, MappingProxyType, UserDict,
UserList, deque, any Mapping), a tag that encodes but cannot be decoded,
and bytes after the value.
"""

from __future__ import annotations

from collections import UserDict, UserList, deque
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_replica import CommandEncodingError, StateMachineError, open_replica
from trio_replica.codec import (
    DECODE_MAX_DEPTH,
    MAX_NESTING,
    UndecodableError,
    UnencodableError,
    decode,
    encode,
    nesting_exceeds,
)
from trio_replica.machines import Counter
from trio_replica.storage import MemoryDirectory


class PlainMapping(Mapping[Any, Any]):
    """A user Mapping that is none of the built-in ones: cbor2 encodes it as a map."""

    def __init__(self, data: dict[Any, Any]) -> None:
        self._data = data

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "list": lambda v: [v],
    "tuple": lambda v: (v,),
    "dict": lambda v: {"k": v},
    "frozendict": lambda v: cbor2.frozendict({"k": v}),
    "MappingProxyType": lambda v: MappingProxyType({"k": v}),
    "UserDict": lambda v: UserDict({"k": v}),
    "UserList": lambda v: UserList([v]),
    "deque": lambda v: deque([v]),
    "Mapping": lambda v: PlainMapping({"k": v}),
    "CBORTag": lambda v: cbor2.CBORTag(4000, v),
}


def nest(wrap: Callable[[Any], Any], depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = wrap(value)
    return value


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_nesting_guard_counts_every_container_the_encoder_recurses_into(kind: str) -> None:
    wrap = WRAPPERS[kind]
    assert not nesting_exceeds(nest(wrap, MAX_NESTING), MAX_NESTING)
    assert nesting_exceeds(nest(wrap, MAX_NESTING + 1), MAX_NESTING)
    # 300 levels: accepted by the old guard for most of these types.
    with pytest.raises(UnencodableError, match="nested deeper"):
        encode(nest(wrap, 300))
    body, value = encode(nest(wrap, MAX_NESTING))
    assert decode(body) == value


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_very_deep_values_are_refused_not_a_crash(kind: str) -> None:
    """30,000 levels of frozendict crashed the process inside cbor2's encoder."""
    with pytest.raises(UnencodableError, match="nested deeper"):
        encode(nest(WRAPPERS[kind], 30_000))


def test_a_cycle_through_a_user_container_is_refused() -> None:
    inner: list[Any] = []
    value = UserDict({"k": deque([inner])})
    inner.append(value)
    with pytest.raises(UnencodableError, match="reference cycle"):
        encode(value)


@pytest.mark.parametrize(
    "value",
    [cbor2.CBORTag(2, "x"), cbor2.CBORTag(1, "not a time"), cbor2.CBORTag(258, 5)],
    ids=["bignum around a string", "epoch time around a string", "set around an int"],
)
def test_a_value_that_encodes_but_does_not_decode_is_refused(value: Any) -> None:
    assert cbor2.dumps(value)  # cbor2 writes it...
    with pytest.raises(UnencodableError, match="does not decode back"):
        encode(value)  # ...but nothing could read it back


def test_trailing_bytes_are_refused() -> None:
    assert decode(b"\x01") == 1
    with pytest.raises(UndecodableError, match="1 bytes after the CBOR value"):
        decode(b"\x01\x02")


def test_decoder_depth_limit_is_the_stated_one() -> None:
    assert decode(b"\x81" * DECODE_MAX_DEPTH + b"\x01") is not None
    with pytest.raises(UndecodableError):
        decode(b"\x81" * (DECODE_MAX_DEPTH + 1) + b"\x01")


def test_a_user_container_that_raises_while_walked_is_refused() -> None:
    class Broken(PlainMapping):
        def __iter__(self) -> Iterator[Any]:
            raise RuntimeError("no")

    with pytest.raises(UnencodableError, match="RuntimeError"):
        encode(Broken({}))


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.builds(lambda xs: deque(xs), st.lists(inner, max_size=3)),
        st.builds(lambda d: MappingProxyType(d), st.dictionaries(st.text(max_size=3), inner)),
    ),
    max_leaves=30,
)


@given(values)
def test_whatever_encode_accepts_decode_reads_back(value: Any) -> None:
    body, decoded = encode(value)
    assert decode(body) == decoded


async def test_deep_frozendict_command_is_refused_before_journaling() -> None:
    async with open_replica(MemoryDirectory(), Counter()) as replica:
        for depth in (300, 30_000):
            with pytest.raises(CommandEncodingError, match="nested deeper"):
                await replica.submit(nest(WRAPPERS["frozendict"], depth))
        with pytest.raises(CommandEncodingError, match="does not decode back"):
            await replica.submit(cbor2.CBORTag(2, "x"))
        assert (await replica.execute({"add": 1})).op == 1


class DeepSnapshotCounter(Counter):
    """A counter whose snapshot() returns a state nested 450 frozendicts deep:
    cbor2 encodes it, its own decoder refuses it (deeper than 400)."""

    name: ClassVar[str] = Counter.name

    def snapshot(self) -> Any:
        return nest(lambda v: cbor2.frozendict({"k": v}), 450)


async def test_unreadable_snapshot_is_never_persisted_nor_compacts_the_journal() -> None:
    """Before: the snapshot was written, the journal compacted behind it, and
    the directory never opened again. Now the replica stops at the snapshot
    and every acked op is still recoverable from the journal."""
    directory = MemoryDirectory()
    acked = 0
    with pytest.raises(StateMachineError, match="nested deeper"):
        async with open_replica(
            directory, DeepSnapshotCounter(), snapshot_every=5, slot_count=64, segment_bytes=4096
        ) as replica:
            for _ in range(40):
                await replica.submit({"add": 1})
                acked += 1
    assert acked >= 5
    snapshots = directory.subdir("snapshots") if directory.exists("snapshots") else None
    if snapshots is not None:
        assert not [n for n in snapshots.listdir() if n.endswith(".snapshot")]
    async with open_replica(directory, Counter()) as replica:
        assert replica.recovery.snapshot_op == 0
        assert replica.applied_op >= acked
        assert replica.machine.snapshot() == {"total": replica.applied_op}
