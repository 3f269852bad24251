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
        changing any state: the op stays in the journal and every replay
        rejects it the same way.

        Any other exception is treated as a bug: the state may be half-changed,
        so the replica stops with :class:`~trio_replica.errors.StateMachineError`
        naming the op (the original exception as its ``__cause__``). The op is
        already durable in the journal, so every later open replays it and
        stops again at the same op until the code is fixed.
        ``trio-replica inspect DATA_DIR --op N`` shows the command. Fix
        ``apply`` so that the command is applied or rejected with
        ``InvalidCommand``, deterministically, and reopen: replay then goes on
        past it (see "When apply() raises" in the operations guide).
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

    def upgrade_snapshot(self, version: int, state: Any) -> Any:
        """Convert ``state``, snapshotted by ``version`` of this machine, to this version's state.

        Called at recovery, before :meth:`restore`, when the newest valid
        snapshot was written by an older ``version`` (``0 <= version <
        self.version``) of the machine with the same ``name``; return a value
        :meth:`restore` of this version accepts. It must be deterministic
        (every replica and every recovery converts the same way). The
        default refuses: without an override, a snapshot of another version
        is invalid, as if this were another machine.

        Commands journaled under the older version are then replayed through
        this version's :meth:`apply`, so a new version must keep applying old
        commands exactly as the old version did (same state change, same
        accept or reject); see "Upgrading a state machine" in the operations
        guide for the rules.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot upgrade a snapshot of version {version} "
            f"to version {self.version}"
        )
