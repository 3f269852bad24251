"""The applier task: the only owner of the user's :class:`StateMachine`.

It receives "committed up to op" (:class:`~trio_replica.pipeline.Commit`,
with the committed ops), applies each op in op order, and answers the
submitter of each op that has one: with :class:`~trio_replica.pipeline.Applied`,
or with the :class:`~trio_replica.errors.InvalidCommand` that ``apply``
raised (a deterministic rejection: the replica keeps serving, and replay
rejects the op the same way). Any other exception from ``apply`` is a bug
in the state machine: its state may be half-changed, so the applier fails
every reply it holds with :class:`~trio_replica.errors.StateMachineError`
and raises it, which stops the replica.

It also owns the checkpoint policy: after a message it takes at most one
snapshot, handed to the coordinator, when a checkpoint was requested, when
``snapshot_every`` ops were applied since the last one, when the journal's
remaining capacity runs low, or when the writer asks because it is full.
"""

from __future__ import annotations

from typing import Any

import trio

from ..errors import StateMachineError
from ..pipeline import (
    Commit,
    Reply,
    SnapshotRequest,
    SnapshotTaken,
    ToApplier,
)
from .apply import apply_op
from .protocol import StateMachine

__all__ = ["Applier"]


class Applier:
    """The applier task's state.

    ``applied_op`` is written only by this task; other code (the replica
    handle) may read it, which is safe because Trio runs one task at a time.
    """

    def __init__(
        self,
        machine: StateMachine,
        *,
        applied_op: int,
        last_snapshot_op: int,
        snapshot_every: int,
        low_capacity: int,
    ) -> None:
        self.machine = machine
        self.applied_op = applied_op
        self.last_snapshot_op = last_snapshot_op
        self._snapshot_every = snapshot_every
        self._low_capacity = low_capacity

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[ToApplier],
        to_coordinator: trio.MemorySendChannel[SnapshotTaken],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Apply until the writer closes the channel, then close ``to_coordinator``."""
        task_status.started()
        async with inbox, to_coordinator:
            async for message in inbox:
                if isinstance(message, Commit):
                    self._apply_commit(message)
                    checkpoints = message.checkpoints
                    for_writer = False
                    low = message.remaining_capacity < self._low_capacity
                else:
                    assert isinstance(message, SnapshotRequest)
                    checkpoints = ()
                    for_writer = True
                    low = True
                if not self._wants_snapshot(checkpoints, for_writer, low):
                    continue
                state = self._snapshot_state(checkpoints)
                # One snapshot per message at most: the control channel's
                # size relies on it (ReplicaConfig.control_queue).
                await to_coordinator.send(
                    SnapshotTaken(
                        op=self.applied_op,
                        state=state,
                        checkpoints=checkpoints,
                        for_writer=for_writer,
                    )
                )
                self.last_snapshot_op = self.applied_op

    def _wants_snapshot(
        self, checkpoints: tuple[Reply[int], ...], for_writer: bool, low: bool
    ) -> bool:
        if checkpoints or for_writer:
            # Explicit requests are always answered, even without new ops:
            # the coordinator skips persisting an op that is already durable.
            return True
        advanced = self.applied_op - self.last_snapshot_op
        return advanced >= self._snapshot_every or (low and advanced > 0)

    def _apply_commit(self, commit: Commit) -> None:
        machine = self.machine
        # The groups are in op order and cover runs of consecutive ops; walk
        # them beside the ops (an op in no group has no local submitter).
        groups = iter(commit.groups)
        group = next(groups, None)
        for prepares in commit.prepares:
            op = prepares.first_op
            for command in prepares.commands:
                if op != self.applied_op + 1:
                    error = StateMachineError(
                        f"op {op} arrived after op {self.applied_op} (ops out of order)",
                        op=op,
                    )
                    self._fail_rest(commit, error)
                    raise error
                try:
                    outcome = apply_op(machine, op, command)
                except StateMachineError as error:
                    self._fail_rest(commit, error)
                    raise
                self.applied_op = op
                while group is not None and group.last_op < op:
                    group = next(groups, None)
                if group is not None and group.first_op <= op:
                    # Applied, or the InvalidCommand the submitter gets.
                    group.settle(op - group.first_op, outcome)
                op += 1

    def _snapshot_state(self, checkpoints: tuple[Reply[int], ...]) -> Any:
        try:
            return self.machine.snapshot()
        except Exception as exc:
            error = StateMachineError(
                f"state machine {self.machine.name!r} raised {type(exc).__name__} "
                f"in snapshot() at op {self.applied_op}: {exc}",
                op=self.applied_op,
            )
            for reply in checkpoints:
                reply.fail(error)
            raise error from exc

    @staticmethod
    def _fail_rest(commit: Commit, error: StateMachineError) -> None:
        """Fail every op of the commit not applied yet (the failing one and
        those after it) and its checkpoints. Ops applied before the failure
        keep their outcome."""
        for group in commit.groups:
            group.fail_pending(error)
        for checkpoint in commit.checkpoints:
            checkpoint.fail(error)
