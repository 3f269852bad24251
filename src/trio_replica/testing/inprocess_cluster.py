"""An in-process cluster for tests: replicas on SimulatedDisks over a SimTransport.

:func:`open_inprocess_cluster` starts ``replicas`` cluster replicas (each on
its own :class:`~.disk.SimulatedDisk`, all on one
:class:`~.sim_transport.SimTransport`) and yields an
:class:`InProcessCluster` that can kill a replica (cancel its scope, then a
power loss or a process crash of its disk), restart it from what its disk
kept, open clients, and wait until the cluster converged. Run it under
``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio:
``autojump_clock``) so timeouts cost no real time. A test in a few lines::

    async def test_my_machine(cluster_factory, autojump_clock):
        async with cluster_factory(MyMachine) as cluster:
            async with cluster.client() as client:
                assert await client.submit({"add": 2}) == 2
            await cluster.kill(cluster.primary())
            async with cluster.client() as client:
                assert await client.submit({"add": 1}) == 3
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from ..cluster.client import ClusterClient, open_cluster_client
from ..cluster.config import DEFAULT_TIMING, ClusterConfig, Timing
from ..cluster.replica import ClusterReplica, open_cluster_replica
from ..stm.protocol import StateMachine
from .disk import SimulatedDisk, derive_seed
from .network import NetworkFaults
from .sim_transport import SimTransport, open_sim_transport

__all__ = ["InProcessCluster", "open_inprocess_cluster"]


class InProcessCluster:
    """A running in-process cluster (see the module docstring)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        transport: SimTransport,
        config: ClusterConfig,
        machine: Callable[[], StateMachine],
        disks: list[SimulatedDisk],
        options: dict[str, Any],
    ):
        self.config = config
        self.transport = transport
        self.disks = disks
        """Each replica's disk; replaced by what a crash left when it is killed."""
        self.replicas: list[ClusterReplica | None] = [None] * len(disks)
        """The running replicas (None while one is down)."""
        self._nursery = nursery
        self.machine = machine
        """What :meth:`start` builds a replica's state machine with; replace it
        to restart replicas with other code (a rolling upgrade)."""
        self._options = options
        self._scopes: list[trio.CancelScope | None] = [None] * len(disks)
        self._done: list[trio.Event | None] = [None] * len(disks)

    async def start(self, replica: int) -> ClusterReplica:
        """Open replica ``replica`` on its disk (a restart when it ran before)."""
        if self.replicas[replica] is not None:
            raise RuntimeError(f"replica {replica} is running")
        handle: ClusterReplica = await self._nursery.start(self._run, replica)
        return handle

    async def _run(self, replica: int, *, task_status: trio.TaskStatus[ClusterReplica]) -> None:
        done = trio.Event()
        self._done[replica] = done
        try:
            with trio.CancelScope() as scope:
                self._scopes[replica] = scope
                async with open_cluster_replica(
                    self.disks[replica],
                    self.machine(),
                    self.config,
                    replica=replica,
                    transport=self.transport,
                    **self._options,
                ) as handle:
                    self.replicas[replica] = handle
                    task_status.started(handle)
                    await trio.sleep_forever()
        finally:
            self.replicas[replica] = None
            self._scopes[replica] = None
            done.set()

    async def kill(self, replica: int, *, power_loss: bool = True) -> None:
        """Stop ``replica`` abruptly (its nursery is cancelled wherever it is),
        then crash its disk: a power loss keeps only what was fsynced (one
        state drawn by the disk's seed), a process crash keeps everything."""
        scope, done = self._scopes[replica], self._done[replica]
        if scope is None or done is None:
            raise RuntimeError(f"replica {replica} is not running")
        scope.cancel()
        await done.wait()
        disk = self.disks[replica]
        self.disks[replica] = disk.crash() if power_loss else disk.process_crash()

    def primary(self) -> int:
        """The replica that is primary of the newest view among the running ones."""
        running = [r for r in self.replicas if r is not None]
        if not running:
            raise RuntimeError("no replica is running")
        view = max(r.status.view for r in running)
        return self.config.primary(view)

    def client(self, **options: Any) -> AbstractAsyncContextManager[ClusterClient]:
        """A new client of the cluster (see :func:`~trio_replica.cluster.open_cluster_client`)."""
        return open_cluster_client(self.config, transport=self.transport, **options)

    def converged(self) -> bool:
        """Every replica runs, is normal in one view, and applied the same whole
        log, which its journal holds durably (an op may be applied before this
        replica's own write of it is done)."""
        running = [r for r in self.replicas if r is not None]
        if len(running) != len(self.replicas):
            return False
        statuses = [r.status for r in running]
        first = statuses[0]
        return all(
            s.status == "normal"
            and s.view == first.view
            and s.op == first.op
            and s.commit == first.op
            and s.applied == first.op
            and s.durable == first.op
            for s in statuses
        )

    async def wait_converged(self) -> None:
        """Wait until :meth:`converged` (bound it with ``trio.fail_after``)."""
        # Polled: convergence is a predicate over several replicas' tasks,
        # none of which could set one event for it.
        while not self.converged():  # noqa: ASYNC110
            await trio.sleep(self.transport.tick_seconds * 10)


@asynccontextmanager
async def open_inprocess_cluster(
    machine: Callable[[], StateMachine],
    *,
    replicas: int = 3,
    seed: int = 0,
    faults: NetworkFaults | None = None,
    timing: Timing = DEFAULT_TIMING,
    tick_seconds: float = 0.01,
    network_tick_seconds: float = 0.001,
    apply_in_thread: bool = False,
    checkpoint_interval: int | None = None,
    machine_version: int | None = None,
    **options: Any,
) -> AsyncIterator[InProcessCluster]:
    """Start a cluster of ``replicas`` running ``machine()`` each, all seeded by
    ``seed``; ``faults`` for the network (default: delays only).
    ``apply_in_thread`` defaults to False here: under ``MockClock`` a worker
    thread lets virtual time jump while it runs. ``checkpoint_interval``
    overrides the cluster's (``ClusterConfig.checkpoint_interval``), and
    ``machine_version`` sets ``ClusterConfig.machine_version``. Other
    ``options`` go to :func:`~trio_replica.cluster.open_cluster_replica`."""
    config = ClusterConfig(cluster_id=seed + 1, replica_count=replicas)
    if checkpoint_interval is not None:
        config = attrs.evolve(config, checkpoint_interval=checkpoint_interval)
    config = attrs.evolve(config, machine_version=machine_version)
    disks = [SimulatedDisk(derive_seed(seed, "replica", i)) for i in range(replicas)]
    async with (
        open_sim_transport(
            seed=derive_seed(seed, "network"),
            faults=faults,
            partitionable=replicas,
            tick_seconds=network_tick_seconds,
        ) as transport,
        trio.open_nursery() as nursery,
    ):
        cluster = InProcessCluster(
            nursery,
            transport,
            config,
            machine,
            disks,
            dict(
                options,
                timing=timing,
                tick_seconds=tick_seconds,
                apply_in_thread=apply_in_thread,
            ),
        )
        for i in range(replicas):
            await cluster.start(i)
        yield cluster
        nursery.cancel_scope.cancel()
