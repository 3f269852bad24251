"""The mux state machine: one state machine made of sub-machines, one per entity kind.

A :class:`MuxStateMachine` routes every command by its ``"type"`` key to the
one :class:`SubMachine` that declared that type. Each sub-machine owns its
own state and is the only object that mutates it. Cross-entity validation
(a topic's stream must exist; a stream with topics cannot be deleted) is done
through :class:`Siblings`: a registry of the read-only *readers* of the other
sub-machines, so a sub-machine can look at its siblings' state but has no
handle with which to change it.

The snapshot of a mux is a map from sub-machine name to that sub-machine's
snapshot; restore hands each part back to its owner.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import cbor2

from ..errors import InvalidCommand, ReplicaError
from .protocol import StateMachine

__all__ = ["MuxStateMachine", "Siblings", "StateRestoreError", "SubMachine", "state_digest"]

_ReaderT = TypeVar("_ReaderT")


class StateRestoreError(ReplicaError):
    """``restore`` was given a value that is not a snapshot of this machine.

    ``part`` names the sub-machine (or ``None`` for the top level) whose
    state was malformed. The machine must be discarded after this: parts
    restored before the bad one keep their new state.
    """

    def __init__(self, message: str, *, part: str | None = None):
        super().__init__(message)
        self.part = part


def state_digest(state: Any) -> str:
    """Return a stable hex digest of ``state``: SHA-256 of its canonical CBOR.

    Canonical CBOR sorts map keys, so two equal states give the same digest
    whatever order their dicts were built in.
    """
    return hashlib.sha256(cbor2.dumps(state, canonical=True)).hexdigest()


class Siblings:
    """Read-only access from one sub-machine to the readers of the others.

    Built once by the mux. It holds each sub-machine's :meth:`SubMachine.reader`,
    never the sub-machines themselves, so the only state a sub-machine can
    change during ``apply`` is its own.
    """

    __slots__ = ("_readers",)

    def __init__(self, readers: Mapping[str, object]):
        self._readers = dict(readers)

    def get(self, name: str, kind: type[_ReaderT]) -> _ReaderT:
        """Return the reader of sub-machine ``name``, checked to be a ``kind``.

        A missing or mistyped reader is a wiring bug of the mux (not a bad
        command), so it raises :class:`LookupError` / :class:`TypeError`.
        """
        try:
            reader = self._readers[name]
        except KeyError:
            raise LookupError(f"no sub-machine named {name!r} in this mux") from None
        if not isinstance(reader, kind):
            raise TypeError(
                f"reader of sub-machine {name!r} is a {type(reader).__name__}, "
                f"not a {kind.__name__}"
            )
        return reader

    def names(self) -> list[str]:
        """Names of all sub-machines, in the mux's order."""
        return list(self._readers)


class SubMachine(ABC):
    """One part of a :class:`MuxStateMachine`: the state of one entity kind.

    Subclasses set ``name`` (the key of their part in the mux snapshot) and
    ``command_types`` (the ``"type"`` values they handle; no two parts of a
    mux may share one), and implement :meth:`apply`, :meth:`snapshot`,
    :meth:`restore` and, if siblings need to look at their state,
    :meth:`reader`.

    The determinism and no-change-on-rejection rules of
    :class:`~trio_replica.stm.StateMachine` apply to each part.
    """

    name: ClassVar[str]
    command_types: ClassVar[frozenset[str]]

    @abstractmethod
    def apply(self, op: int, command: Mapping[str, Any], siblings: Siblings) -> Any:
        """Apply ``command`` (a map whose ``"type"`` is one of ``command_types``).

        Validate fully (including against ``siblings``) and raise
        :class:`~trio_replica.errors.InvalidCommand` before changing anything.
        """

    @abstractmethod
    def snapshot(self) -> Any:
        """Return a deep, CBOR-encodable copy of this part's state."""

    @abstractmethod
    def restore(self, state: Any) -> None:
        """Replace this part's state with ``state`` (a value :meth:`snapshot` returned).

        Raise :class:`StateRestoreError` if ``state`` is malformed.
        """

    def reader(self) -> object:
        """Return the read-only view of this part that siblings may query.

        It must expose queries only, and keep reading the live state (it is
        created once, before any restore). The default exposes nothing.
        """
        return _NoReader(self.name)


