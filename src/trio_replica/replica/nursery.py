"""``open_replica``: the one place that knows the whole wiring.

It locks the data directory, recovers, and starts the three tasks in ONE
nursery, each with ``nursery.start`` so a startup error surfaces at open::

    submitters --inbox--> [journal writer] --durable--> [applier] --snapshots--> [coordinator]
                            ^    ^                                                   |
                            |    +--------- Wake (send_nowait, best effort) ---------+
                            +-------------- control: snapshot durable at op N -------+

Every piece of mutable state has one owner: the writer owns the journal,
the applier the state machine, the coordinator the snapshot store. Every
channel is bounded, so a slow stage pushes back on the one before it, up to
the submitters; see ``docs/architecture.md`` for the sizes and why the
control channel can never block the coordinator forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio

from ..coordinator.task import SnapshotCoordinator
from ..layout import LOCK_NAME
from ..pipeline import ControlMessage, InboxMessage, SnapshotTaken, ToApplier
from ..stm.applier import Applier
from ..stm.protocol import StateMachine
from ..storage import Directory, DirectoryLike, DirectoryLock, open_directory, run_io
from .config import ReplicaConfig
from .handle import Replica
from .recovery import recover
from .writer import JournalWriter

__all__ = ["open_replica"]


@asynccontextmanager
async def open_replica(
    directory: DirectoryLike,
    machine: StateMachine,
    *,
    snapshot_every: int = 10_000,
    slot_count: int | None = None,
    segment_bytes: int = 64 * 2**20,
    max_batch: int = 256,
    keep_snapshots: int = 2,
    max_command_bytes: int = 4 * 2**20,
    inbox_size: int | None = None,
    applier_queue: int = 4,
    coordinator_queue: int = 1,
    max_snapshot_failures: int = 10,
) -> AsyncIterator[Replica]:
    """Open (creating if needed) the data ``directory``, recover ``machine``
    from it, and run the replica for the duration of the ``async with`` block.

    ``snapshot_every``: ops between automatic snapshots. ``slot_count``: the
    journal's ring size (``None``: :func:`default_slot_count`); when the ring
    is full, submitters wait until a snapshot frees it. ``segment_bytes``:
    journal segment size. ``max_batch``: most commands per fsync.
    ``keep_snapshots``: snapshots retained (the journal is kept back to the
    oldest of them). ``max_command_bytes``: largest encoded command.
    ``inbox_size`` (default ``max_batch``), ``applier_queue`` and
    ``coordinator_queue``: channel sizes, in messages.
    ``max_snapshot_failures``: consecutive failed automatic snapshots after
    which the replica stops with the last failure.

    Every setting is validated (see :class:`ReplicaConfig`) before the
    directory is touched: a wrong one raises
    :class:`~trio_replica.replica.config.InvalidSettingError`, a
    ``ValueError`` naming it.

    Raises :class:`~trio_replica.errors.DirectoryLockedError` if another
    replica (in this or another process) has the directory open, and what
    :func:`~trio_replica.replica.recover` raises. Leaving the block normally
    answers every request that was queued, then closes everything and
    releases the lock. If a task fails (``FatalStorageError``,
    ``StateMachineError``, a fatal snapshot error), the block is cancelled
    and that error propagates out of the ``async with``.
    """
    # Validated before the directory is created or locked.
    chosen = {"slot_count": slot_count, "inbox_size": inbox_size}
    config = ReplicaConfig(
        snapshot_every=snapshot_every,
        segment_bytes=segment_bytes,
        max_batch=max_batch,
        keep_snapshots=keep_snapshots,
        max_command_bytes=max_command_bytes,
        applier_queue=applier_queue,
        coordinator_queue=coordinator_queue,
        max_snapshot_failures=max_snapshot_failures,
        **{name: value for name, value in chosen.items() if value is not None},
    )
    data = await open_directory(directory, create=True)
    lock = await _take_lock(data)
    try:
        journal, store, report = await recover(
            data,
            machine,
            slot_count=config.slot_count,
            segment_bytes=config.segment_bytes,
            max_body_bytes=config.max_command_bytes,
            keep_snapshots=config.keep_snapshots,
            lock=False,
        )
        replica: Replica | None = None
        failure: BaseException | None = None
        try:
            with _single_error():
                async with trio.open_nursery() as nursery:
                    inbox_send, inbox_recv = trio.open_memory_channel[InboxMessage](
                        config.inbox_size
                    )
                    applier_send, applier_recv = trio.open_memory_channel[ToApplier](
                        config.applier_queue
                    )
                    coordinator_send, coordinator_recv = trio.open_memory_channel[SnapshotTaken](
                        config.coordinator_queue
                    )
                    control_send, control_recv = trio.open_memory_channel[ControlMessage](
                        control_queue(config)
                    )
                    applier = Applier(
                        machine,
                        applied_op=report.last_op,
                        last_snapshot_op=report.snapshot_op,
                        snapshot_every=config.snapshot_every,
                        low_capacity=config.low_capacity,
                    )
                    writer = JournalWriter(
                        journal,
                        max_batch=config.max_batch,
                        max_ops_per_append=config.max_ops_per_append,
                    )
                    coordinator = SnapshotCoordinator(
                        store, max_failures=config.max_snapshot_failures
                    )
                    await nursery.start(
                        coordinator.run, coordinator_recv, control_send, inbox_send.clone()
                    )
                    await nursery.start(applier.run, applier_recv, coordinator_send)
                    await nursery.start(writer.run, inbox_recv, control_recv, applier_send)
                    replica = Replica(
                        machine=machine,
                        applier=applier,
                        coordinator=coordinator,
                        recovery=report,
                        submit_send=inbox_send.clone(),
                        stop_send=inbox_send,
                        max_command_bytes=config.max_command_bytes,
                    )
                    try:
                        yield replica
                    except BaseException:
                        # The block failed or was cancelled: do not drain,
                        # stop the tasks. Whatever was durable stays durable.
                        nursery.cancel_scope.cancel()
                        raise
                    await replica._close()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if replica is not None:
                replica._finish(failure)
            with trio.CancelScope(shield=True):
                try:
                    await store.aclose()
                finally:
                    await journal.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await run_io(data, lock.release)


def control_queue(config: ReplicaConfig) -> int:
    """Size of the coordinator -> writer channel.

    Between two receives from it the writer makes at most one blocking
    send to the applier, and the applier takes at most one snapshot per
    message. So while the writer is blocked, the notices the coordinator
    can produce are bounded by the snapshots already in flight
    (``coordinator_queue`` queued + one being persisted + one being sent)
    plus one per message in the applier's queue (``applier_queue`` + one
    being applied). This size exceeds that bound, so the cycle
    writer -> applier -> coordinator -> writer cannot deadlock.
    """
    return config.applier_queue + config.coordinator_queue + 4


async def _take_lock(data: Directory) -> DirectoryLock:
    return await run_io(data, lambda: data.lock(LOCK_NAME))


@contextmanager
def _single_error() -> Iterator[None]:
    """Raise a task's error itself, not an ExceptionGroup wrapping it.

    Trio's nurseries always group errors; a replica stops on its first error
    (the others are the ``Cancelled`` it causes), so a group holding one real
    error is unwrapped to that error, which keeps its own traceback and cause.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        real = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
        if len(real) == 1:
            single: BaseException = real[0]
        elif not real and leaves:
            single = leaves[0]
        else:
            raise
    else:
        return
    # Raising here would make the group (still being handled by the caller)
    # the error's __context__, a cycle; keep the context it had.
    context = single.__context__
    try:
        raise single
    finally:
        single.__context__ = context


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
