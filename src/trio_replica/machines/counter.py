"""A tiny example state machine: a counter that adds integers.

Used by the examples and tests as the simplest possible machine. Commands
are ``{"add": n}`` with ``n`` an int; the result is the new total.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import InvalidCommand
from ..stm.mux import StateRestoreError
from ..stm.protocol import StateMachine

__all__ = ["Counter"]


class Counter(StateMachine):
    """Keeps ``total``, the sum of every accepted ``{"add": n}`` command.

    Anything other than a map with exactly one key ``"add"`` holding an int
    (``bool`` is refused, although Python counts it as an int) is rejected
    with :class:`~trio_replica.errors.InvalidCommand` and changes nothing.
    """

    name: ClassVar[str] = "counter"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.total = 0

    def apply(self, op: int, command: Any) -> int:
        """Add ``command["add"]`` to ``total`` and return the new total."""
        if not isinstance(command, Mapping):
            raise InvalidCommand(
                f"counter command must be a map like {{'add': 1}}, got {type(command).__name__}"
            )
        if set(command) != {"add"}:
            raise InvalidCommand(
                "counter command must have exactly one key 'add', "
                f"got keys {sorted(map(repr, command))}"
            )
        amount = command["add"]
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidCommand(f"counter 'add' must be an integer, got {type(amount).__name__}")
        self.total += amount
        return self.total

    def snapshot(self) -> dict[str, int]:
        """Return ``{"total": total}``."""
        return {"total": self.total}

    def restore(self, state: Any) -> None:
        """Set ``total`` from a value :meth:`snapshot` returned."""
        if not isinstance(state, Mapping) or set(state) != {"total"}:
            raise StateRestoreError(f"counter state must be {{'total': int}}, got {state!r}")
        total = state["total"]
        if not isinstance(total, int) or isinstance(total, bool):
            raise StateRestoreError(f"counter total must be an integer, got {total!r}")
        self.total = total
