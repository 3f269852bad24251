"""The mux: routing by type, rejections, snapshot/restore by part, sibling readers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
import pytest

from trio_replica.errors import InvalidCommand, ReplicaError
from trio_replica.machines import MetadataStateMachine
from trio_replica.machines.metadata import StreamsReader, TopicsReader
from trio_replica.stm import MuxStateMachine, StateMachine, SubMachine
from trio_replica.stm.mux import Siblings, StateRestoreError, state_digest


class Bag(SubMachine):
    """A sub-machine holding a list of words; 'put' refuses words its sibling holds."""

    command_types = frozenset({"put"})

    def __init__(self, name: str, other: str) -> None:
        self.name = name  # type: ignore[misc]
        self.other = other
        self.words: list[str] = []
        self.command_types = frozenset({f"put_{name}"})  # type: ignore[misc]

    def reader(self) -> BagReader:
        return BagReader(self)

    def apply(self, op: int, command: Mapping[str, Any], siblings: Siblings) -> Any:
        word = command.get("word")
        if not isinstance(word, str):
            raise InvalidCommand("word must be a string")
        if siblings.get(self.other, BagReader).has(word):
            raise InvalidCommand(f"{word!r} is already in {self.other}")
        self.words.append(word)
        return {"op": op, "bag": self.name, "size": len(self.words)}

    def snapshot(self) -> Any:
        return list(self.words)

    def restore(self, state: Any) -> None:
        if not isinstance(state, list):
            raise StateRestoreError("bag state must be a list", part=self.name)
        self.words = list(state)


class BagReader:
    def __init__(self, bag: Bag) -> None:
        self._bag = bag

    def has(self, word: str) -> bool:
        return word in self._bag.words


def two_bags() -> MuxStateMachine:
    return MuxStateMachine([Bag("left", "right"), Bag("right", "left")])


def test_mux_is_a_state_machine() -> None:
    assert isinstance(two_bags(), StateMachine)
    assert MetadataStateMachine.name == "metadata"
    assert MetadataStateMachine.version == 1


def test_routes_by_type_and_siblings_see_each_other() -> None:
    mux = two_bags()
    assert mux.apply(1, {"type": "put_left", "word": "a"}) == {"op": 1, "bag": "left", "size": 1}
    assert mux.apply(2, {"type": "put_right", "word": "b"})["bag"] == "right"
    with pytest.raises(InvalidCommand, match="'a' is already in left"):
        mux.apply(3, {"type": "put_right", "word": "a"})
    assert mux.snapshot() == {"left": ["a"], "right": ["b"]}


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("put_left", "must be a map with a 'type' key, got str"),
        (None, "got NoneType"),
        ({}, "command has no 'type' key"),
        ({"type": b"put_left"}, "'type' must be a string, got bytes"),
        (
            {"type": "put_middle"},
            "unknown command type 'put_middle'; known types: put_left, put_right",
        ),
    ],
)
def test_malformed_commands_are_rejected(command: Any, reason: str) -> None:
    mux = two_bags()
    mux.apply(1, {"type": "put_left", "word": "a"})
    with pytest.raises(InvalidCommand) as info:
        mux.apply(2, command)
    assert reason in info.value.reason
    assert mux.snapshot() == {"left": ["a"], "right": []}


def test_construction_refuses_clashes() -> None:
    with pytest.raises(ValueError, match="two sub-machines are named 'left'"):
        MuxStateMachine([Bag("left", "x"), Bag("left", "y")])
    a, b = Bag("a", "b"), Bag("b", "a")
    b.command_types = frozenset({"put_a"})  # type: ignore[misc]
    with pytest.raises(ValueError, match="'put_a' is claimed by both 'a' and 'b'"):
        MuxStateMachine([a, b])


def test_restore_distributes_parts() -> None:
    mux = two_bags()
    mux.restore({"left": ["x", "y"], "right": ["z"]})
    assert mux.parts["left"].snapshot() == ["x", "y"]
    assert mux.parts["right"].snapshot() == ["z"]
    # Readers created at construction read the restored state.
    with pytest.raises(InvalidCommand, match="already in right"):
        mux.apply(1, {"type": "put_left", "word": "z"})


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ([], "state must be a map"),
        ({"left": []}, "missing: ['right']"),
        ({"left": [], "right": [], "middle": []}, "unexpected: ['middle']"),
    ],
)
def test_restore_refuses_a_foreign_state(state: Any, message: str) -> None:
    mux = two_bags()
    with pytest.raises(StateRestoreError) as info:
        mux.restore(state)
    assert message in str(info.value)
    assert isinstance(info.value, ReplicaError)


def test_siblings_lookup_errors_are_wiring_bugs() -> None:
    machine = MetadataStateMachine()
    siblings = Siblings({name: part.reader() for name, part in machine.parts.items()})
    assert siblings.names() == ["streams", "topics", "users", "consumer_groups"]
    assert isinstance(siblings.get("streams", StreamsReader), StreamsReader)
    with pytest.raises(LookupError, match="no sub-machine named 'partitions'"):
        siblings.get("partitions", StreamsReader)
    with pytest.raises(TypeError, match="not a TopicsReader"):
        siblings.get("streams", TopicsReader)


def test_readers_expose_no_mutators() -> None:
    # Readers are the only handle a sub-machine gets on its siblings; they
    # carry query methods only, so no part can change another's table.
    machine = MetadataStateMachine()
    for part in machine.parts.values():
        reader = part.reader()
        public = {n for n in dir(reader) if not n.startswith("_")}
        assert not public & {"apply", "restore", "snapshot"}, (part.name, public)


def test_state_digest_is_canonical() -> None:
    assert state_digest({"a": 1, "b": [1, 2]}) == state_digest({"b": [1, 2], "a": 1})
    assert state_digest({"a": 1}) != state_digest({"a": 2})
    mux = two_bags()
    mux.apply(1, {"type": "put_left", "word": "a"})
    assert mux.state_digest() == state_digest(cbor2.loads(cbor2.dumps(mux.snapshot())))
