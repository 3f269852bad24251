"""The sequencer task: a single replica's stand-in for consensus.

It sits where a consensus task will sit, in front of the journal writer and
after it, and owns what that task will own: the op numbers (the prepared
op), the replies of the requests it numbered, and the commit rule. For a
single replica the rule is the simplest one: an op is committed as soon as
it is durable. Two loops share this state (Trio runs one at a time):

* intake: takes a request and whatever else is already waiting in the inbox
  (up to ``max_batch`` commands), numbers the commands, keeps their replies,
  and sends the numbered entries to the writer (:class:`Prepares`). A
  checkpoint request is remembered with the op it must follow and sent on
  as an empty :class:`Prepares`, a barrier the writer answers in order.
* commit: for each :class:`Durable` from the writer, sends the applier a
  :class:`Commit` of the ops up to that op, their replies, and the
  checkpoints that follow no later op; a :class:`SnapshotRequest` from the
  writer is passed on behind it.

The commit loop never waits for the intake loop, so a writer waiting for a
snapshot to free the journal is never stuck behind a sequencer waiting for
that writer (see ``nursery.CHANNELS`` for the cycle argument).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from ..pipeline import (
    Applied,
    CheckpointRequest,
    Commit,
    Durable,
    FromWriter,
    InboxMessage,
    Prepare,
    Prepares,
    Reply,
    SnapshotRequest,
    Stop,
    Submit,
    ToApplier,
    ToWriter,
)

__all__ = ["Sequencer"]


class Sequencer:
    """The sequencer task's state.

    ``prepared_op`` (the last op numbered) and ``committed_op`` (the last op
    sent to the applier as committed) are written only by this task; the
    replica handle may read them.
    """

    def __init__(self, *, last_op: int, max_batch: int) -> None:
        self.prepared_op = last_op
        self.committed_op = last_op
        self._max_batch = max_batch
        # Numbered but not yet committed, in op order, and their replies.
        self._uncommitted: deque[Prepare] = deque()
        self._replies: dict[int, Reply[Applied]] = {}
        # Checkpoint replies and the op each must follow, in arrival order.
        self._checkpoints: deque[tuple[int, Reply[int]]] = deque()

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[InboxMessage],
        to_writer: trio.MemorySendChannel[ToWriter],
        from_writer: trio.MemoryReceiveChannel[FromWriter],
        to_applier: trio.MemorySendChannel[ToApplier],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Number requests until ``Stop``; commit until the writer closes ``from_writer``.

        Shutdown: ``Stop`` is passed on to the writer, which finishes and
        closes ``from_writer``; the last commits are sent and ``to_applier``
        is closed, which ends the applier.
        """
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._intake, inbox, to_writer)
            nursery.start_soon(self._commit, from_writer, to_applier)

    def fail_uncommitted(self, error: BaseException) -> None:
        """Fail the replies of every op not yet committed, and every pending
        checkpoint, with ``error``. Called by ``open_replica`` after every
        task has exited, when the writer failed: those ops' outcome is the
        failed append's (unknown), and this is their last owner."""
        for reply in self._replies.values():
            reply.fail_if_pending(error)
        for _, checkpoint in self._checkpoints:
            checkpoint.fail_if_pending(error)
        self._replies.clear()
        self._checkpoints.clear()

    # --- intake -----------------------------------------------------------------

    async def _intake(
        self,
        inbox: trio.MemoryReceiveChannel[InboxMessage],
        to_writer: trio.MemorySendChannel[ToWriter],
    ) -> None:
        async with inbox, to_writer:
            while True:
                try:
                    message: InboxMessage = await inbox.receive()
                except trio.EndOfChannel:
                    message = Stop()
                prepares: list[Prepare] = []
                while True:
                    if isinstance(message, Submit):
                        prepares.append(self._number(message))
                    elif isinstance(message, CheckpointRequest):
                        if prepares:
                            await to_writer.send(Prepares(tuple(prepares)))
                            prepares = []
                        self._checkpoints.append((self.prepared_op, message.reply))
                        await to_writer.send(Prepares(()))  # the barrier
                    else:
                        assert isinstance(message, Stop)
                        if prepares:
                            await to_writer.send(Prepares(tuple(prepares)))
                        await to_writer.send(Stop())
                        return
                    if len(prepares) >= self._max_batch:
                        break  # the rest stays queued in arrival order
                    try:
                        message = inbox.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if prepares:
                    await to_writer.send(Prepares(tuple(prepares)))

    def _number(self, submit: Submit) -> Prepare:
        self.prepared_op += 1
        prepare = Prepare(op=self.prepared_op, body=submit.body, command=submit.command)
        self._uncommitted.append(prepare)
        self._replies[prepare.op] = submit.reply
        return prepare

    # --- commit -----------------------------------------------------------------

    async def _commit(
        self,
        from_writer: trio.MemoryReceiveChannel[FromWriter],
        to_applier: trio.MemorySendChannel[ToApplier],
    ) -> None:
        async with from_writer, to_applier:
            async for message in from_writer:
                if isinstance(message, SnapshotRequest):
                    await to_applier.send(message)
                    continue
                assert isinstance(message, Durable)
                # A single replica's commit rule: durable is committed.
                await to_applier.send(self._committed_up_to(message))

    def _committed_up_to(self, durable: Durable) -> Commit:
        prepares: list[Prepare] = []
        replies: dict[int, Reply[Any]] = {}
        while self._uncommitted and self._uncommitted[0].op <= durable.op:
            prepare = self._uncommitted.popleft()
            prepares.append(prepare)
            reply = self._replies.pop(prepare.op, None)
            if reply is not None:
                replies[prepare.op] = reply
        checkpoints: list[Reply[int]] = []
        while self._checkpoints and self._checkpoints[0][0] <= durable.op:
            checkpoints.append(self._checkpoints.popleft()[1])
        self.committed_op = max(self.committed_op, durable.op)
        return Commit(
            op=self.committed_op,
            prepares=tuple(prepares),
            replies=replies,
            checkpoints=tuple(checkpoints),
            remaining_capacity=durable.remaining_capacity,
        )
