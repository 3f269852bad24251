"""The StateMachine contract that users implement.

A state machine is deterministic: applying the same commands in the same
order to the same restored state always yields the same state and results.
The replica relies on this to rebuild state after a crash by replaying the
journal over the newest snapshot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = ["StateMachine"]


class StateMachine(ABC):
    """Base class for replicated state machines.

    Subclasses set ``name`` and ``version`` (recorded in every snapshot and
    checked on load, so a snapshot of another machine or another version is
    refused) and implement :meth:`apply`, :meth:`snapshot` and :meth:`restore`.
    """

    name: ClassVar[str]
    version: ClassVar[int]

    @abstractmethod
    def apply(self, op: int, command: Any) -> Any:
        """Apply ``command`` (the decoded CBOR value a client submitted) as ``op``.

        Return the result for the submitter (must be a plain value). To reject
        a command raise :class:`~trio_replica.errors.InvalidCommand` *before*
        changing any state. Any other exception is treated as a bug and stops
        the replica.
        """

    @abstractmethod
    def snapshot(self) -> Any:
        """Return a consistent, CBOR-encodable copy of the whole state.

        The copy must not share mutable objects with the live state: it is
        encoded and written by another task while ``apply`` goes on.
        """

    @abstractmethod
    def restore(self, state: Any) -> None:
        """Replace the whole state with ``state`` (a value :meth:`snapshot` returned)."""
