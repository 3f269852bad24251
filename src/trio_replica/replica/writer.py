"""The journal writer task: the only owner of the :class:`~trio_replica.journal.Journal`.

It makes numbered entries durable with group commit: it takes every
:class:`~trio_replica.pipeline.Prepares` waiting on its input (up to a batch
limit), appends them with ONE write and ONE fsync, and only then reports
"durable up to op" (:class:`~trio_replica.pipeline.Durable`). It never
numbers an op and never holds an op's reply: whoever sits in front of it numbers
the ops, and whoever sits after it decides when they are committed. Nothing
downstream ever learns of an op that is not on disk, so an ack always means
durable (invariant 1, docs/invariants.md).

It also owns the watermark: when the coordinator reports a durable snapshot
it advances ``snapshot_op`` to the oldest retained snapshot and compacts.
When the journal is full it does not fail: it asks for a snapshot
(:class:`~trio_replica.pipeline.SnapshotRequest`, passed on to the applier
behind every commit) and waits for the coordinator's answer on its control
channel, while the entries wait in its bounded input (backpressure).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from ..journal import Journal
from ..pipeline import (
    ControlMessage,
    Durable,
    FromWriter,
    Prepares,
    SnapshotDurable,
    SnapshotFailed,
    SnapshotRequest,
    Stop,
    ToWriter,
    Wake,
)

__all__ = ["MAX_SNAPSHOT_FAILURES_WHILE_FULL", "JournalWriter", "advance_watermark", "batch_cap"]

MAX_SNAPSHOT_FAILURES_WHILE_FULL = 3
"""Consecutive failed snapshots the writer tolerates while the journal is full.

