"""The snapshot coordinator task: the only owner of the :class:`SnapshotStore`.

It persists each snapshot the applier hands it (atomically and durably,
see the store), then tells the journal writer "a snapshot at op N is
durable; the oldest retained one is at op M", so the writer can advance its
watermark to M and compact. Snapshots arrive in op order, one at a time, and
their state objects are dropped as soon as they are on disk, so at most
``coordinator_queue + 2`` snapshot states are ever held in memory.

What a failed persist does (never silently lost):

* fsync of the file or of the directory failed (``SnapshotSyncError``,
  ``SnapshotDirSyncError``) or the storage is unusable
  (``FatalStorageError``): fatal. The page cache can no longer be trusted,
  for the snapshot or for anything else; the checkpoint callers waiting on
  this snapshot get the error and the replica stops with it.
* any other ``SnapshotError`` (writing or renaming failed; the store has
  discarded or kept the temporary file as its error says): not fatal. It is
  logged at WARNING with its file and cause on the
  ``trio_replica.coordinator.task`` logger (invariant 18, docs/invariants.md)
  and counted (:attr:`SnapshotCoordinator.failures`, read through
  ``Replica.snapshot_failures``). The checkpoint callers waiting on this
  snapshot get the error, the writer is told (so a writer waiting for
  capacity asks again), and the next trigger takes a new snapshot. After
  ``max_failures`` failures in a row the replica stops with the last one
  rather than run on without checkpoints while the journal grows.
* ``SnapshotEncodeError`` (a state CBOR cannot encode) or any other
  non-library exception is a bug in the state machine's ``snapshot()``:
  retrying cannot help, so the replica stops with a ``StateMachineError``
  naming the op.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from ..errors import (
    FatalStorageError,
    ReplicaError,
    SnapshotDirSyncError,
    SnapshotError,
    SnapshotSyncError,
    StateMachineError,
)
from ..pipeline import (
    ControlMessage,
    SnapshotDurable,
    SnapshotFailed,
    SnapshotTaken,
    ToWriter,
    Wake,
)
from .snapshot import Snapshot
from .snapshot_format import SnapshotEncodeError
from .store import SnapshotStore

__all__ = ["FATAL_SNAPSHOT_ERRORS", "SnapshotCoordinator"]

logger = logging.getLogger(__name__)

FATAL_SNAPSHOT_ERRORS: tuple[type[ReplicaError], ...] = (
    SnapshotSyncError,
    SnapshotDirSyncError,
    FatalStorageError,
)
"""Persist failures that stop the replica instead of being retried later."""


class SnapshotCoordinator:
    """The coordinator task's state: the snapshot store and the failure counts.

    ``failures`` counts every snapshot that failed to persist without
    stopping the replica, ``consecutive_failures`` those since the last
    success; after ``max_failures`` consecutive ones the task raises the last
    error, which stops the replica. Only this task writes them.
    """

    def __init__(self, store: SnapshotStore, *, max_failures: int = 10) -> None:
        self._store = store
        self._max_failures = max_failures
        self.failures = 0
        self.consecutive_failures = 0

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[SnapshotTaken],
        control: trio.MemorySendChannel[ControlMessage],
        wake: trio.MemorySendChannel[ToWriter],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Persist snapshots until the applier closes ``inbox``; then close ``control``."""
        task_status.started()
        async with inbox, control, wake:
            async for taken in inbox:
                notice = await self._persist(taken)
                await control.send(notice)
                # The writer may be idle, blocked on its inbox: nudge it so the
                # notice (compaction, checkpoint replies) is handled promptly.
                # If the inbox is full the writer is busy and will drain the
                # control channel before its next batch anyway.
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    wake.send_nowait(Wake())

    async def _persist(self, taken: SnapshotTaken) -> ControlMessage:
        store = self._store
        if taken.op > 0 and taken.op != store.latest_op:
            try:
                await store.persist(Snapshot(op=taken.op, state=taken.state))
            except FATAL_SNAPSHOT_ERRORS as exc:
                for reply in taken.checkpoints:
                    reply.fail(exc)
                raise
            except SnapshotEncodeError as exc:
                error = StateMachineError(
                    f"the state snapshot() returned at op {taken.op} cannot be stored: {exc}",
                    op=taken.op,
                )
                for reply in taken.checkpoints:
                    reply.fail(error)
                raise error from exc
            except SnapshotError as exc:
                self._count_failure(taken, exc)
                return SnapshotFailed(
                    op=taken.op,
                    error=exc,
                    checkpoints=taken.checkpoints,
                    for_writer=taken.for_writer,
                )
            except (ReplicaError, trio.Cancelled):
                raise
            except Exception as exc:
                error = StateMachineError(
                    f"the snapshot taken at op {taken.op} could not be persisted: "
                    f"{type(exc).__name__}: {exc}",
                    op=taken.op,
                )
                for reply in taken.checkpoints:
                    reply.fail(error)
                raise error from exc
            self.consecutive_failures = 0
            logger.info(
                "snapshot at op %d persisted (%s)",
                taken.op,
                "checkpoint" if taken.checkpoints else "automatic",
            )
        # An op that is already durable (a checkpoint with nothing new since
        # the last snapshot) or op 0 (nothing applied yet) needs no new file.
        retain_from = store.oldest_retained_op
        return SnapshotDurable(
            op=taken.op,
            retain_from=taken.op if retain_from is None else retain_from,
            checkpoints=taken.checkpoints,
            for_writer=taken.for_writer,
        )

    def _count_failure(self, taken: SnapshotTaken, error: SnapshotError) -> None:
        """Log and count a non-fatal failure; raise it once too many came in a row."""
        self.failures += 1
        self.consecutive_failures += 1
        kind = "checkpoint" if taken.checkpoints else "automatic snapshot"
        logger.warning(
            "%s at op %d failed (%d in a row, %d in all): %s: %s [file %s]",
            kind,
            taken.op,
            self.consecutive_failures,
            self.failures,
            type(error).__name__,
            error,
            error.path,
        )
        if self.consecutive_failures >= self._max_failures:
            error.add_note(
                f"{self.consecutive_failures} snapshots failed in a row "
                f"(max_snapshot_failures={self._max_failures}): the replica stopped "
                "rather than run on without checkpoints"
            )
            for reply in taken.checkpoints:
                reply.fail(error)
            raise error
