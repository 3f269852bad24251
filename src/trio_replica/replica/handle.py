"""The :class:`Replica` handle: what ``open_replica`` gives its caller.

The handle owns no task and no replicated state. ``submit`` encodes the
command in the caller's task (so an un-encodable command fails right there
and is never journaled), adds it to the open request group of the bounded
intake (``intake.py``; waiting there for room is the replica's
backpressure), and waits on that group: one wake for every submitter of
the group once all its ops are applied. ``submit_many`` queues its commands
as a group of their own.

Cancelling a ``submit`` (or ``submit_many``) while it waits for room in the
intake leaves nothing queued. Cancelling it later only stops the waiting:
the commands are queued or on their way to disk, and the pipeline goes on
regardless (the writer's fsync runs in ``run_io``, which never abandons
started work). Their outcome is then unknown to that caller, but the
replica stays consistent: an op is acked only after its fsync, and is
applied exactly once whether or not anyone waits for it.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import trio

from .. import codec
from ..coordinator.task import SnapshotCoordinator
from ..errors import ClosedError, CommandEncodingError, InvalidCommand, ReplicaStoppedError
from ..pipeline import Applied, CheckpointRequest, Reply, RequestGroup
from ..stm.applier import Applier
from ..stm.protocol import StateMachine
from .intake import Intake, IntakeClosed
from .recovery import RecoveryReport
from .sequencer import Sequencer
from .stats import ReplicaStats

__all__ = [
    "Applied",
    "BatchRejectedError",
    "CommandTooLargeError",
    "Replica",
    "ReplicaClosedError",
    "encode_command",
]


class ReplicaClosedError(ReplicaStoppedError, ClosedError):
    """The replica was closed (its ``async with`` block ended) before or while
    this request was made. A request refused with this was never journaled."""


class CommandTooLargeError(CommandEncodingError):
    """A command's CBOR encoding is larger than the journal accepts; nothing
    was journaled. ``size`` and ``limit`` are in bytes."""

    def __init__(self, message: str, *, size: int, limit: int):
        super().__init__(message)
        self.size = size
        self.limit = limit


class BatchRejectedError(InvalidCommand):
    """The state machine rejected some commands of a ``submit_many`` batch.

    Every command of the batch was journaled and applied (or rejected) in
    order, exactly as if submitted one by one: the rejections are ops of the
    journal and are rejected the same way on replay. ``results`` has one
    item per command, in order: ``apply()``'s result, or the
    :class:`~trio_replica.errors.InvalidCommand` raised for that command
    (its ``op`` set); ``rejected`` lists the indexes of the rejected ones.
    ``op`` is the op of the first rejected command.
    """

    def __init__(self, message: str, *, results: list[Any], rejected: list[int], op: int):
        super().__init__(message)
        self.results = results
        self.rejected = rejected
        self.op = op


def encode_command(command: Any, *, limit: int) -> tuple[bytes, Any]:
    """Return ``(body, value)``: the command's CBOR bytes and those bytes decoded.

    The applier applies ``value``, the very value replay will decode from the
    journal after a restart (a tuple comes back as a list, and so on), so the
    live state and the recovered state cannot differ because of encoding.
    A command the codec refuses (:func:`trio_replica.codec.encode`: not
    encodable, nested too deeply, not decodable back) or larger than
    ``limit`` bytes is refused here, before anything is journaled, with
    :class:`~trio_replica.errors.CommandEncodingError`.
    """
    try:
        body, value = codec.encode(command)
    except codec.UnencodableError as exc:
        raise CommandEncodingError(
            f"command is refused: {exc.reason}; nothing was journaled"
        ) from exc
    if len(body) > limit:
        raise CommandTooLargeError(
            f"command is {len(body)} bytes once encoded, more than the limit of {limit}; "
            "nothing was journaled",
            size=len(body),
            limit=limit,
        )
    return body, value


class _State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    STOPPED = "stopped"


class Replica:
    """A running replica: submit commands, take checkpoints, read progress.

    Obtained from :func:`~trio_replica.open_replica`; valid inside its
    ``async with`` block. Any task may call :meth:`submit` concurrently:
    concurrent submits are group-committed (one fsync per batch).
    """

    def __init__(
        self,
        *,
        machine: StateMachine,
        sequencer: Sequencer,
        applier: Applier,
        coordinator: SnapshotCoordinator,
        recovery: RecoveryReport,
        intake: Intake,
        max_command_bytes: int,
        stats: Callable[[], ReplicaStats] | None = None,
    ) -> None:
        self._machine = machine
        self._stats = stats
        self._sequencer = sequencer
        self._applier = applier
        self._coordinator = coordinator
        self._recovery = recovery
        self._intake = intake
        self._max_command_bytes = max_command_bytes
        self._state = _State.OPEN
        self._failure: BaseException | None = None
        self._cancelled = False
        # Replies of requests that reached the intake and are still awaited
        # by someone; settled by open_replica after the tasks are gone if
        # still pending. Weak: a group nobody waits for any more (and no
        # task holds) needs no answer, and must not pile up here.
        self._outstanding: weakref.WeakSet[RequestGroup | Reply[int]] = weakref.WeakSet()
        # Set by _finish, once every task has exited and the failure is known.
        self._finished = trio.Event()

    @property
    def recovery(self) -> RecoveryReport:
        """What recovery did when this replica was opened."""
        return self._recovery

    @property
    def machine(self) -> StateMachine:
        """The user's state machine. Owned by the applier task: read it only
        between checkpoints, never change it."""
        return self._machine

    @property
    def prepared_op(self) -> int:
        """The last op numbered (it may not be durable yet)."""
        return self._sequencer.prepared_op

    @property
    def committed_op(self) -> int:
        """The last op committed (for a single replica: durable) and handed
        to the applier; at most :attr:`prepared_op`."""
        return self._sequencer.committed_op

    @property
    def applied_op(self) -> int:
        """The last op applied to the state machine (accepted or rejected);
        at most :attr:`committed_op`."""
        return self._applier.applied_op

    @property
    def snapshot_failures(self) -> int:
        """Snapshots that failed to persist since open without stopping the
        replica (each also logged at WARNING on ``trio_replica.coordinator.task``).
        ``max_snapshot_failures`` of them in a row stop it."""
        return self._coordinator.failures

    def stats(self) -> ReplicaStats:
        """Counters of this replica now: ops, batches and fsyncs since open,
        time in fsync, queue depths, the last checkpoint, snapshot failures
        (see :class:`~trio_replica.replica.stats.ReplicaStats`). Cheap; call
        it from any task, as often as monitoring needs."""
        if self._stats is None:
            raise RuntimeError("this Replica was built without counters")
        return self._stats()

    @property
    def closed(self) -> bool:
        """True once the replica no longer accepts requests."""
        return self._state is not _State.OPEN

    async def submit(self, command: Any) -> Any:
        """Journal ``command`` durably, apply it, and return ``apply()``'s result.

        Raises :class:`~trio_replica.errors.CommandEncodingError` (nothing
        journaled) if the command cannot be CBOR-encoded,
        :class:`~trio_replica.errors.InvalidCommand` if the state machine
        rejected it (the op is journaled and rejected again on replay), and
        :class:`~trio_replica.errors.ReplicaStoppedError` if the replica
        stopped first.
        """
        # The body of execute(), inlined: one coroutine frame per op less.
        self._check_open()
        body, value = encode_command(command, limit=self._max_command_bytes)
        try:
            group, index = await self._intake.put(body, value)
        except IntakeClosed:
            error = await self._closed_error()
            raise error from error.__cause__
        if index == 0:
            self._outstanding.add(group)
        await group.wait()
        return group.outcome(index).result

    async def execute(self, command: Any) -> Applied:
        """Like :meth:`submit`, but return :class:`Applied` (the op and the result)."""
        self._check_open()
        body, value = encode_command(command, limit=self._max_command_bytes)
        try:
            group, index = await self._intake.put(body, value)
        except IntakeClosed:
            error = await self._closed_error()
            raise error from error.__cause__
        if index == 0:
            self._outstanding.add(group)  # once per group: it is the group that is awaited
        await group.wait()
        return group.outcome(index)

    async def submit_many(self, commands: Iterable[Any]) -> list[Any]:
        """Journal ``commands`` durably as one group, apply them in order, and
        return ``apply()``'s results in the same order.

        The commands get consecutive ops, none interleaved with another
        submitter's, and are made durable together: one write and one fsync
        when they fit in one append (at most ``max_batch`` commands, and the
        journal has room), otherwise in consecutive appends, answered
        together after the last. All are encoded first: if any cannot be
        (:class:`~trio_replica.errors.CommandEncodingError`, its message
        naming the index), NOTHING is journaled. If the state machine rejects
        some, all the others are still applied and
        :class:`BatchRejectedError` (an ``InvalidCommand``) carries every
        result and rejection in order. :class:`ReplicaStoppedError` if the
        replica stopped first; then the batch's outcome is unknown (some of
        its ops may be durable), as with :meth:`submit`.

        Cancellation: cancelled while it waits for room in the intake,
        nothing was queued; cancelled after that, every command is still
        journaled and applied exactly once, in order, and only the answer
        is lost. A returned list means every command is durable.
        """
        self._check_open()
        bodies: list[bytes] = []
        values: list[Any] = []
        limit = self._max_command_bytes
        for index, command in enumerate(commands):
            try:
                body, value = encode_command(command, limit=limit)
            except CommandEncodingError as exc:
                exc.args = (f"command {index} of the batch: {exc}",)
                raise
            bodies.append(body)
            values.append(value)
        if not bodies:
            await trio.lowlevel.checkpoint()
            return []
        try:
            group = await self._intake.put_many(bodies, values)
        except IntakeClosed:
            error = await self._closed_error()
            raise error from error.__cause__
        self._outstanding.add(group)
        await group.wait()
        results: list[Any] = []
        rejected: list[int] = []
        for index, outcome in enumerate(group.outcomes):
            if isinstance(outcome, Applied):
                results.append(outcome.result)
            elif isinstance(outcome, InvalidCommand):
                results.append(outcome)
                rejected.append(index)
            else:
                raise outcome  # the replica stopped: the batch's outcome is unknown
        if rejected:
            first = results[rejected[0]]
            raise BatchRejectedError(
                f"{len(rejected)} of {len(results)} commands were rejected "
                f"(the first, command {rejected[0]}: {first}); the others were applied",
                results=results,
                rejected=rejected,
                op=group.first_op + rejected[0],
            )
        return results

    async def checkpoint(self) -> int:
        """Snapshot the state after every command submitted before this call,
        wait until the snapshot is durable and the journal compacted, and
        return the snapshot's op (0 when no op was ever applied).

        A non-fatal snapshot failure (see ``trio_replica.coordinator.task``)
        is raised here; the replica keeps running.
        """
        self._check_open()
        reply: Reply[int] = Reply()
        try:
            await self._intake.put_checkpoint(CheckpointRequest(reply=reply))
        except IntakeClosed:
            error = await self._closed_error()
            raise error from error.__cause__
        self._outstanding.add(reply)
        return await reply.wait()

    async def _closed_error(self) -> ReplicaStoppedError:
        """The error for a request the intake refused.

        Closed by :meth:`_close` (leaving the block): the replica is closed.
        Closed by :meth:`_finish` (a task failed, or the replica was
        cancelled): the state already says why.
        """
        if self._state is _State.CLOSING:
            return ReplicaClosedError("the replica is closed")
        await self._finished.wait()
        return self._stopped_error()

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise self._stopped_error()

    def _stopped_error(self) -> ReplicaStoppedError:
        if self._cancelled:
            return ReplicaStoppedError(
                "the replica was cancelled; this request's outcome is unknown"
            )
        if self._failure is not None:
            error = ReplicaStoppedError(
                f"the replica stopped because of {type(self._failure).__name__}: "
                f"{self._failure}; this request's outcome is unknown"
            )
            error.__cause__ = self._failure
            return error
        return ReplicaClosedError("the replica is closed")

    # --- used by open_replica only ------------------------------------------

    async def _close(self) -> None:
        """Stop taking requests and let the tasks drain what is in flight.

        Closing the intake wakes any submit waiting for room with
        ``ReplicaClosedError`` (its command was never queued) and queues
        ``Stop`` behind every request that did get in, so each of those is
        answered before the writer shuts the pipeline down.
        """
        self._state = _State.CLOSING
        self._intake.close()
        await trio.lowlevel.checkpoint()

    def _finish(self, failure: BaseException | None) -> None:
        """Mark the replica stopped and fail every request still waiting.

        Called once every task has exited, so no task can settle these
        replies any more: this is their last owner.
        """
        self._state = _State.STOPPED
        if isinstance(failure, trio.Cancelled):
            self._cancelled = True
        elif failure is not None:
            self._failure = failure
        self._intake.close()
        error = self._stopped_error()
        for request in self._intake.pending():
            if isinstance(request, RequestGroup):
                request.fail_pending(error)
            else:
                request.reply.fail_if_pending(error)
        for reply in list(self._outstanding):
            if isinstance(reply, RequestGroup):
                reply.fail_pending(error)
            else:
                reply.fail_if_pending(error)
        self._outstanding.clear()
        self._finished.set()
