"""The sequencer task: a single replica's stand-in for consensus.

It sits where a consensus task will sit, in front of the journal writer and
after it, and owns what that task will own: the op numbers (the prepared
op), the replies of the requests it numbered, and the commit rule. For a
single replica the rule is the simplest one: an op is committed as soon as
it is durable. Two loops share this state (Trio runs one at a time):

* intake: takes every request group waiting in the intake (whole groups,
  up to about ``max_batch`` commands; see ``intake.py``), numbers each group
  (its ops are consecutive), keeps the groups, and sends the numbered
  entries to the writer as ONE :class:`Prepares`. A checkpoint request is
  remembered with the op it must follow and sent on as an empty
  :class:`Prepares`, a barrier the writer answers in order.
* commit: for each :class:`Durable` from the writer, sends the applier a
  :class:`Commit` of the ops up to that op, their request groups, and the
  checkpoints that follow no later op; a :class:`SnapshotRequest` from the
  writer is passed on behind it.

The commit loop never waits for the intake loop, so a writer waiting for a
snapshot to free the journal is never stuck behind a sequencer waiting for
that writer (see ``nursery.CHANNELS`` for the cycle argument).
"""

from __future__ import annotations

from collections import deque

import trio

from ..pipeline import (
    CheckpointRequest,
    Commit,
    Durable,
    FromWriter,
    Prepares,
    Reply,
    RequestGroup,
    SnapshotRequest,
    Stop,
    ToApplier,
    ToWriter,
)
from .intake import Intake

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
        # Numbered but not yet committed, in op order, and their groups.
        self._uncommitted: deque[Prepares] = deque()
        self._groups: deque[RequestGroup] = deque()
        # Checkpoint replies and the op each must follow, in arrival order.
        self._checkpoints: deque[tuple[int, Reply[int]]] = deque()

    async def run(
        self,
        intake: Intake,
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
            nursery.start_soon(self._intake, intake, to_writer)
            nursery.start_soon(self._commit, from_writer, to_applier)

    def fail_uncommitted(self, error: BaseException) -> None:
        """Fail every op not yet committed, and every pending checkpoint,
        with ``error``. Called when the writer failed: those ops' outcome is
        the failed append's (unknown), and this task is their owner."""
        for group in self._groups:
            group.fail_pending(error)
        for _, checkpoint in self._checkpoints:
            checkpoint.fail_if_pending(error)
        self._groups.clear()
        self._checkpoints.clear()

    # --- intake -----------------------------------------------------------------

    async def _intake(self, intake: Intake, to_writer: trio.MemorySendChannel[ToWriter]) -> None:
        async with to_writer:
            while True:
                taken = await intake.take(self._max_batch)
                bodies: list[bytes] = []
                commands: list[object] = []
                first = self.prepared_op + 1
                for message in taken:
                    if isinstance(message, RequestGroup):
                        prepares = message.number(self.prepared_op + 1)
                        self.prepared_op = prepares.last_op
                        self._uncommitted.append(prepares)
                        self._groups.append(message)
                        bodies.extend(prepares.bodies)
                        commands.extend(prepares.commands)
                        continue
                    if bodies:
                        await to_writer.send(Prepares(first, tuple(bodies), tuple(commands)))
                        bodies, commands = [], []
                    first = self.prepared_op + 1
                    if isinstance(message, CheckpointRequest):
                        self._checkpoints.append((self.prepared_op, message.reply))
                        await to_writer.send(Prepares(first, (), ()))  # the barrier
                    else:
                        assert isinstance(message, Stop)
                        await to_writer.send(Stop())
                        return
                if bodies:
                    await to_writer.send(Prepares(first, tuple(bodies), tuple(commands)))

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
        op = durable.op
        prepares: list[Prepares] = []
        uncommitted = self._uncommitted
        while uncommitted and uncommitted[0].first_op <= op:
            head = uncommitted.popleft()
            if head.last_op > op:
                # Part of it is durable (the writer split it): commit that
                # part, keep the rest for the next Durable.
                head, rest = head.split(op - head.first_op + 1)
                uncommitted.appendleft(rest)
            prepares.append(head)
        groups: list[RequestGroup] = []
        queued = self._groups
        while queued and queued[0].first_op <= op:
            group = queued[0]
            groups.append(group)
            if group.last_op > op:
                break  # its later ops come with a later commit
            queued.popleft()
        checkpoints: list[Reply[int]] = []
        while self._checkpoints and self._checkpoints[0][0] <= op:
            checkpoints.append(self._checkpoints.popleft()[1])
        self.committed_op = max(self.committed_op, op)
        return Commit(
            op=self.committed_op,
            prepares=tuple(prepares),
            groups=tuple(groups),
            checkpoints=tuple(checkpoints),
            remaining_capacity=durable.remaining_capacity,
        )
