"""State machines and checks shared by the replica tests.

``Ledger`` records the ordered history of accepted ops compactly (two
parallel int lists), so a test can check that a recovered state is exactly
"ops 1..k applied in order" and that every acknowledged (op, value) is in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from trio_replica import InvalidCommand, StateMachine


class Ledger(StateMachine):
    """Appends ``(op, value)`` for every accepted ``{"v": int}`` command.

    ``{"reject": reason}`` is rejected with InvalidCommand (no state change).
    ``{"boom": ...}`` raises ZeroDivisionError (a state machine bug). An op
    that is not greater than the last accepted one raises RuntimeError, so
    reordered or repeated ops can never go unnoticed.
    """

    name: ClassVar[str] = "ledger"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.ops: list[int] = []
        self.values: list[int] = []

    def apply(self, op: int, command: Any) -> int:
        if not isinstance(command, Mapping):
            raise InvalidCommand(f"not a map: {command!r}")
        if "reject" in command:
            raise InvalidCommand(f"rejected: {command['reject']}")
        if "boom" in command:
            raise ZeroDivisionError("the ledger has a bug")
        value = command.get("v")
        if not isinstance(value, int):
            raise InvalidCommand(f"'v' must be an int, got {value!r}")
        if self.ops and op <= self.ops[-1]:
            raise RuntimeError(f"op {op} applied after op {self.ops[-1]}")
        self.ops.append(op)
        self.values.append(value)
        return len(self.ops)

    def snapshot(self) -> dict[str, list[int]]:
        return {"ops": list(self.ops), "values": list(self.values)}

    def restore(self, state: Any) -> None:
        self.ops = list(state["ops"])
        self.values = list(state["values"])

    def pairs(self) -> dict[int, int]:
        return dict(zip(self.ops, self.values, strict=True))


def check_prefix(ledger: Ledger, acked: Mapping[int, int], *, contiguous: bool = True) -> int:
    """Assert the invariant "recovered state = ops 1..k in order, k >= last acked,
    every acked (op, value) present"; return k."""
    if contiguous:
        assert ledger.ops == list(range(1, len(ledger.ops) + 1)), "ops are not 1..k in order"
    assert ledger.ops == sorted(ledger.ops)
    k = ledger.ops[-1] if ledger.ops else 0
    last_acked = max(acked, default=0)
    assert k >= last_acked, f"recovered up to op {k}, but op {last_acked} was acked"
    pairs = ledger.pairs()
    for op, value in acked.items():
        assert pairs.get(op) == value, f"acked op {op}={value} recovered as {pairs.get(op)}"
    return k


class History(StateMachine):
    """``values[i]`` is the value of op ``i + 1``: the whole ordered history,
    compactly. ``apply`` refuses any op but the next one (RuntimeError), so a
    gap or a reordering is caught the moment it happens, live or in replay."""

    name: ClassVar[str] = "history"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.values: list[int] = []

    def apply(self, op: int, command: Any) -> int:
        if op != len(self.values) + 1:
            raise RuntimeError(f"op {op} applied after op {len(self.values)}")
        self.values.append(int(command))
        return op

    def snapshot(self) -> list[int]:
        return list(self.values)

    def restore(self, state: Any) -> None:
        self.values = list(state)
