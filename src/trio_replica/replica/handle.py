"""The :class:`Replica` handle: what ``open_replica`` gives its caller.

The handle owns no task and no replicated state. ``submit`` encodes the
command in the caller's task (so an un-encodable command fails right there
and is never journaled), puts it in the sequencer's bounded inbox
(waiting there is the replica's backpressure), and waits on the command's
one-shot :class:`~trio_replica.pipeline.Reply`.

Cancelling a ``submit`` only stops the waiting: the command may already be
in the inbox or on its way to disk, and the pipeline goes on regardless
(the writer's fsync runs in ``run_io``, which never abandons started work).
The op's outcome is then unknown to that caller, but the replica stays
consistent: an op is acked only after its fsync, and is applied exactly
once whether or not anyone waits for it.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Any, TypeVar

import trio

from .. import codec
from ..coordinator.task import SnapshotCoordinator
from ..errors import ClosedError, CommandEncodingError, ReplicaStoppedError
from ..pipeline import Applied, CheckpointRequest, InboxMessage, Reply, Stop, Submit
from ..stm.applier import Applier
from ..stm.protocol import StateMachine
from .recovery import RecoveryReport
from .sequencer import Sequencer

__all__ = [
    "Applied",
    "CommandTooLargeError",
    "Replica",
    "ReplicaClosedError",
    "encode_command",
]

T = TypeVar("T")


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
        submit_send: trio.MemorySendChannel[InboxMessage],
        stop_send: trio.MemorySendChannel[InboxMessage],
        max_command_bytes: int,
    ) -> None:
        self._machine = machine
        self._sequencer = sequencer
        self._applier = applier
        self._coordinator = coordinator
        self._recovery = recovery
        self._submit_send = submit_send
        self._stop_send = stop_send
        self._max_command_bytes = max_command_bytes
        self._state = _State.OPEN
        self._failure: BaseException | None = None
        self._cancelled = False
        # Replies of requests that reached the inbox and are still awaited;
        # settled by open_replica after the tasks are gone if still pending.
        self._outstanding: set[Reply[Any]] = set()
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
        applied = await self.execute(command)
        return applied.result

    async def execute(self, command: Any) -> Applied:
        """Like :meth:`submit`, but return :class:`Applied` (the op and the result)."""
        self._check_open()
        body, value = encode_command(command, limit=self._max_command_bytes)
        reply: Reply[Applied] = Reply()
        return await self._request(Submit(body=body, command=value, reply=reply), reply)

    async def checkpoint(self) -> int:
        """Snapshot the state after every command submitted before this call,
        wait until the snapshot is durable and the journal compacted, and
        return the snapshot's op (0 when no op was ever applied).

        A non-fatal snapshot failure (see ``trio_replica.coordinator.task``)
        is raised here; the replica keeps running.
        """
        self._check_open()
        reply: Reply[int] = Reply()
        return await self._request(CheckpointRequest(reply=reply), reply)

    async def _request(self, message: InboxMessage, reply: Reply[T]) -> T:
        self._outstanding.add(reply)
        try:
            try:
                await self._submit_send.send(message)
            except trio.ClosedResourceError:
                # We closed the channel ourselves (closing or stopped): the
                # state already says why.
                error = self._stopped_error()
                raise error from error.__cause__
            except trio.BrokenResourceError:
                # The writer is gone, so a task failed or the replica was
                # cancelled, but open_replica records which only once every
                # task has exited. Wait for that, so this request reports the
                # real cause (and the block, if it re-raises, the failure
                # itself) instead of a bare "closed".
                await self._finished.wait()
                error = self._stopped_error()
                raise error from error.__cause__
            return await reply.wait()
        finally:
            self._outstanding.discard(reply)

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

        Closing the submitters' channel first wakes any submit blocked on a
        full inbox with ``ReplicaClosedError`` (its command was never queued);
        then ``Stop`` is queued behind every request that did get in, so each
        of those is answered before the writer shuts the pipeline down.
        """
        self._state = _State.CLOSING
        self._submit_send.close()
        # BrokenResourceError: the writer is already gone; the nursery reports why.
        with contextlib.suppress(trio.BrokenResourceError):
            await self._stop_send.send(Stop())
        self._stop_send.close()

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
        self._submit_send.close()
        self._stop_send.close()
        for reply in list(self._outstanding):
            reply.fail_if_pending(self._stopped_error())
        self._outstanding.clear()
        self._finished.set()
