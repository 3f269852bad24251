"""The messages that flow between the replica's tasks, and the one-shot reply.

Every message is an immutable ``attrs`` class: once sent, neither side can
change it, so handing one over a channel never creates shared mutable state.

Three message kinds carry the ops, so that a consensus step can later sit
both in front of the journal writer and after it by changing the wiring in
``replica/nursery.py`` only, not any task:

* numbered entries INTO the writer (:class:`Prepares`: consecutive ops
  from ``first_op``, as two parallel tuples: the journal bodies and the
  decoded commands; no object per op);
* "durable up to op" back FROM the writer (:class:`Durable`);
* "committed up to op" to the applier (:class:`Commit`), with the prepares
  it commits.

Replies are kept apart from ops: a :class:`Prepares` has none (an op a
primary sends a backup has no local submitter), and the replies of the ops a
:class:`Commit` carries travel beside them as :class:`RequestGroup` objects,
each covering a run of consecutive ops.

Two mutable objects travel inside messages: :class:`RequestGroup`, the
commands of the local submitters taken together and then their outcomes
(ONE wake for all of them, not one per op), and :class:`Reply`, a one-shot
answer slot for one checkpoint. Their ownership moves with the message that
carries them: the submitter only ever *waits*; the task currently holding
one is the one and only task allowed to *settle* it (the sequencer until the
ops are committed, then the applier with the results; the coordinator or
the writer for a checkpoint). Once a message has been sent, the sender
never touches its replies again. Replies still unsettled when the replica
stops are settled by ``open_replica`` after every task has exited, so no two
tasks can ever race to settle one.

Flow (the topology diagram is in ``docs/architecture.md``)::

    submitters --RequestGroup/CheckpointRequest/Stop--> sequencer (intake)
    sequencer  --Prepares/Stop------------------> writer
    coordinator --Wake (send_nowait)------------> writer
    writer     --Durable/SnapshotRequest--------> sequencer
    sequencer  --Commit/SnapshotRequest---------> applier
    applier    --SnapshotTaken------------------> coordinator
    coordinator --SnapshotDurable/SnapshotFailed--> writer (control)
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
import trio

__all__ = [
    "Applied",
    "CheckpointRequest",
    "ControlMessage",
    "Commit",
    "Durable",
    "FromWriter",
    "InboxMessage",
    "Prepares",
    "Reply",
    "RequestGroup",
    "SnapshotDurable",
    "SnapshotFailed",
    "SnapshotRequest",
    "SnapshotTaken",
    "Stop",
    "ToApplier",
    "ToWriter",
    "Wake",
]

T = TypeVar("T")


@attrs.frozen
class Applied:
    """The outcome of one accepted command: its ``op`` and ``apply()``'s ``result``."""

    op: int
    result: Any