class _NoReader:
    """The reader of a sub-machine that exposes nothing to its siblings."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class MuxStateMachine(StateMachine):
    """A state machine that dispatches each command to a sub-machine by ``"type"``.

    Commands are maps with a string ``"type"`` key. Anything else (not a map,
    no ``"type"``, a non-string or unknown type) is rejected with
    :class:`~trio_replica.errors.InvalidCommand` and changes nothing.

    Subclasses usually set their own ``name`` and ``version`` and build their
    parts in ``__init__`` (see
    :class:`~trio_replica.machines.metadata.MetadataStateMachine`).
    """

    name: ClassVar[str] = "mux"
    version: ClassVar[int] = 1

    def __init__(self, parts: Iterable[SubMachine]):
        self._parts: dict[str, SubMachine] = {}
        self._routes: dict[str, SubMachine] = {}
        for part in parts:
            if part.name in self._parts:
                raise ValueError(f"two sub-machines are named {part.name!r}")
            for command_type in sorted(part.command_types):
                owner = self._routes.get(command_type)
                if owner is not None:
                    raise ValueError(
                        f"command type {command_type!r} is claimed by both "
                        f"{owner.name!r} and {part.name!r}"
                    )
                self._routes[command_type] = part
            self._parts[part.name] = part
        self._siblings = Siblings({name: part.reader() for name, part in self._parts.items()})

    @property
    def parts(self) -> Mapping[str, SubMachine]:
        """The sub-machines by name (read them; mutate only through :meth:`apply`)."""
        return self._parts

    @property
    def command_types(self) -> list[str]:
        """Every command type this mux accepts, sorted."""
        return sorted(self._routes)

    def apply(self, op: int, command: Any) -> Any:
        """Route ``command`` to the sub-machine that owns its ``"type"``."""
        if not isinstance(command, Mapping):
            raise InvalidCommand(
                f"a command must be a map with a 'type' key, got {type(command).__name__}"
            )
        if "type" not in command:
            raise InvalidCommand("command has no 'type' key")
        command_type = command["type"]
        if not isinstance(command_type, str):
            raise InvalidCommand(
                f"command 'type' must be a string, got {type(command_type).__name__}"
            )
        part = self._routes.get(command_type)
        if part is None:
            raise InvalidCommand(
                f"unknown command type {command_type!r}; "
                f"known types: {', '.join(self.command_types)}"
            )
        return part.apply(op, command, self._siblings)

    def snapshot(self) -> dict[str, Any]:
        """Return ``{sub-machine name: its snapshot}``."""
        return {name: part.snapshot() for name, part in self._parts.items()}

    def restore(self, state: Any) -> None:
        """Hand each sub-machine its part of ``state``.

        The set of parts must match exactly: a missing or extra part means
        the snapshot belongs to a differently built machine.
        """
        if not isinstance(state, Mapping):
            raise StateRestoreError(f"{self.name} state must be a map, got {type(state).__name__}")
        missing = sorted(set(self._parts) - set(state))
        extra = sorted(str(key) for key in set(state) - set(self._parts))
        if missing or extra:
            raise StateRestoreError(
                f"{self.name} state has parts that do not match this machine "
                f"(missing: {missing}, unexpected: {extra})"
            )
        for name, part in self._parts.items():
            part.restore(state[name])

    def state_digest(self) -> str:
        """A stable hash of the canonical CBOR of :meth:`snapshot` (equal states, equal digests)."""
        return state_digest(self.snapshot())
