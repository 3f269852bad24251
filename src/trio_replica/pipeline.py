"""The messages that flow between the replica's tasks, and the one-shot reply.

Every message is an immutable ``attrs`` class: once sent, neither side can
change it, so handing one over a channel never creates shared mutable state.

Three message kinds carry the ops, so that a consensus step can later sit
both in front of the journal writer and after it by changing the wiring in
``replica/nursery.py`` only, not any task:

* numbered entries INTO the writer (:class:`Prepares`: each
  :class:`Prepare` is an op, its journal body and its decoded command);
* "durable up to op" back FROM the writer (:class:`Durable`);
* "committed up to op" to the applier (:class:`Commit`), with the prepares
  it commits.

Replies are kept apart from ops: a :class:`Prepare` has none (an op a
primary sends a backup has no local submitter), and the replies of the ops a
:class:`Commit` carries travel beside them, keyed by op.

The only mutable object that travels inside messages is :class:`Reply`, a
one-shot answer slot for one request. Its ownership moves with the message
that carries it: the submitter creates it and only ever *waits* on it; the
task currently holding it is the one and only task allowed to *settle* it
(the sequencer until the op is committed, then the applier with the result;
the coordinator or the writer for a checkpoint). Once a message has been
sent, the sender never touches its replies again. Replies still unsettled
when the replica stops are settled by ``open_replica`` after every task has
exited, so no two tasks can ever race to settle one.

Flow (the topology diagram is in ``docs/architecture.md``)::

    submitters --Submit/CheckpointRequest/Stop--> sequencer (inbox)
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
    "Prepare",
    "Prepares",
    "Reply",
    "SnapshotDurable",
    "SnapshotFailed",
    "SnapshotRequest",
    "SnapshotTaken",
    "Stop",
    "Submit",
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

    __slots__ = ("_error", "_event", "_value")

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


# --- submitters -> sequencer (the inbox) -----------------------------------


@attrs.frozen
class Submit:
    """A command to journal and apply.

    ``body`` is the command's CBOR encoding (what the journal stores) and
    ``command`` is that encoding decoded again, so the live applier sees the
    very value that replay after a restart will see.
    """

    body: bytes
    command: Any
    reply: Reply[Applied] = attrs.field(eq=False)


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


InboxMessage = Submit | CheckpointRequest | Stop


# --- sequencer -> writer: numbered entries -----------------------------------


@attrs.frozen
class Prepare:
    """One numbered entry: ``op``, the ``body`` the journal stores, and the
    ``command`` the applier applies (``body`` decoded). No reply: whoever
    waits for the op is known only to the task that numbered it."""

    op: int
    body: bytes = attrs.field(repr=False)
    command: Any = attrs.field(eq=False, repr=False)


@attrs.frozen
class Prepares:
    """Consecutive numbered entries to make durable, in op order. May be
    empty: a barrier, answered with a :class:`Durable` like any other, which
    orders a checkpoint after every op numbered before it."""

    prepares: tuple[Prepare, ...]


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
    was committed), answer ``replies`` (by op; an op without a local
    submitter has none), then snapshot once for ``checkpoints``.

    ``remaining_capacity`` is the journal's free capacity at the last
    :class:`Durable` this commit follows.
    """

    op: int
    prepares: tuple[Prepare, ...]
    replies: dict[int, Reply[Applied]] = attrs.field(eq=False, repr=False)
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
