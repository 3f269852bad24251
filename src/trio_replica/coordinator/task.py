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
  discarded or kept the temporary file as its error says): not fatal. The
  checkpoint callers waiting on this snapshot get the error, the writer is
  told (so a writer waiting for capacity asks again), and the next trigger
  takes a new snapshot.
* ``SnapshotEncodeError`` (a state CBOR cannot encode) or any other
  non-library exception is a bug in the state machine's ``snapshot()``:
  retrying cannot help, so the replica stops with a ``StateMachineError``
  naming the op.
"""

from __future__ import annotations

import contextlib

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
    InboxMessage,
    SnapshotDurable,
    SnapshotFailed,
    SnapshotTaken,
    Wake,
)
from .snapshot import Snapshot
from .snapshot_format import SnapshotEncodeError
from .store import SnapshotStore

__all__ = ["FATAL_SNAPSHOT_ERRORS", "SnapshotCoordinator"]

FATAL_SNAPSHOT_ERRORS: tuple[type[ReplicaError], ...] = (
    SnapshotSyncError,
    SnapshotDirSyncError,
    FatalStorageError,
)
"""Persist failures that stop the replica instead of being retried later."""


class SnapshotCoordinator:
    """The coordinator task's state: the snapshot store."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[SnapshotTaken],
        control: trio.MemorySendChannel[ControlMessage],
        wake: trio.MemorySendChannel[InboxMessage],
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
        # An op that is already durable (a checkpoint with nothing new since
        # the last snapshot) or op 0 (nothing applied yet) needs no new file.
        retain_from = store.oldest_retained_op
        return SnapshotDurable(
            op=taken.op,
            retain_from=taken.op if retain_from is None else retain_from,
            checkpoints=taken.checkpoints,
            for_writer=taken.for_writer,
        )
