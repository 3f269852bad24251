"""The journal writer task: the only owner of the :class:`~trio_replica.journal.Journal`.

It turns requests into durable ops with group commit: it takes everything
waiting in its inbox (up to a batch limit), assigns op numbers, appends the
batch with ONE write and ONE fsync, and only then hands the durable batch to
the applier. Nothing downstream ever sees an op that is not on disk, so an
ack (sent by the applier) always means durable (DESIGN invariant 1).

It also owns the watermark: when the coordinator reports a durable snapshot
it advances ``snapshot_op`` to the oldest retained snapshot and compacts.
When the journal is full it does not fail: it asks the applier for a
snapshot and waits for the coordinator's answer on its control channel,
while submitters wait on the bounded inbox (backpressure).
"""

from __future__ import annotations

import attrs
import trio

from ..journal import Entry, Journal
from ..pipeline import (
    CheckpointRequest,
    ControlMessage,
    DurableBatch,
    DurableOp,
    InboxMessage,
    Reply,
    SnapshotDurable,
    SnapshotFailed,
    SnapshotRequest,
    Stop,
    Submit,
    ToApplier,
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
    after it (invariant "Compaction keeps what a fallback needs",
    docs/invariants.md). Used by the writer after each durable snapshot and
    by recovery after replay.
    """
    watermark = min(retain_from, journal.last_op)
    if watermark > journal.snapshot_op:
        journal.set_snapshot_op(watermark)


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
    """What one writer iteration took from the inbox, in arrival order."""

    submits: list[Submit] = attrs.field(factory=list)
    checkpoints: list[Reply[int]] = attrs.field(factory=list)
    stop: bool = False


class JournalWriter:
    """The writer task's state: the journal and the bookkeeping of snapshot requests."""

    def __init__(self, journal: Journal, *, max_batch: int, max_ops_per_append: int) -> None:
        self._journal = journal
        self._max_batch = max_batch
        self._max_ops_per_append = max_ops_per_append
        # Snapshot requests sent to the applier whose notice has not arrived.
        self._requests_in_flight = 0
        self._failures_while_full = 0

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[InboxMessage],
        control: trio.MemoryReceiveChannel[ControlMessage],
        to_applier: trio.MemorySendChannel[ToApplier],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the inbox until ``Stop``, then drain the control channel.

        Shutdown is a cascade: closing ``to_applier`` ends the applier, which
        ends the coordinator, which closes ``control``; the writer applies the
        last notices (watermark, compaction, checkpoint replies) and returns.
        """
        task_status.started()
        async with inbox, control:
            async with to_applier:
                stopping = False
                while not stopping:
                    # Between two drains the writer makes at most one blocking
                    # send to the applier; the control channel is sized from
                    # that fact so the coordinator can never block on it
                    # forever (writer -> applier -> coordinator -> writer is a
                    # cycle of bounded channels).
                    await self._drain_control(control)
                    if self._journal.remaining_capacity == 0:
                        await self._wait_for_capacity(control, to_applier)
                    collected = await self._collect(inbox)
                    stopping = collected.stop
                    await self._commit(collected, to_applier)
            async for notice in control:
                await self._handle_notice(notice)

    async def _collect(self, inbox: trio.MemoryReceiveChannel[InboxMessage]) -> _Collected:
        """Wait for one message, then take whatever else is already waiting."""
        limit = min(self._max_batch, self._max_ops_per_append, self._journal.remaining_capacity)
        collected = _Collected()
        try:
            message: InboxMessage = await inbox.receive()
        except trio.EndOfChannel:
            collected.stop = True
            return collected
        while True:
            if isinstance(message, Submit):
                collected.submits.append(message)
            elif isinstance(message, CheckpointRequest):
                collected.checkpoints.append(message.reply)
            elif isinstance(message, Stop):
                # Only Wake messages can follow Stop; leave them unread.
                collected.stop = True
                return collected
            else:
                assert isinstance(message, Wake)
            if len(collected.submits) >= limit:
                # The rest stays queued in arrival order for the next batch.
                return collected
            try:
                message = inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return collected

    async def _commit(
        self, collected: _Collected, to_applier: trio.MemorySendChannel[ToApplier]
    ) -> None:
        """Append the batch (one write, one fsync), then pass it on."""
        journal = self._journal
        ops: list[DurableOp] = []
        if collected.submits:
            first = journal.last_op + 1
            entries = [Entry(op=first + i, body=s.body) for i, s in enumerate(collected.submits)]
            try:
                # journal.append runs its write+fsync with run_io, which never
                # abandons started work: a cancellation cannot interrupt the
                # fsync, only be delivered before it starts or after it ends.
                await journal.append(entries)
            except trio.Cancelled:
                raise
            except BaseException as exc:
                # FatalStorageError (or a bug): every waiter of this batch gets
                # the error and the replica stops. Never retry an fsync.
                for submit in collected.submits:
                    submit.reply.fail(exc)
                for reply in collected.checkpoints:
                    reply.fail(exc)
                raise
            ops = [
                DurableOp(op=first + i, command=s.command, reply=s.reply)
                for i, s in enumerate(collected.submits)
            ]
        if ops or collected.checkpoints:
            await to_applier.send(
                DurableBatch(
                    ops=tuple(ops),
                    checkpoints=tuple(collected.checkpoints),
                    remaining_capacity=journal.remaining_capacity,
                )
            )

    async def _wait_for_capacity(
        self,
        control: trio.MemoryReceiveChannel[ControlMessage],
        to_applier: trio.MemorySendChannel[ToApplier],
    ) -> None:
        """Backpressure: block until a durable snapshot frees journal slots."""
        while self._journal.remaining_capacity == 0:
            if self._requests_in_flight == 0:
                await to_applier.send(SnapshotRequest())
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
        self._journal.set_snapshot_op(newest_op)

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
        if journal.snapshot_op <= notice.retain_from:
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