class Reply(Generic[T]):
    """A one-shot answer slot: settled exactly once, awaited by one requester.

    Not an attrs class on purpose: it is the single mutable object passed
    between tasks, and its whole point is to be written once. Settling it a
    second time is a bug in the replica and raises ``RuntimeError``.
    """

    __slots__ = ("__weakref__", "_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def settled(self) -> bool:
        """Whether :meth:`resolve` or :meth:`fail` has been called."""
        return self._event.is_set()

    def resolve(self, value: T) -> None:
        """Answer the requester with ``value``."""
        self._check_unsettled()
        self._value = value
        self._event.set()

    def fail(self, error: BaseException) -> None:
        """Answer the requester by raising ``error`` in it."""
        self._check_unsettled()
        self._error = error
        self._event.set()

    def fail_if_pending(self, error: BaseException) -> None:
        """Fail the reply unless it was already settled (used at shutdown only)."""
        if not self._event.is_set():
            self.fail(error)

    async def wait(self) -> T:
        """Wait until settled; return the value or raise the error."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def _check_unsettled(self) -> None:
        if self._event.is_set():
            raise RuntimeError("a replica reply was settled twice (a bug in trio-replica)")


# --- submitters -> sequencer (the intake) ----------------------------------


_PENDING: Any = object()
"""An outcome slot not settled yet."""


class RequestGroup:
    """Commands of local submitters taken together, then their outcomes: one
    wake for the whole group instead of a channel round trip and an event
    per op.

    Filled by the replica handle (:meth:`add`) while it is the open group of
    the intake; once the sequencer takes it, it numbers the group
    (:meth:`number`: ``first_op``) and the group's ops are the consecutive
    ops ``first_op .. first_op + len(group) - 1``. Each submitter keeps its
    index and waits (:meth:`wait`) until EVERY op of the group is settled,
    then reads its own :meth:`outcome`. All submitters of a group are woken
    by one ``Event.set()``, and their ops were made durable together (the
    writer may split a group across appends only when a batch limit or the
    journal's free space forces it; the group then wakes after the last).

    Like :class:`Reply` it is not an attrs class on purpose: it is written
    once per slot by its current owner only (see the module docstring).
    ``body`` and ``command`` of op ``first_op + i`` are ``bodies[i]`` and
    ``commands[i]`` (the CBOR bytes the journal stores, and those bytes
    decoded again, so the live applier sees the very value replay will see).
    """

    __slots__ = (
        "__weakref__",
        "_event",
        "_unsettled",
        "bodies",
        "commands",
        "first_op",
        "outcomes",
    )

    def __init__(self) -> None:
        self._event = trio.Event()
        self.bodies: list[bytes] = []
        self.commands: list[Any] = []
        self.outcomes: list[Any] = []
        self.first_op = 0
        self._unsettled = 0

    def __len__(self) -> int:
        return len(self.outcomes)

    def add(self, body: bytes, command: Any) -> int:
        """Add one command (before the group is numbered); return its index."""
        self.bodies.append(body)
        self.commands.append(command)
        self.outcomes.append(_PENDING)
        self._unsettled += 1
        return len(self.outcomes) - 1

    def extend(self, bodies: list[bytes], commands: list[Any]) -> int:
        """Add several commands at once; return the index of the first."""
        first = len(self.outcomes)
        self.bodies.extend(bodies)
        self.commands.extend(commands)
        self.outcomes.extend([_PENDING] * len(bodies))
        self._unsettled += len(bodies)
        return first

    def number(self, first_op: int) -> Prepares:
        """Give the group its ops from ``first_op`` on and return them as
        numbered entries. The group keeps no reference to its bodies after
        this (the writer's copy is the one that is needed)."""
        self.first_op = first_op
        prepares = Prepares(first_op, tuple(self.bodies), tuple(self.commands))
        self.bodies = []
        self.commands = []
        return prepares

    @property
    def last_op(self) -> int:
        """The group's last op (valid once numbered)."""
        return self.first_op + len(self.outcomes) - 1

    @property
    def settled(self) -> bool:
        """Whether every op of the group has its outcome."""
        return self._event.is_set()

    def settle(self, index: int, outcome: Any) -> None:
        """Set op ``first_op + index``'s outcome: an :class:`Applied`, or the
        exception its submitter gets. The last one wakes every waiter."""
        if self.outcomes[index] is not _PENDING:
            raise RuntimeError("a replica reply was settled twice (a bug in trio-replica)")
        self.outcomes[index] = outcome
        self._unsettled -= 1
        if self._unsettled == 0:
            self._event.set()

    def fail_pending(self, error: BaseException) -> None:
        """Give every op without an outcome ``error`` and wake the waiters
        (on failure and at shutdown; settled ops keep their outcome)."""
        if self._event.is_set():
            return
        outcomes = self.outcomes
        for index, outcome in enumerate(outcomes):
            if outcome is _PENDING:
                outcomes[index] = error
        self._unsettled = 0
        self._event.set()

    async def wait(self) -> None:
        """Wait until every op of the group is settled."""
        await self._event.wait()

    def outcome(self, index: int) -> Applied:
        """The outcome of the op at ``index`` (after :meth:`wait`): the
        :class:`Applied`, or its exception raised."""
        outcome = self.outcomes[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]


@attrs.frozen
class CheckpointRequest:
    """``Replica.checkpoint()``: snapshot after everything submitted before it,
    then compact; the reply gets the snapshot's op."""

    reply: Reply[int] = attrs.field(eq=False)


@attrs.frozen
class Stop:
    """The replica is closing: nothing follows. Passed on from the sequencer
    to the writer (only ``Wake`` can follow it there), which starts the
    orderly shutdown cascade."""


InboxMessage = RequestGroup | CheckpointRequest | Stop


# --- sequencer -> writer: numbered entries -----------------------------------


@attrs.frozen
class Prepares:
    """Consecutive numbered entries to make durable: ops ``first_op`` ..
    ``first_op + len(bodies) - 1``; ``bodies[i]`` is what the journal stores
    for op ``first_op + i`` and ``commands[i]`` what the applier applies
    (that body decoded). Columns, not an object per op: the hot path builds
    nothing per op. May be empty: a barrier, answered with a
    :class:`Durable` like any other, which orders a checkpoint after every
    op numbered before it."""

    first_op: int
    bodies: tuple[bytes, ...] = attrs.field(repr=False)
    commands: tuple[Any, ...] = attrs.field(eq=False, repr=False)

    def __len__(self) -> int:
        return len(self.bodies)

    @property
    def last_op(self) -> int:
        """The last op (``first_op - 1`` when empty)."""
        return self.first_op + len(self.bodies) - 1

    def split(self, count: int) -> tuple[Prepares, Prepares]:
        """The first ``count`` entries, and the rest."""
        return (
            Prepares(self.first_op, self.bodies[:count], self.commands[:count]),
            Prepares(self.first_op + count, self.bodies[count:], self.commands[count:]),
        )


@attrs.frozen
class Wake:
    """Sent (best effort) by the coordinator after each control message, so an
    idle writer blocked on its input looks at the control channel promptly."""


ToWriter = Prepares | Wake | Stop


# --- writer -> sequencer: durable up to op ------------------------------------


@attrs.frozen
class Durable:
    """Every op up to ``op`` is in the journal and fsynced.

    ``remaining_capacity`` is the journal's free capacity right after the
    append, which drives the applier's low-capacity snapshot trigger.
    """

    op: int
    remaining_capacity: int


@attrs.frozen
class SnapshotRequest:
    """The journal is full: the writer needs a snapshot before it can append.
    Passed on to the applier behind every commit sent before it."""


FromWriter = Durable | SnapshotRequest


# --- sequencer -> applier: committed up to op ---------------------------------


@attrs.frozen
class Commit:
    """Every op up to ``op`` is committed: apply ``prepares`` (the committed
    ops not sent before, in op order, ending at ``op``; empty when nothing new
    was committed), answer ``groups`` (the request groups with an op among
    them, in op order; an op without a local submitter is in none; a group
    may reach into the next commit), then snapshot once for ``checkpoints``.

    ``remaining_capacity`` is the journal's free capacity at the last
    :class:`Durable` this commit follows.
    """

    op: int
    prepares: tuple[Prepares, ...]
    groups: tuple[RequestGroup, ...] = attrs.field(eq=False, repr=False)
    checkpoints: tuple[Reply[int], ...] = attrs.field(eq=False)
    remaining_capacity: int


ToApplier = Commit | SnapshotRequest


# --- applier -> coordinator -------------------------------------------------


@attrs.frozen
class SnapshotTaken:
    """A consistent copy of the state after applying ops 1..``op``.

    ``for_writer`` marks the answer to a :class:`SnapshotRequest`.
    """

    op: int
    state: Any = attrs.field(eq=False, repr=False)
    checkpoints: tuple[Reply[int], ...]
    for_writer: bool


# --- coordinator -> writer --------------------------------------------------


@attrs.frozen
class SnapshotDurable:
    """A snapshot at ``op`` is durable; ``retain_from`` is the op of the oldest
    retained valid snapshot, the point the journal may be compacted up to."""

    op: int
    retain_from: int
    checkpoints: tuple[Reply[int], ...]
    for_writer: bool


@attrs.frozen
class SnapshotFailed:
    """Persisting the snapshot at ``op`` failed with a non-fatal ``error``
    (the next trigger tries again); checkpoint callers get the error."""

    op: int
    error: BaseException = attrs.field(eq=False)
    checkpoints: tuple[Reply[int], ...]
    for_writer: bool


ControlMessage = SnapshotDurable | SnapshotFailed
