"""The StateMachine contract that users implement.

A state machine is deterministic: applying the same commands in the same
order to the same restored state always yields the same state and results.
The replica relies on this to rebuild state after a crash by replaying the
journal over the newest snapshot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..errors import MachineVersionError

__all__ = ["StateMachine"]


class StateMachine(ABC):
    """Base class for replicated state machines.

    Subclasses set ``name`` and ``version`` (recorded in every snapshot and
    checked on load, so a snapshot of another machine or another version is
    refused) and implement :meth:`apply`, :meth:`snapshot` and :meth:`restore`.

    The methods are called by one thread at a time, in op order, but not
    always by the Trio thread: at recovery, :meth:`restore` and the replayed
    :meth:`apply` calls run in the worker thread that reads the journal (one
    pass, see ``recover``), and a cluster replica may apply committed
    batches in a worker thread. Do not call Trio from them.
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

    def switch_version(self, version: int) -> None:
        """(Cluster replicas) From now on, apply commands as ``version`` of this
        machine does; ``0 <= version <= type(self).version``.

        A cluster switches its state machine's version with a committed op
        (``ClusterClient.switch_version``), so every replica switches at the
        same op, whatever code it runs; a replica restarted from a checkpoint
        taken after a switch is told again before anything is applied. Code of
        version ``n`` that must join a cluster still at an older version
        overrides this to remember ``version`` and apply as that version did
        (the state must stay exactly what the older code would hold), and its
        :meth:`restore` accepts what :meth:`snapshot` returned under every
        version it can switch to (a checkpoint taken by older code is
        restored, then the machine is switched to the checkpoint's version). The
        default accepts only its own version. Raise
        :class:`~trio_replica.errors.MachineVersionError` to refuse: the
        replica stops rather than apply as another version.
        """
        if version != type(self).version:
            raise MachineVersionError(
                f"{type(self).__name__} (version {type(self).version}) cannot apply as "
                f"version {version}",
                version=version,
                code_version=type(self).version,
            )

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
