"""``open_cluster_replica``: one member of a Viewstamped Replication cluster, in-process.

It opens the data directory's journal (locking it), checks the replica's
identity, reads back the durable view state and the journaled prepare
headers, builds the :class:`~.core.Consensus` core from them (the restart
decision table of :mod:`.restart`), and runs four tasks in the ONE nursery
of :func:`~trio_replica.replica.nursery.task_nursery`: consensus, bus,
writer and applier (:mod:`.tasks`; topology in ``docs/architecture.md``).

Recovery replays only what is known committed: the state machine starts
from the checkpoint the durable view state names (or empty, before the
first checkpoint) and receives the ops after it from the core's commit walk,
which stops at the commit number the cluster confirms (the durable
``commit_max``, then what the primary says); uncommitted journal entries
wait for the view.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from ..replica.nursery import task_nursery
from ..stm.protocol import StateMachine
from ..storage import DirectoryLike
from .checkpoint import switch_version
from .checkpoint_store import checkpoint_store, load_checkpoint
from .config import DEFAULT_TIMING, ClusterConfig, Timing
from .core import Consensus
from .events import Event
from .restart import Status
from .salvage import open_cluster_journal
from .storage import recover_cluster_storage
from .tasks import (
    Applier,
    ApplierMessage,
    Bus,
    ConsensusTask,
    JournalWriter,
    Outbound,
    WriterMessage,
    channel_size,
)
from .transport import Transport

__all__ = ["ClusterReplica", "ClusterReplicaStatus", "open_cluster_replica"]


@attrs.frozen
class ClusterReplicaStatus:
    """Where a cluster replica is: ``view``, ``status`` (normal, view_change or
    recovering), whether it is the ``primary``, its head ``op``, the ``commit``
    number it knows and the op it ``applied`` last. ``rejoining``: it lost its
    data (``format --recover``) and has not caught up yet; until then it
    neither votes in view changes nor nacks."""

    replica: int
    view: int
    status: str
    primary: bool
    op: int
    commit: int
    applied: int
    checkpoint: int = 0
    """The op of the newest durable checkpoint (0: none yet)."""
    rejoining: bool = False
    durable: int = 0
    """The op through which its journal is written and fsynced: below ``op``
    while a write is in flight (an op is applied once committed, perhaps
    before this replica's own write of it is done)."""


_STATUS_NAMES = {
    Status.NORMAL: "normal",
    Status.VIEW_CHANGE: "view_change",
    Status.RECOVERING_HEAD: "recovering",
    Status.RECOVERING: "recovering",
}


class ClusterReplica:
    """The handle of a running cluster replica (see :func:`open_cluster_replica`)."""

    def __init__(self, consensus: ConsensusTask, applier: Applier, writer: JournalWriter):
        self._consensus = consensus
        self._applier = applier
        self._writer = writer

    @property
    def status(self) -> ClusterReplicaStatus:
        """The replica's status now (as of the last event consensus handled)."""
        s = self._consensus.status
        return ClusterReplicaStatus(
            replica=s.replica,
            view=s.view,
            status=_STATUS_NAMES[s.status],
            primary=s.primary,
            op=s.op,
            commit=s.commit_max,
            applied=self._applier.applied_op,
            checkpoint=s.checkpoint_op,
            rejoining=s.rejoining,
            durable=s.durable_op,
        )

    @property
    def machine(self) -> StateMachine:
        """The state machine. With ``apply_in_thread`` a worker thread may be
        applying a batch to it at any moment: read it only when the replica
        is idle (as tests do after the cluster converged)."""
        return self._applier.machine

    @property
    def max_tick_lag(self) -> float:
        """Seconds the most delayed protocol tick fired late (see ``docs/decisions.md``)."""
        return self._consensus.max_tick_lag

    @property
    def fsyncs(self) -> int:
        """Journal appends (one fsync each) since open."""
        return self._writer.fsyncs


@asynccontextmanager
async def open_cluster_replica(
    directory: DirectoryLike,
    machine: StateMachine,
    config: ClusterConfig,
    *,
    replica: int,
    transport: Transport,
    timing: Timing = DEFAULT_TIMING,
    tick_seconds: float = 0.01,
    apply_in_thread: bool = True,
    slot_count: int = 1 << 16,
    segment_bytes: int = 64 * 2**20,
    max_body_bytes: int = 4 * 2**20,
) -> AsyncIterator[ClusterReplica]:
    """Run replica ``replica`` of ``config`` over ``directory`` for the block.

    ``machine`` must be a fresh (empty) state machine: it is restored from
    the newest durable checkpoint (``<data>/snapshots``) and then the
    committed log after it is applied. Every ``config.checkpoint_interval``
    committed ops the replica takes a checkpoint, compares its state digest
    with its peers' and compacts its journal below it, keeping
    ``timing.checkpoint_retain`` ops for lagging peers. ``transport`` carries messages to
    the other replicas and clients. ``timing`` holds the protocol's
    timeouts in ticks of ``tick_seconds``. ``apply_in_thread`` runs each
    committed batch of ``apply()`` calls in a worker thread, so a slow
    ``apply()`` does not stall the protocol's timers (``docs/decisions.md``).
    ``slot_count``, ``segment_bytes`` and ``max_body_bytes`` are the
    journal's (a body is the command plus its 96-byte prepare header).

    Raises :class:`~trio_replica.errors.DirectoryLockedError` when the
    directory is open elsewhere, :class:`~.storage.ClusterIdentityError`
    when it belongs to another cluster member, and
    :class:`~trio_replica.errors.CorruptionError` when its journal or view
    state does not verify (except damage inside the journal's segments,
    which a cluster of several replicas repairs from its peers, keeping the
    damaged files as ``.broken`` copies: :mod:`.salvage`), and
    :class:`~.checkpoint_store.CheckpointMissingError` when the checkpoint
    the view state names cannot be loaded. A task's failure cancels the
    block and propagates out of it; a replica whose state digest at a
    checkpoint differs from its peers' stops with
    :class:`~.checkpoint.StateDivergenceError`.
    """
    if not 0 <= replica < config.replica_count:
        raise ValueError(f"replica {replica} is not in a cluster of {config.replica_count}")
    journal, salvage = await open_cluster_journal(
        directory,
        replica_count=config.replica_count,
        slot_count=slot_count,
        segment_bytes=segment_bytes,
        max_body_bytes=max_body_bytes,
    )
    store = None
    try:
        found = await recover_cluster_storage(
            journal,
            cluster_id=config.cluster_id,
            replica=replica,
            replica_count=config.replica_count,
            lost=salvage.headers if salvage is not None else (),
        )
        store = checkpoint_store(directory, journal, machine)
        await store.open()
        checkpoint = None
        if found.state is not None:
            checkpoint = await load_checkpoint(store, found.state, path=journal.path)
        version = config.machine_version
        if checkpoint is not None:
            machine.restore(checkpoint.machine)
            version = checkpoint.version
        if version is not None:
            # Replicated: the version in force at the op the machine is at.
            switch_version(machine, 0 if checkpoint is None else checkpoint.op, version)
        core, first = Consensus.start(
            config,
            replica,
            state=found.state,
            journal=found.journal,
            timing=timing,
            checkpoint=checkpoint,
            # New in every process life: a rejoining replica tells the
            # start_view answering this life's request from a stale one.
            nonce=secrets.randbits(63) | 1,
            machine_version=type(machine).version,
        )
        size = channel_size(timing.pipeline_max)
        inbox_send, inbox_recv = trio.open_memory_channel[Event](4 * size)
        bus_send, bus_recv = trio.open_memory_channel[Outbound](4 * size)
        writer_send, writer_recv = trio.open_memory_channel[WriterMessage](size)
        applier_send, applier_recv = trio.open_memory_channel[ApplierMessage](size)
        consensus = ConsensusTask(
            core,
            first,
            tick_seconds=tick_seconds,
            inbox=inbox_recv,
            bus=bus_send,
            writer=writer_send,
            applier=applier_send,
        )
        writer = JournalWriter(journal, inbox=inbox_send.clone(), work=writer_recv)
        applier = Applier(
            machine,
            journal,
            apply_in_thread=apply_in_thread,
            inbox=inbox_send.clone(),
            commits=applier_recv,
            store=store,
            # The first actions may already commit ops after the checkpoint.
            applied_op=0 if checkpoint is None else checkpoint.op,
            machine_version=version,
        )
        bus = Bus(transport.endpoint(replica), inbox=inbox_send, outbound=bus_recv)
        async with task_nursery() as nursery:
            await nursery.start(writer.run)
            await nursery.start(applier.run)
            await nursery.start(consensus.run)
            await nursery.start(bus.run)
            try:
                yield ClusterReplica(consensus, applier, writer)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if store is not None:
                await store.aclose()
            await journal.aclose()
