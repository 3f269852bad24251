"""The Counter example machine."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from trio_replica.errors import InvalidCommand
from trio_replica.machines import Counter
from trio_replica.stm import StateMachine
from trio_replica.stm.mux import StateRestoreError


def test_adds_and_returns_total() -> None:
    counter = Counter()
    assert isinstance(counter, StateMachine)
    assert (Counter.name, Counter.version) == ("counter", 1)
    assert counter.apply(1, {"add": 5}) == 5
    assert counter.apply(2, {"add": -7}) == -2
    assert counter.total == -2


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ([5], "must be a map"),
        ({"add": "5"}, "must be an integer, got str"),
        ({"add": 1.5}, "must be an integer, got float"),
        ({"add": True}, "must be an integer, got bool"),
        ({"sub": 1}, "exactly one key 'add'"),
        ({"add": 1, "note": "x"}, "exactly one key 'add'"),
    ],
)
def test_rejects_bad_commands_without_change(command: Any, reason: str) -> None:
    counter = Counter()
    counter.apply(1, {"add": 3})
    with pytest.raises(InvalidCommand) as info:
        counter.apply(2, command)
    assert reason in info.value.reason
    assert counter.total == 3


def test_snapshot_restore_round_trip() -> None:
    counter = Counter()
    counter.apply(1, {"add": 41})
    other = Counter()
    other.restore(cbor2.loads(cbor2.dumps(counter.snapshot())))
    assert other.total == 41
    assert other.apply(2, {"add": 1}) == 42


@pytest.mark.parametrize("state", [{"total": "1"}, {"sum": 1}, [1], {"total": False}])
def test_restore_refuses_malformed_state(state: Any) -> None:
    counter = Counter()
    with pytest.raises(StateRestoreError):
        counter.restore(state)
    assert counter.total == 0