A full journal can only be freed by a snapshot; if persisting keeps failing
the replica cannot make progress, so it stops with the last error instead of
spinning forever."""


def advance_watermark(journal: Journal, retain_from: int) -> None:
    """The watermark rule: move the journal's watermark up to ``retain_from``,
    the op of the OLDEST retained snapshot, never past the journal's last op
    and never back.

    Not the newest snapshot: if the newest snapshot file is later found
    damaged, recovery falls back to the older one and must find every op
    after it (invariant 6,
    docs/invariants.md). Used by the writer after each durable snapshot and
    by recovery after replay.
    """
    watermark = min(retain_from, journal.last_op)
    if watermark > journal.watermark:
        journal.set_watermark(watermark)


def batch_cap(slot_count: int, keep_snapshots: int) -> int:
    """The most ops one append may hold, so that a full journal can always be freed.

    The applier snapshots after every batch once the remaining capacity is
    below a quarter of ``slot_count``. With batches of at most
    ``slot_count // (4 * keep_snapshots)`` ops, at least ``keep_snapshots``
    distinct snapshots are taken inside that last quarter, so by the time the
    journal is full the oldest *retained* snapshot (the watermark) is past the
    old watermark and their notices free capacity. Bigger batches could fill
    the journal with the newest snapshot at the last op and the oldest
    retained one a whole ring behind; the writer would then need its escape
    hatch (:meth:`JournalWriter._free_ring_past_retained`), which holds
    compaction back until retention catches up.
    """
    return max(1, slot_count // (4 * keep_snapshots))


@attrs.define
class _Collected:
    """What one writer iteration took from its input: the bodies of ops
    ``first_op ..`` in op order (only bodies: the commands stay with the
    sequencer, which sent them too)."""

    first_op: int = 0
    bodies: list[bytes] = attrs.field(factory=list)
    messages: int = 0
    stop: bool = False


class JournalWriter:
    """The writer task's state: the journal and the bookkeeping of snapshot requests.

    ``on_append_failed`` is called with the error of a failed append, before
    the writer raises it (which stops the replica), so that whoever holds the
    replies of the ops in flight answers them with the error itself while
    the submitters still wait.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        max_batch: int,
        max_ops_per_append: int,
        on_append_failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._journal = journal
        self._on_append_failed = on_append_failed
        self._max_batch = max_batch
        self._max_ops_per_append = max_ops_per_append
        # Bodies taken from the input that did not fit the last append, and
        # the op of the first of them.
        self._carry: list[bytes] = []
        self._carry_first = 0
        self._stop_seen = False
        # Snapshot requests sent whose notice has not arrived.
        self._requests_in_flight = 0
        self._failures_while_full = 0

    async def run(
        self,
        entries: trio.MemoryReceiveChannel[ToWriter],
        control: trio.MemoryReceiveChannel[ControlMessage],
        durable: trio.MemorySendChannel[FromWriter],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Append entries until ``Stop``, then drain the control channel.

        Shutdown is a cascade: closing ``durable`` ends the sequencer's
        commits, which ends the applier, which ends the coordinator, which
        closes ``control``; the writer applies the last notices (watermark,
        compaction, checkpoint replies) and returns.
        """
        task_status.started()
        async with entries, control:
            async with durable:
                stopping = False
                while not stopping:
                    # Between two drains the writer makes at most one blocking
                    # send (of a Durable or a SnapshotRequest); the control
                    # channel is sized from that fact so the coordinator can
                    # never block on it forever (writer -> sequencer ->
                    # applier -> coordinator -> writer is a cycle of bounded
                    # channels, see nursery.CHANNELS).
                    await self._drain_control(control)
                    if self._journal.remaining_capacity == 0:
                        await self._wait_for_capacity(control, durable)
                    collected = await self._collect(entries)
                    stopping = collected.stop
                    await self._append(collected, durable)
            async for notice in control:
                await self._handle_notice(notice)

    async def _collect(self, entries: trio.MemoryReceiveChannel[ToWriter]) -> _Collected:
        """Wait for one message (unless entries are carried over), then take
        whatever else is already waiting, up to the per-append limit."""
        limit = min(self._max_batch, self._max_ops_per_append, self._journal.remaining_capacity)
        collected = _Collected(first_op=self._carry_first, bodies=self._carry)
        self._carry = []
        if len(collected.bodies) >= limit or self._stop_seen:
            self._keep_beyond(collected, limit)
            collected.stop = self._stop_seen and not self._carry
            return collected
        try:
            message: ToWriter = (
                entries.receive_nowait() if collected.bodies else await entries.receive()
            )
        except trio.WouldBlock:
            return collected
        except trio.EndOfChannel:
            self._stop_seen = True
            message = Stop()
        while not self._stop_seen:
            if isinstance(message, Prepares):
                if collected.bodies and len(collected.bodies) + len(message) > limit:
                    # Whole messages only, so that a request group is split
                    # across appends only when it alone exceeds the limit.
                    self._carry = list(message.bodies)
                    self._carry_first = message.first_op
                    break
                if not collected.bodies:
                    collected.first_op = message.first_op
                collected.bodies.extend(message.bodies)
                collected.messages += 1
            elif isinstance(message, Stop):
                # Only Wake messages can follow Stop; leave them unread.
                self._stop_seen = True
                break
            else:
                assert isinstance(message, Wake)
            if len(collected.bodies) >= limit:
                break
            try:
                message = entries.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        if not self._carry:
            self._keep_beyond(collected, limit)
        # Stop only once every entry received before it is appended.
        collected.stop = self._stop_seen and not self._carry
        return collected

    def _keep_beyond(self, collected: _Collected, limit: int) -> None:
        """Carry the entries past ``limit`` over: they go first into the next
        append, in op order."""
        if len(collected.bodies) > limit:
            self._carry = collected.bodies[limit:]
            self._carry_first = collected.first_op + limit
            del collected.bodies[limit:]

    async def _append(
        self, collected: _Collected, durable: trio.MemorySendChannel[FromWriter]
    ) -> None:
        """Append the entries (one write, one fsync), then report them durable."""
        journal = self._journal
        if collected.bodies:
            first = collected.first_op
            try:
                # journal.append runs its write+fsync with run_io, which never
                # abandons started work: a cancellation cannot interrupt the
                # fsync, only be delivered before it starts or after it ends.
                await journal.append_bodies(first, collected.bodies)
            except trio.Cancelled:
                raise
            except BaseException as exc:
                # FatalStorageError (or a bug): the replica stops, and the
                # waiters of these ops get this error. Never retry an fsync.
                if self._on_append_failed is not None:
                    self._on_append_failed(exc)
                raise
        if collected.bodies or collected.messages:
            # Every Prepares is answered, an empty one (a barrier) too.
            await durable.send(
                Durable(op=journal.last_op, remaining_capacity=journal.remaining_capacity)
            )

    async def _wait_for_capacity(
        self,
        control: trio.MemoryReceiveChannel[ControlMessage],
        durable: trio.MemorySendChannel[FromWriter],
    ) -> None:
        """Backpressure: block until a durable snapshot frees journal slots."""
        while self._journal.remaining_capacity == 0:
            if self._requests_in_flight == 0:
                await durable.send(SnapshotRequest())
                self._requests_in_flight += 1
            try:
                notice = await control.receive()
            except trio.EndOfChannel:
                raise RuntimeError(
                    "the snapshot coordinator stopped while the journal was full"
                ) from None
            await self._handle_notice(notice)
            if (
                isinstance(notice, SnapshotDurable)
                and notice.for_writer
                and notice.op == self._journal.last_op
                and self._journal.remaining_capacity == 0
            ):
                self._free_ring_past_retained(notice.op)
            if isinstance(notice, SnapshotFailed):
                self._failures_while_full += 1
                if self._failures_while_full >= MAX_SNAPSHOT_FAILURES_WHILE_FULL:
                    raise notice.error
        self._failures_while_full = 0

    def _free_ring_past_retained(self, newest_op: int) -> None:
        """Escape hatch: the journal is full although a snapshot covers its last op.

        This happens only when the ring cannot hold the ops since the OLDEST
        retained snapshot: the directory was reopened with a smaller
        ``slot_count`` (or a larger ``keep_snapshots``), or snapshots failed
        while it filled up. No new snapshot can help (there is no newer op to
        take it at), so the ring watermark moves to the newest durable
        snapshot. That only frees ring slots: compaction still waits for the
        oldest retained snapshot to pass the watermark (see _handle_notice),
        so every op a fallback to an older snapshot needs stays on disk.
        """
        self._journal.set_watermark(newest_op)

    async def _drain_control(self, control: trio.MemoryReceiveChannel[ControlMessage]) -> None:
        while True:
            try:
                notice = control.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            await self._handle_notice(notice)

    async def _handle_notice(self, notice: ControlMessage) -> None:
        """Advance the watermark and compact, then answer checkpoint callers."""
        if notice.for_writer:
            self._requests_in_flight -= 1
        if isinstance(notice, SnapshotFailed):
            for reply in notice.checkpoints:
                reply.fail(notice.error)
            return
        assert isinstance(notice, SnapshotDurable)
        journal = self._journal
        advance_watermark(journal, notice.retain_from)
        # Compaction deletes what the watermark covers; after the escape hatch
        # below the watermark may be ahead of the oldest retained snapshot, and
        # then compaction waits until retention catches up with it.
        if journal.watermark <= notice.retain_from:
            try:
                await journal.compact()
            except trio.Cancelled:
                raise
            except BaseException as exc:
                for reply in notice.checkpoints:
                    reply.fail(exc)
                raise
        for reply in notice.checkpoints:
            reply.resolve(notice.op)
