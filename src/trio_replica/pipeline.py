"""The messages that flow between the replica's tasks, and the one-shot reply.

Every message is an immutable ``attrs`` class: once sent, neither side can
change it, so handing one over a channel never creates shared mutable state.

The only mutable object that travels inside messages is :class:`Reply`, a
one-shot answer slot for one request. Its ownership moves with the message
that carries it: the submitter creates it and only ever *waits* on it; the
task currently holding the message is the one and only task allowed to
*settle* it (the writer if the append fails, the applier with the result,
the coordinator or the writer for a checkpoint). Once a message has been
sent, the sender never touches its replies again. Replies still unsettled
when the replica stops are settled by ``open_replica`` after every task has
exited, so no two tasks can ever race to settle one.

Flow (see ``docs/architecture.md``)::

    submitters --Submit/CheckpointRequest/Stop--> writer inbox
    coordinator --Wake (send_nowait)------------> writer inbox
    writer --DurableBatch/SnapshotRequest-------> applier
    applier --SnapshotTaken---------------------> coordinator
    coordinator --SnapshotDurable/SnapshotFailed--> writer control channel
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
import trio

__all__ = [
    "Applied",
    "CheckpointRequest",
    "ControlMessage",
    "DurableBatch",
    "DurableOp",
    "InboxMessage",
    "Reply",
    "SnapshotDurable",
    "SnapshotFailed",
    "SnapshotRequest",
    "SnapshotTaken",
    "Stop",
    "Submit",
    "ToApplier",
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


# --- into the writer's inbox ------------------------------------------------


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
class Wake:
    """Sent (best effort) by the coordinator after each control message, so an
    idle writer blocked on its inbox looks at the control channel promptly."""


@attrs.frozen
class Stop:
    """The replica is closing: nothing follows (but ``Wake``). The writer
    finishes what it holds and starts the orderly shutdown cascade."""


InboxMessage = Submit | CheckpointRequest | Wake | Stop


# --- writer -> applier ------------------------------------------------------


@attrs.frozen
class DurableOp:
    """One journaled (fsynced) op on its way to the state machine."""

    op: int
    command: Any
    reply: Reply[Applied] = attrs.field(eq=False)


@attrs.frozen
class DurableBatch:
    """Everything one writer iteration made durable, in op order.

    ``checkpoints`` are checkpoint requests that arrived after (or among)
    these ops: the applier snapshots after applying the whole batch.
    ``remaining_capacity`` is the journal's free capacity right after the
    append, which drives the applier's low-capacity snapshot trigger.
    """

    ops: tuple[DurableOp, ...]
    checkpoints: tuple[Reply[int], ...]
    remaining_capacity: int


@attrs.frozen
class SnapshotRequest:
    """The journal is full: the writer needs a snapshot before it can append."""


ToApplier = DurableBatch | SnapshotRequest


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
