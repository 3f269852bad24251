"""``open_replica``: the one place that knows the whole wiring.

It locks the data directory, recovers, and starts the four tasks in ONE
nursery, each with ``nursery.start`` so a startup error surfaces at open.
The topology (diagram in ``docs/architecture.md``)::

    submitters -intake-> [sequencer] -entries-> [writer] -durable-> [sequencer]
                                                                       |
              [coordinator] <-snapshots- [applier] <-committed---------+
                   |   +--- Wake (send_nowait) ---> [writer]
                   +------- control --------------> [writer]

The sequencer stands where a consensus task will stand: in front of the
writer (it numbers the ops) and after it (it decides what is committed).
Replacing it changes this module only. Every piece of mutable state has one
owner: the sequencer owns op numbers and the replies of uncommitted ops, the
writer the journal, the applier the state machine, the coordinator the
snapshot store. The channels and their sizes are data (``channels.py``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio

from ..coordinator.store import SnapshotStore
from ..coordinator.task import SnapshotCoordinator
from ..errors import CommandEncodingError, InvalidCommand, ReplicaError, ReplicaStoppedError
from ..journal import Journal
from ..layout import LOCK_NAME
from ..pipeline import (
    ControlMessage,
    FromWriter,
    SnapshotTaken,
    ToApplier,
    ToWriter,
)
from ..stm.applier import Applier
from ..stm.protocol import StateMachine
from ..storage import Directory, DirectoryLike, DirectoryLock, open_directory, run_io
from .channels import channel
from .config import ReplicaConfig
from .handle import Replica
from .intake import Intake
from .recovery import RecoveryReport, recover
from .sequencer import Sequencer
from .stats import ReplicaStats
from .writer import JournalWriter

__all__ = ["open_replica", "task_nursery"]

logger = logging.getLogger("trio_replica.replica")


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
    journal's ring size (``None``:
    :func:`~trio_replica.replica.config.default_slot_count`); when the ring
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
        logger.info("opened %s: %s", data.path, report)
        replica: Replica | None = None
        failure: BaseException | None = None
        try:
            async with task_nursery() as nursery:
                replica = await _start_tasks(nursery, machine, config, journal, store, report)
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
            _log_stop(data.path, journal.last_op, failure)
            with trio.CancelScope(shield=True):
                try:
                    await store.aclose()
                finally:
                    await journal.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await run_io(data, lock.release)


async def _start_tasks(
    nursery: trio.Nursery,
    machine: StateMachine,
    config: ReplicaConfig,
    journal: Journal,
    store: SnapshotStore,
    report: RecoveryReport,
) -> Replica:
    """Open the channels of ``channels.CHANNELS``, start the four tasks (each
    with ``nursery.start``, so a startup error surfaces at open) and return
    the handle. This is the wiring: a consensus task takes the sequencer's
    place here, and nowhere else."""

    def size(name: str) -> int:
        return channel(name).size(config)

    intake = Intake(capacity=size("intake"), max_group=config.max_batch)
    entries_send, entries_recv = trio.open_memory_channel[ToWriter](size("entries"))
    durable_send, durable_recv = trio.open_memory_channel[FromWriter](size("durable"))
    committed_send, committed_recv = trio.open_memory_channel[ToApplier](size("committed"))
    snapshots_send, snapshots_recv = trio.open_memory_channel[SnapshotTaken](size("snapshots"))
    control_send, control_recv = trio.open_memory_channel[ControlMessage](size("control"))
    sequencer = Sequencer(last_op=report.last_op, max_batch=config.max_batch)
    writer = JournalWriter(
        journal,
        max_batch=config.max_batch,
        max_ops_per_append=config.max_ops_per_append,
        # The ops of a failed append (and any numbered after them) get its
        # error itself.
        on_append_failed=sequencer.fail_uncommitted,
    )
    applier = Applier(
        machine,
        applied_op=report.last_op,
        last_snapshot_op=report.snapshot_op,
        snapshot_every=config.snapshot_every,
        low_capacity=config.low_capacity,
    )
    coordinator = SnapshotCoordinator(store, max_failures=config.max_snapshot_failures)
    await nursery.start(coordinator.run, snapshots_recv, control_send, entries_send.clone())
    await nursery.start(applier.run, committed_recv, snapshots_send)
    await nursery.start(writer.run, entries_recv, control_recv, durable_send)
    await nursery.start(sequencer.run, intake, entries_send, durable_recv, committed_send)

    def stats() -> ReplicaStats:
        # Read-only looks at what each task owns.
        counters = journal.stats
        depths = {"intake": intake.queued}
        for name, send in (
            ("entries", entries_send),
            ("durable", durable_send),
            ("committed", committed_send),
            ("snapshots", snapshots_send),
            ("control", control_send),
        ):
            depths[name] = send.statistics().current_buffer_used
        return ReplicaStats(
            applied_op=applier.applied_op,
            prepared_op=journal.last_op,
            ops=counters.ops,
            batches=counters.batches,
            fsync_seconds=counters.sync_seconds,
            queue_depths=depths,
            last_checkpoint_op=store.latest_op or 0,
            snapshot_failures=coordinator.failures,
            segments_created=counters.segments_created,
            segments_compacted=counters.segments_compacted,
        )

    return Replica(
        machine=machine,
        sequencer=sequencer,
        applier=applier,
        coordinator=coordinator,
        recovery=report,
        intake=intake,
        max_command_bytes=config.max_command_bytes,
        stats=stats,
    )


# Errors a caller's block may raise (or re-raise) that are not a failure of
# the replica itself: a rejection, a refused command, a request cut short.
_NOT_A_REPLICA_FAILURE = (InvalidCommand, CommandEncodingError, ReplicaStoppedError)


def _log_stop(path: str, last_op: int, failure: BaseException | None) -> None:
    """One line for how the replica ended: closed, cancelled, or failed (ERROR).

    A failure of the replica is a :class:`ReplicaError` its tasks raise
    (``StateMachineError``, ``FatalStorageError``, a fatal snapshot error...),
    even when the block re-raised it; anything else that ended the block is
    the caller's to report, and the replica only closed because of it (INFO).
    """
    if failure is None:
        logger.info("closed %s at op %d", path, last_op)
        return
    leaves = _leaves(failure) if isinstance(failure, BaseExceptionGroup) else [failure]
    for leaf in leaves:
        if isinstance(leaf, ReplicaError) and not isinstance(leaf, _NOT_A_REPLICA_FAILURE):
            logger.error(
                "replica %s stopped at op %d: %s: %s", path, last_op, type(leaf).__name__, leaf
            )
            return
    if all(isinstance(leaf, trio.Cancelled | KeyboardInterrupt) for leaf in leaves):
        logger.info("cancelled %s at op %d", path, last_op)
    else:
        logger.info(
            "closed %s at op %d: the block raised %s", path, last_op, type(leaves[0]).__name__
        )


@asynccontextmanager
async def task_nursery() -> AsyncIterator[trio.Nursery]:
    """The ONE nursery a replica's tasks run in, single replica or cluster
    replica alike: the first task to fail cancels the others, and its error
    propagates as itself (not wrapped in an exception group)."""
    with _single_error():
        async with trio.open_nursery() as nursery:
            yield nursery


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
