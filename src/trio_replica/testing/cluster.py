"""A deterministic simulator of a whole VSR cluster, and its command line.

One seed drives everything: the network (:class:`~.network.SimNetwork`),
each replica's storage (:class:`~.cluster_storage.SimReplicaStorage`),
crashes (process crashes and power losses), restarts after drawn delays,
corruption, and the clients, which retry and follow redirects. The replicas
are :class:`~trio_replica.cluster.core.Consensus` cores stepped in one
thread, so a seed replays byte for byte. TigerBeetle's VOPR is the model.

A run has two phases. The safety phase (``ticks``) injects every enabled
fault; the liveness phase heals the network, restarts every replica and
stops crashing, and the cluster must converge within ``liveness_ticks``:
every replica normal in one view with the same commit and state digest,
every client done. :class:`~.cluster_checks.ClusterChecker` checks the
invariants as the run goes; at the end the clients' history is checked for
linearizability against the state machine (the counter).

Command line (every option in ``--help``)::

    python -m trio_replica.testing.cluster --seed 7 --replicas 3 --ticks 2000 --seeds 100

prints one line per seed and exits 1 if any seed found a violation.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import cbor2

from ..cluster.checkpoint import (
    Checkpoint,
    StateDivergenceError,
    decode_checkpoint,
    encode_checkpoint,
    switch_version,
)
from ..cluster.config import CORRECT_RULES, DEFAULT_TIMING, ClusterConfig, Rules, Timing
from ..cluster.core import Consensus
from ..cluster.errors import ProtocolInvariantError
from ..cluster.events import (
    Action,
    Applied,
    CheckpointChunkRead,
    CheckpointInstalled,
    CheckpointRejected,
    CheckpointTaken,
    Commit,
    Compact,
    Event,
    HeadersRead,
    InstallCheckpoint,
    JournalDurable,
    PersistViewState,
    PinCheckpoint,
    PrepareRead,
    ReadCheckpointChunk,
    ReadHeaders,
    ReadPrepare,
    Received,
    RestartJournal,
    RestoreCheckpoint,
    Send,
    SendClient,
    StoreCheckpointChunk,
    TakeCheckpoint,
    Tick,
    ViewStateDurable,
    WriteJournal,
)
from ..cluster.header import Operation, checksum, decode_version
from ..cluster.messages import Eviction, Redirect, Reply, Request
from ..cluster.restart import Status
from ..cluster.view_state import ViewState
from ..errors import CorruptionError, InvalidCommand
from ..machines.counter import Counter
from ..stm.protocol import StateMachine
from .cluster_checks import ClusterChecker, Violation
from .cluster_storage import SimReplicaStorage
from .history import HistoryRecorder
from .linearizability import Verdict, check_linearizability, results_equal
from .network import NetworkFaults, SimNetwork

__all__ = [
    "ScheduledRestart",
    "SimOptions",
    "SimResult",
    "main",
    "options_for_seed",
    "run",
    "run_seed",
    "state_transfer_options",
]

LINEARIZABILITY_STEPS = 50_000
"""Model steps the linearizability check of one run may take: a budget in
steps keeps the verdict reproducible; a run that exhausts it reports
"inconclusive" (never "linearizable", never a violation)."""

CLIENT_BASE = 1000
"""Clients' network addresses start here (replicas are 0..n-1)."""


def counter_workload(rng: random.Random, client: int) -> Iterator[Any]:
    """The default workload: ``{"add": n}`` commands for the counter machine."""
    while True:
        yield {"add": rng.randint(1, 9)}


@attrs.frozen
class ScheduledRestart:
    """At tick ``at`` the ``replicas`` stop (a process crash: nothing the OS
    holds is lost, as after SIGTERM or SIGKILL) and start again ``down_for``
    ticks later. For ``reconnect`` ticks after a replica starts, every peer's
    path to it is clogged (a TCP peer reconnects with backoff, so the first
    messages to a restarted replica come late)."""

    at: int
    replicas: tuple[int, ...]
    down_for: int = 10
    reconnect: int = 0


@attrs.frozen
class SimOptions:
    """Everything a run depends on besides its seed. Times are in ticks.

    ``machine`` builds the user's state machine (one per replica, and the
    linearizability checker's model); ``workload(rng, client)`` yields each
    client's commands (they must be CBOR-encodable).
    """

    replicas: int = 3
    clients: int = 3
    clients_max: int = 32
    checkpoint_interval: int = 4096
    """Ops between checkpoints (``ClusterConfig.checkpoint_interval``)."""
    ticks: int = 1500
    liveness_ticks: int = 2500
    crash_probability: float = 0.0
    """Per tick, per running replica (at most f replicas are down at once)."""
    power_loss: float = 0.5
    """Share of crashes that are power losses (the rest are process crashes)."""
    torn_probability: float = 0.3
    corruption_probability: float = 0.0
    """Per restart: make one durable body of the replica unreadable."""
    crash_in_transfer: float = 0.0
    """Per step of a state transfer (a chunk stored, the file installed, the
    state restored, the journal restarted): the chance that the replica
    crashes right after it (at the next tick, within the f budget)."""
    disk_loss: float = 0.0
    """Share of crashes that lose the replica's whole data directory: it is
    replaced by a blank one formatted to rejoin (``format --recover``). At
    most f replicas are rejoining at once (more is correlated loss)."""
    restart_delay: tuple[int, int] = (10, 150)
    fsync_delay: tuple[int, int] = (1, 4)
    client_retry: int = 25
    network: NetworkFaults = attrs.field(factory=NetworkFaults)
    timing: Timing = DEFAULT_TIMING
    rules: Rules = CORRECT_RULES
    restarts: tuple[ScheduledRestart, ...] = ()
    """Restarts at fixed ticks, besides the drawn crashes (see
    :class:`ScheduledRestart`); :attr:`SimResult.catch_up` reports how long each took."""
    machine: Callable[[], StateMachine] = Counter
    workload: Callable[[random.Random, int], Iterator[Any]] = counter_workload
    result_equal: Callable[[Any, Any], bool] | None = None
    """How the linearizability check compares a model result with an observed
    one (default: equal values); results that contain op numbers need one
    that ignores them, since the model numbers ops by position."""


def options_for_seed(seed: int, replicas: int = 3, ticks: int = 1500) -> SimOptions:
    """Swarm testing: draw which faults are on, and how hard, from the seed, so
    a set of seeds covers every fault kind in many combinations."""
    r = random.Random(seed ^ 0x5EED)

    def maybe(p: float, low: float, high: float) -> float:
        return r.uniform(low, high) if r.random() < p else 0.0

    partition = maybe(0.6, 0.002, 0.02)
    network = NetworkFaults(
        delay_min=1,
        delay_mean=r.choice([0.5, 1.0, 3.0]),
        loss=maybe(0.6, 0.005, 0.1),
        duplication=maybe(0.5, 0.01, 0.1),
        reorder=maybe(0.5, 0.01, 0.2),
        partition_probability=partition,
        unpartition_probability=0.02 if partition else 0.0,
        partition_stability=r.randint(20, 150),
        asymmetric=maybe(0.5, 0.2, 1.0),
        clog_probability=maybe(0.4, 0.002, 0.02),
        clog_duration=r.randint(5, 60),
        path_capacity=r.choice([16, 64, 256]),
        drop_kinds=frozenset({r.choice(["Prepare", "PrepareOk", "Commit", "DoViewChange"])}),
        drop_kind_probability=maybe(0.3, 0.1, 0.6),
    )
    options = SimOptions(
        replicas=replicas,
        clients=r.randint(2, 4),
        clients_max=r.choice([3, 32, 32]),
        ticks=ticks,
        crash_probability=maybe(0.8, 0.0005, 0.006),
        power_loss=r.uniform(0.2, 0.9),
        torn_probability=r.uniform(0.0, 0.6),
        corruption_probability=maybe(0.5, 0.2, 0.9),
        restart_delay=(r.randint(5, 40), r.randint(50, 300)),
        fsync_delay=(1, r.randint(1, 8)),
        network=network,
    )
    # Drawn last, so the draws above stay those of earlier releases. Small
    # intervals, so that runs take, restart from and compact below many
    # checkpoints; the retention stays above how far a replica falls behind
    # in a run (a replica further behind needs state transfer).
    # Disk loss from a stream of its own, so the other draws (and every
    # seed's run without disk loss) stay what they were.
    lost = random.Random(seed ^ 0xD15C)
    interval = r.choice([8, 32, 4096])
    retain = r.choice([256, 512])
    disk_loss = lost.choice([0.0, 0.0, 0.3, 0.6])
    crash_in_transfer = lost.choice([0.0, 0.2, 0.5])
    return attrs.evolve(
        options,
        checkpoint_interval=interval,
        timing=attrs.evolve(options.timing, checkpoint_retain=retain),
        disk_loss=disk_loss,
        crash_in_transfer=crash_in_transfer,
    )


def state_transfer_options(seed: int, replicas: int = 3, ticks: int = 1500) -> SimOptions:
    """The swarm options of ``seed`` made hard on purpose for catching up:
    long partitions, a checkpoint every 8 ops, a retention of 16 ops (so a
    replica cut off for a while is behind every peer's journal and must
    fetch a checkpoint) and a crash after half the steps of a transfer."""
    options = options_for_seed(seed, replicas, ticks)
    network = attrs.evolve(
        options.network,
        partition_probability=0.02,
        unpartition_probability=0.004,
        partition_stability=300,
    )
    return attrs.evolve(
        options,
        network=network,
        checkpoint_interval=8,
        timing=attrs.evolve(options.timing, checkpoint_retain=16),
        crash_in_transfer=0.5,
    )


@attrs.frozen
class SimResult:
    """The outcome of one run."""

    seed: int
    violations: tuple[Violation, ...]
    converged_at: int | None
    linearizability: str
    stats: dict[str, int]
    trace_digest: str
    catch_up: tuple[int | None, ...] = ()
    """Per scheduled restart: ticks from the restarted replicas' start until
    each was normal with everything committed when it started applied
    (None: never)."""

    @property
    def ok(self) -> bool:
        """No violation (convergence and linearizability included)."""
        return not self.violations

    def summary(self) -> str:
        """One line: seed, verdict and the main counts."""
        verdict = "ok" if self.ok else f"FAILED ({self.violations[0]})"
        s = self.stats
        return (
            f"seed {self.seed}: {verdict}; committed {s['committed']} ops, "
            f"acked {s['acked']}, views {s['max_view']}, crashes {s['crashes']} "
            f"(power {s['power_losses']}), corruptions {s['corruptions']} "
            f"(cut {s['damage_cuts']}), disks lost {s['disks_lost']}, "
            f"converged at {self.converged_at}, linearizability {self.linearizability}, "
            f"trace {self.trace_digest}"
        )


class _Client:
    """A simulated client: registers, then sends one request at a time, retries."""

    def __init__(
        self,
        index: int,
        replicas: int,
        rng: random.Random,
        workload: Callable[[random.Random, int], Iterator[Any]],
    ):
        self.id = index + 1
        self.commands = workload(rng, self.id)
        self.address = CLIENT_BASE + self.id
        self.replicas = replicas
        self.rng = rng
        self.session = 0
        self.request_number = 0
        self.inflight: Request | None = None
        self.pending: Any = None
        self.command: Any = None
        self.sent_at = 0
        self.attempts = 0
        self.target = 0
        self.stopped = False
        self.acked: list[tuple[int, int]] = []

    def next_request(self, now: int, history: HistoryRecorder) -> Request | None:
        if self.inflight is not None or self.stopped:
            return None
        if self.session == 0:
            self.inflight = Request(self.id, 0, 0, Operation.REGISTER, b"")
        else:
            self.request_number += 1
            self.command = next(self.commands)
            self.pending = history.invoke(self.id, self.command)
            self.inflight = Request(
                self.id,
                self.session,
                self.request_number,
                Operation.REQUEST,
                cbor2.dumps(self.command),
            )
        self.attempts = 0
        self.sent_at = now
        return self.inflight


class _Simulator:
    def __init__(self, seed: int, options: SimOptions, trace: Callable[[str], None] | None):
        self.seed = seed
        self.o = options
        self.rng = random.Random(seed)
        self.config = ClusterConfig(
            cluster_id=seed,
            replica_count=options.replicas,
            clients_max=options.clients_max,
            checkpoint_interval=options.checkpoint_interval,
        )
        self.network = SimNetwork(
            self.rng.getrandbits(64), options.network, partitionable=options.replicas
        )
        self.storage = [SimReplicaStorage() for _ in range(options.replicas)]
        self.cores: list[Consensus | None] = [None] * options.replicas
        self.machines: list[StateMachine] = [options.machine() for _ in range(options.replicas)]
        self.machine_versions: list[int | None] = [None] * options.replicas
        self.restart_at: dict[int, tuple[int, bool]] = {}
        self.disk_events: list[tuple[int, int, int, str]] = []  # (due, seq, replica, kind)
        self._seq = 0
        self.now = 0
        self.checker = ClusterChecker(
            options.replicas, recovering_timeout=options.timing.recovering_timeout
        )
        self.history = HistoryRecorder()
        self.clients = [
            _Client(i, options.replicas, random.Random(self.rng.getrandbits(64)), options.workload)
            for i in range(options.clients)
        ]
        self.trace_sum = checksum(b"trace")
        self._trace = trace
        self.stats = {
            "committed": 0,
            "acked": 0,
            "crashes": 0,
            "power_losses": 0,
            "corruptions": 0,
            "damage_cuts": 0,
            "max_view": 0,
            "torn": 0,
            "checkpoints": 0,
            "checkpoint_restarts": 0,
            "compactions": 0,
            "disks_lost": 0,
            "transfers": 0,
            "transfer_crashes": 0,
            "view_changes": 0,
        }
        self.loss_rng = random.Random(seed ^ 0x1055)
        self._transfer_sources: dict[int, int] = {}
        self._crash_next: set[int] = set()
        self.transfer_rng = random.Random(seed ^ 0x7A5F)
        self._pending_installs: dict[int, list[Checkpoint]] = {}
        # scheduled restarts: replica -> reconnect ticks; per restart, its start
        # tick, the commit to reach and the ticks it took
        self._reconnect: dict[int, int] = {}
        self._catch_up: list[tuple[int, int | None, tuple[int, ...]] | None] = [None] * len(
            options.restarts
        )
        self.catch_up: list[int | None] = [None] * len(options.restarts)
        self.head_uncertain = [False] * options.replicas
        self.stopped_with: Violation | None = None

    # --- tracing ---------------------------------------------------------------

    def log(self, line: str) -> None:
        self.trace_sum = checksum(self.trace_sum + line.encode())
        if self._trace is not None:
            self._trace(f"{self.now:6d} {line}")

    # --- replicas --------------------------------------------------------------

    def boot(self, r: int, *, fresh: bool) -> None:
        storage = self.storage[r]
        uncertain = self.head_uncertain[r]
        machine = self.o.machine()
        checkpoint = None
        named = storage.view_state.checkpoint_op
        version = self.config.machine_version
        if not fresh and named:
            data, (applied, _) = storage.snapshots[named]
            checkpoint = decode_checkpoint(cbor2.loads(data))
            machine.restore(checkpoint.machine)
            version = checkpoint.version
            self.stats["checkpoint_restarts"] += 1
            written = storage.written
            fits = len(written) >= named and written[named - 1][0] == checkpoint.header
            if storage.compacted <= named and not fits:
                # The view state vouches for a checkpoint the journal does not
                # reach (installed by state transfer, and the crash came before
                # the journal restarted after it): recovery restarts it now. A
                # journal that starts beyond the vouched checkpoint is not
                # "fixed": nothing vouches for the state covering the ops
                # between, and the restart refuses it.
                storage.restart_journal(named, checkpoint.header)
        # A new nonce in every process life, without drawing from the run's
        # random stream (so runs without disk loss replay as before).
        nonce = int.from_bytes(checksum(b"nonce %d %d %d" % (self.seed, r, self.now))[:8]) | 1
        if version is not None:
            switch_version(machine, named, version)
        self.machine_versions[r] = version
        try:
            core, actions = Consensus.start(
                self.config,
                r,
                state=None if fresh else storage.view_state,
                journal=None if fresh else storage.recovered(uncertain),
                timing=self.o.timing,
                rules=self.o.rules,
                checkpoint=checkpoint,
                nonce=nonce,
                machine_version=type(machine).version,
                state_transfer=True,
            )
        except ValueError as error:
            self.checker._violate("restart", r, str(error))
            return
        core.now = self.now
        self.cores[r] = core
        self.machines[r] = machine
        reconnect = self._reconnect.pop(r, 0)
        for peer in range(self.o.replicas):
            if reconnect and peer != r:
                self.network.clog(peer, r, self.now + reconnect)
        if not fresh:
            self.checker.restarted(r, core.status_snapshot(), storage.view_state)
            if checkpoint is not None:
                self.checker.restore_applied(r, dict(applied))
            self.log(f"r{r} restarted {core.status.value} view {core.view} from op {named}")
        self.execute(r, actions)

    def crash(self, r: int) -> None:
        power = self.rng.random() < self.o.power_loss
        storage = self.storage[r]
        uncertain = storage.crash(
            self.rng, power_loss=power, torn_probability=self.o.torn_probability
        )
        self.head_uncertain[r] = uncertain
        self.cores[r] = None
        self._pending_installs.pop(r, None)
        self.checker.crashed(r)
        self.disk_events = [e for e in self.disk_events if e[2] != r]
        self.stats["crashes"] += 1
        self.stats["power_losses"] += int(power)
        self.stats["torn"] += int(uncertain)
        delay = self.rng.randint(*self.o.restart_delay)
        self.restart_at[r] = (self.now + delay, power)
        self.log(
            f"r{r} crashed ({'power loss' if power else 'process'}), journal {len(storage.written)}"
        )
        if self.o.disk_loss and self.loss_rng.random() < self.o.disk_loss:
            self.lose_disk(r)

    def lose_disk(self, r: int) -> None:
        """Replace the crashed replica's data directory by a blank one formatted
        to rejoin, when that keeps the faults within the f the cluster tolerates."""
        # Replicas that do not vote (down, rejoining, or waiting for a start_view
        # with an uncertain head) or hold unreadable or lost ops count against f; one
        # more would be beyond the fault model (the cluster would wait for one
        # of them forever, or an op would have no readable copy left).
        impaired = sum(
            1
            for i, (s, c) in enumerate(zip(self.storage, self.cores, strict=True))
            if i != r
            and (
                s.view_state.rejoining
                or s.faulty
                or s.lost_to  # ops cut by damage, not held again: maybe not voting
                or c is None
                or c.status == Status.RECOVERING_HEAD
            )
        )
        if impaired >= (self.o.replicas - 1) // 2:
            return
        self.storage[r] = SimReplicaStorage()
        self.storage[r].view_state = ViewState(rejoining=True)
        self.head_uncertain[r] = False
        self.checker.replaced(r)
        self.stats["disks_lost"] += 1
        self.log(f"r{r} lost its data directory; formatted to rejoin")

    def maybe_corrupt(self, r: int) -> None:
        if not self.o.corruption_probability or self.rng.random() >= self.o.corruption_probability:
            return
        storage = self.storage[r]
        if not storage.written:
            return
        top = len(storage.written)
        if self.rng.random() < 0.5:
            # The head is where a wrong nack can cut a committed op.
            op = self.rng.randint(max(1, top - self.o.timing.pipeline_max), top)
        else:
            op = self.rng.randint(1, top)
        # At most one unreadable copy of an op in the cluster: the fault model
        # keeps a readable copy on another replica.
        if any(op in s.faulty for s in self.storage):
            return
        # A rejoining replica holds no copy yet: the other copies must stay readable.
        if any(s.view_state.rejoining for s in self.storage):
            return
        # Damage that the real journal cuts at (bit rot, a latent sector
        # error, a lost write: trio_replica.cluster.salvage) loses every op
        # from there on here; a body unreadable in place loses one. Each op
        # lost must be readable and durable on another replica.
        cut = self.rng.random() < 0.5
        if cut and op <= max(storage.compacted, storage.view_state.checkpoint_op):
            return  # refused below the checkpoint (cluster.salvage), not a fault to heal
        for at in range(op, top + 1 if cut else op + 1):
            header = storage.written[at - 1][0]
            if not any(
                other is not storage
                and other.compacted < at <= len(other.durable)
                and other.durable[at - 1][0] == header
                and at not in other.faulty_durable
                for other in self.storage
            ):
                return
        if not cut:
            storage.corrupt(op)
            self.stats["corruptions"] += 1
            self.log(f"r{r} corrupted op {op}")
            return
        unreadable = self.rng.random() < 0.5
        storage.damage(op, header_unreadable=unreadable)
        self.stats["damage_cuts"] += 1
        self.log(f"r{r} damaged op {op} (header {'lost' if unreadable else 'readable'})")

    def step(self, r: int, event: Event) -> None:
        core = self.cores[r]
        if core is None:
            return
        before = (core.status, core.view)
        try:
            actions = core.step(event)
        except ProtocolInvariantError as error:
            self.checker._violate("core", r, str(error))
            self.cores[r] = None
            return
        except StateDivergenceError as error:
            self.checker._violate("divergence", r, str(error))
            self.cores[r] = None
            return
        self.checker.now = self.now
        self.checker.stepped(core.status_snapshot())
        if (core.status, core.view) != before:
            if core.status == Status.VIEW_CHANGE and core.view != before[1]:
                self.stats["view_changes"] += 1
            self.log(f"r{r} {core.status.value} view {core.view} op {core.op}")
        self.execute(r, actions)

    def execute(self, r: int, actions: Sequence[Action]) -> None:
        work = list(actions)
        while work:
            action = work.pop(0)
            core = self.cores[r]
            if core is None:
                return
            if isinstance(action, Send):
                storage = self.storage[r]
                self.checker.sent(r, action.message, storage.durable, storage.view_state)
                self.network.send(r, action.to, action.message, self.now)
            elif isinstance(action, SendClient):
                self.network.send(r, CLIENT_BASE + action.client, action.message, self.now)
            elif isinstance(action, WriteJournal):
                self.storage[r].write(action.truncate_after, action.entries)
                self._disk(r, "journal")
            elif isinstance(action, PersistViewState):
                self.storage[r].persist(action.state)
                self._disk(r, "view_state")
            elif isinstance(action, ReadPrepare):
                found = self.storage[r].read_prepare(action.op, action.checksum)
                work = core.step(PrepareRead(found, action.destination)) + work
            elif isinstance(action, ReadHeaders):
                headers = self.storage[r].headers(action.op_min, action.op_max)
                work = core.step(HeadersRead(headers, action.destination)) + work
            elif isinstance(action, Commit):
                work = self._apply(r, core, action) + work
            elif isinstance(action, TakeCheckpoint):
                self._take_checkpoint(r, action)
            elif isinstance(action, Compact):
                self.storage[r].compact(action.through)
                self.stats["compactions"] += 1
                self.log(f"r{r} compacted through op {action.through}")
            else:
                work = self._transfer_action(r, core, action) + work

    def _transfer_action(self, r: int, core: Consensus, action: Action) -> list[Action]:
        """State transfer, as the coordinator and applier of a replica do it."""
        storage = self.storage[r]
        if (
            not isinstance(action, ReadCheckpointChunk | PinCheckpoint)
            and self.o.crash_in_transfer
            and self.transfer_rng.random() < self.o.crash_in_transfer
        ):
            self._crash_next.add(r)
        if isinstance(action, ReadCheckpointChunk):
            kept = storage.snapshots.get(action.op)
            data = None if kept is None else kept[0][action.offset : action.offset + action.length]
            total = 0 if kept is None else len(kept[0])
            return core.step(
                CheckpointChunkRead(
                    action.op,
                    action.checksum,
                    action.offset,
                    total,
                    data or None,
                    action.destination,
                )
            )
        if isinstance(action, PinCheckpoint):
            storage.pin(action.op, action.pin)
        elif isinstance(action, StoreCheckpointChunk):
            storage.store_chunk(action.offset, action.data)
            self._transfer_sources[r] = action.source
        elif isinstance(action, InstallCheckpoint):
            try:
                checkpoint = decode_checkpoint(cbor2.loads(bytes(storage.fetched)))
            except (CorruptionError, ValueError, cbor2.CBORDecodeError):
                checkpoint = None
            if checkpoint is None or (checkpoint.op, checkpoint.header.checksum) != (
                action.op,
                action.checksum,
            ):
                storage.fetched = bytearray()
                return core.step(CheckpointRejected(action.op))
            # What the checker knows of the requests applied up to that op
            # comes with the file from the replica that served it.
            source = self.storage[self._transfer_sources.get(r, r)].snapshots.get(action.op)
            facts = source[1] if source is not None else ({}, checkpoint.digest())
            storage.install(action.op, facts)
            self._pending_installs.setdefault(r, []).append(checkpoint)
            self._disk(r, "install")
        elif isinstance(action, RestoreCheckpoint):
            self.machines[r].restore(action.checkpoint.machine)
            facts = storage.snapshots[action.checkpoint.op][1]
            self.checker.restore_applied(r, dict(facts[0]))
            self.stats["transfers"] += 1
            self.log(f"r{r} installed checkpoint {action.checkpoint.op} by state transfer")
        elif isinstance(action, RestartJournal):
            header = core.checkpoint
            assert header is not None and header.op == action.op
            storage.restart_journal(action.op, header)
            self.log(f"r{r} journal restarted after op {action.op}")
        return []

    def _take_checkpoint(self, r: int, action: TakeCheckpoint) -> None:
        # What the applier does: snapshot the machine now (every op up to the
        # checkpoint applied, none after), digest it, write it durably.
        checkpoint = Checkpoint(
            action.header, self.machines[r].snapshot(), action.clients, self.machine_versions[r]
        )
        data = cbor2.dumps(encode_checkpoint(checkpoint))
        applied = dict(self.checker.applied_requests(r))
        self.storage[r].take_snapshot(action.header.op, data, (applied, checkpoint.digest()))
        self.stats["checkpoints"] += 1
        self.log(f"r{r} checkpoint at op {action.header.op}")
        self._disk(r, "snapshot")

    def _disk(self, r: int, kind: str) -> None:
        self._seq += 1
        due = self.now + self.rng.randint(*self.o.fsync_delay)
        self.disk_events.append((due, self._seq, r, kind))

    def _apply(self, r: int, core: Consensus, action: Commit) -> list[Action]:
        header = action.header
        self.checker.committed(r, header, action.apply)
        self.stats["committed"] = max(self.stats["committed"], header.op)
        self.log(f"r{r} commit {header.op} {header.checksum.hex()[:8]} apply={action.apply}")
        if not action.apply:
            return []
        stored, body = self.storage[r].body_at(header.op)
        if stored != header:
            self.checker._violate("core", r, f"applier read another prepare at op {header.op}")
            return []
        if header.operation == Operation.SWITCH_VERSION:
            version = decode_version(body)
            if version is None:
                return core.step(Applied(header.op, None, "not a version"))
            switch_version(self.machines[r], header.op, version)
            self.machine_versions[r] = version
            return core.step(Applied(header.op, version))
        command = cbor2.loads(body)
        try:
            result = self.machines[r].apply(header.op, command)
        except InvalidCommand as error:
            return core.step(Applied(header.op, None, error.reason))
        return core.step(Applied(header.op, result))

    def digest(self, r: int) -> str:
        core = self.cores[r]
        assert core is not None
        state = [self.machines[r].snapshot(), core.client_table.canonical(), core.commit_min]
        return checksum(cbor2.dumps(state, canonical=True)).hex()

    # --- clients -----------------------------------------------------------------

    def client_receive(self, client: _Client, message: Any) -> None:
        inflight = client.inflight
        if isinstance(message, Redirect):
            client.target = message.primary
            return
        if inflight is None:
            return
        if isinstance(message, Eviction):
            if message.session != client.session or client.session == 0:
                return
            self.log(f"c{client.id} evicted (session {client.session})")
            if client.pending is not None:
                client.pending.info()
            client.pending = None
            client.inflight = None
            client.session = 0
            return
        if not isinstance(message, Reply) or message.request != inflight.request:
            return
        client.target = message.replica
        if inflight.operation == Operation.REGISTER:
            client.session = int(message.result)
            self.log(f"c{client.id} registered session {client.session}")
        else:
            self.stats["acked"] += 1
            client.acked.append((client.id, inflight.request))
            self.log(f"c{client.id} reply {inflight.request} op {message.op} {message.result}")
            if client.pending is not None:
                if message.rejected is not None:
                    client.pending.rejected(message.rejected)
                else:
                    client.pending.ok(message.result)
        client.pending = None
        client.inflight = None

    def client_tick(self, client: _Client) -> None:
        request = client.next_request(self.now, self.history)
        if request is not None:
            self.network.send(client.address, client.target, request, self.now)
            return
        if client.inflight is not None and self.now - client.sent_at >= self.o.client_retry:
            client.attempts += 1
            client.sent_at = self.now
            if client.attempts % 2 == 0:
                client.target = (client.target + 1) % client.replicas
            self.network.send(client.address, client.target, client.inflight, self.now)

    # --- the run -----------------------------------------------------------------

    def run(self) -> SimResult:
        o = self.o
        for r in range(o.replicas):
            self.boot(r, fresh=True)
        converged_at = None
        end = o.ticks + o.liveness_ticks
        for now in range(1, end + 1):
            self.now = now
            self.checker.now = now
            liveness = now > o.ticks
            if now == o.ticks + 1:
                self.network.heal()
                self.log("liveness phase: faults healed")
                for r in range(o.replicas):
                    if r in self.restart_at:
                        self.restart_at[r] = (min(self.restart_at[r][0], now + 5), False)
            self.tick(liveness)
            if self.checker.violations:
                break
            if liveness:
                for client in self.clients:
                    client.stopped = True
                if self.converged():
                    converged_at = now
                    break
        violations = list(self.checker.violations)
        if not violations and converged_at is None:
            violations.append(Violation("liveness", self.now, None, self.describe_stuck()))
        lin = "not checked"
        if not violations:
            lin, lin_violation = self.check_linearizability()
            if lin_violation is not None:
                violations.append(lin_violation)
        self.stats["max_view"] = max((c.view for c in self.cores if c is not None), default=0)
        return SimResult(
            seed=self.seed,
            violations=tuple(violations),
            converged_at=converged_at,
            linearizability=lin,
            stats=dict(self.stats) | self.network.stats,
            trace_digest=self.trace_sum.hex()[:16],
            catch_up=tuple(self.catch_up),
        )

    def tick(self, liveness: bool) -> None:
        o = self.o
        now = self.now
        for index, scheduled in enumerate(o.restarts):
            if scheduled.at == now:
                self._scheduled_stop(index, scheduled)
        # restarts and crashes
        for r, (due, _) in sorted(self.restart_at.items()):
            if due <= now:
                del self.restart_at[r]
                if not liveness:
                    self.maybe_corrupt(r)
                self.boot(r, fresh=False)
        for r in sorted(self._crash_next):
            # A crash right after a step of a state transfer (crash_in_transfer).
            others = sum(
                1 for i, c in enumerate(self.cores) if i != r and (c is None or c.rejoining)
            )
            if not liveness and self.cores[r] is not None and others < (o.replicas - 1) // 2:
                self.crash(r)
                self.stats["transfer_crashes"] += 1
        self._crash_next.clear()
        if not liveness and o.crash_probability:
            # A rejoining replica does not vote: it counts as down until caught up.
            down = sum(1 for c in self.cores if c is None or c.rejoining)
            for r in range(o.replicas):
                if (
                    self.cores[r] is not None
                    and down < (o.replicas - 1) // 2
                    and self.rng.random() < o.crash_probability
                ):
                    self.crash(r)
                    down += 1
        self.network.tick(now)
        # disk completions
        ready = sorted(e for e in self.disk_events if e[0] <= now)
        self.disk_events = [e for e in self.disk_events if e[0] > now]
        for _, _, r, kind in ready:
            if self.cores[r] is None:
                continue
            if kind == "journal":
                self.step(r, JournalDurable(self.storage[r].sync()))
            elif kind == "install":
                self.storage[r].install_synced()
                checkpoint = self._pending_installs[r].pop(0)
                self.step(r, CheckpointInstalled(checkpoint))
            elif kind == "snapshot":
                op = self.storage[r].snapshot_synced()
                _, (_, digest) = self.storage[r].snapshots[op]
                self.step(r, CheckpointTaken(op, digest))
            else:
                state = self.storage[r].view_state_synced()
                self.checker.view_state_durable(r, state)
                self.step(r, ViewStateDurable(state))
        # packets
        for packet in self.network.deliver(now):
            if packet.destination >= CLIENT_BASE:
                self.client_receive(
                    self.clients[packet.destination - CLIENT_BASE - 1], packet.message
                )
            else:
                if self.cores[packet.destination] is not None:
                    self.checker.received(packet.destination, packet.message)
                self.step(packet.destination, Received(packet.message))
        # time
        for r in range(o.replicas):
            self.step(r, Tick())
        for client in self.clients:
            self.client_tick(client)
        self._track_catch_up()

    def _scheduled_stop(self, index: int, scheduled: ScheduledRestart) -> None:
        for r in scheduled.replicas:
            if self.cores[r] is None:
                continue
            self.storage[r].crash(self.rng, power_loss=False, torn_probability=0.0)
            self.head_uncertain[r] = False
            self.cores[r] = None
            self.checker.crashed(r)
            self.disk_events = [e for e in self.disk_events if e[2] != r]
            self.restart_at[r] = (self.now + scheduled.down_for, False)
            self._reconnect[r] = scheduled.reconnect
            self.log(f"r{r} stopped (scheduled restart {index})")
        self._catch_up[index] = (self.now + scheduled.down_for, None, scheduled.replicas)

    def _track_catch_up(self) -> None:
        for index, pending in enumerate(self._catch_up):
            if pending is None or self.catch_up[index] is not None:
                continue
            started, target, replicas = pending
            if self.now < started:
                continue
            if target is None:
                # What the cluster had committed when they started again.
                target = max(
                    (c.commit_max for c in self.cores if c is not None),
                    default=0,
                )
                self._catch_up[index] = (started, target, replicas)
            cores = [self.cores[r] for r in replicas]
            if all(
                c is not None and c.status == Status.NORMAL and c.commit_min >= target
                for c in cores
            ):
                self.catch_up[index] = self.now - started

    def converged(self) -> bool:
        if self.restart_at or any(c is None for c in self.cores):
            return False
        if any(c.inflight is not None for c in self.clients):
            return False
        cores = [c for c in self.cores if c is not None]
        first = cores[0]
        if any(c.status != Status.NORMAL or c.view != first.view for c in cores):
            return False
        top = max(c.op for c in cores)
        if any(c.commit_min != top or c.op != top for c in cores):
            return False
        digests = {self.digest(r) for r in range(self.o.replicas)}
        if len(digests) != 1:
            self.checker._violate(
                "convergence", None, f"replicas committed op {top} with different state digests"
            )
            return True
        for r in range(self.o.replicas):
            applied = self.checker.applied_requests(r)
            for client in self.clients:
                for key in client.acked:
                    if key not in applied:
                        self.checker._violate(
                            "exactly-once",
                            r,
                            f"acknowledged request {key} not applied in the converged log",
                        )
                        return True
        return True

    def describe_stuck(self) -> str:
        parts = []
        for r, c in enumerate(self.cores):
            if c is None:
                parts.append(f"r{r} down")
            else:
                s = c.status_snapshot()
                parts.append(
                    f"r{r} {s.status.value}{' rejoining' if s.rejoining else ''} view {s.view} "
                    f"op {s.op} commit {s.commit_min}/{s.commit_max} journal {s.journal_op}"
                )
        busy = sum(1 for c in self.clients if c.inflight is not None)
        return (
            f"did not converge within {self.o.liveness_ticks} ticks: "
            + ", ".join(parts)
            + (f", {busy} clients waiting")
        )

    def check_linearizability(self) -> tuple[str, Violation | None]:
        result = check_linearizability(
            self.history.operations(),
            self.o.machine,
            equal=self.o.result_equal or results_equal,
            max_steps=LINEARIZABILITY_STEPS,
        )
        if result.verdict == Verdict.NOT_LINEARIZABLE:
            return "violated", Violation("linearizable", self.now, None, result.describe())
        return str(result.verdict.value), None


def run_seed(
    seed: int, options: SimOptions, *, trace: Callable[[str], None] | None = None
) -> SimResult:
    """Run one seed with ``options``; ``trace`` receives one line per event."""
    return _Simulator(seed, options, trace).run()


def run(
    seeds: Sequence[int],
    *,
    replicas: int = 3,
    ticks: int = 1500,
    rules: Rules = CORRECT_RULES,
    overrides: Callable[[SimOptions], SimOptions] | None = None,
) -> list[SimResult]:
    """Run each seed with the swarm options drawn for it (:func:`options_for_seed`)."""
    results = []
    for seed in seeds:
        options = attrs.evolve(options_for_seed(seed, replicas, ticks), rules=rules)
        if overrides is not None:
            options = overrides(options)
        results.append(run_seed(seed, options))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring). Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_replica.testing.cluster",
        description="Run the deterministic VSR cluster simulator for one or more seeds.",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="number of seeds from --seed (default 1)"
    )
    parser.add_argument("--replicas", type=int, default=3, choices=(3, 5), help="cluster size")
    parser.add_argument(
        "--ticks", type=int, default=1500, help="ticks of the safety phase (default 1500)"
    )
    parser.add_argument(
        "--liveness-ticks",
        type=int,
        default=None,
        help="bound on ticks to converge after healing (default 2500)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="print every event of the run (one seed)"
    )
    parser.add_argument(
        "--stop-on-failure", action="store_true", help="stop at the first failing seed"
    )
    parser.add_argument(
        "--break",
        dest="broken",
        action="append",
        default=[],
        choices=[a.name for a in attrs.fields(Rules)],
        metavar="RULE",
        help="turn one protocol rule off to watch the checkers catch it (repeatable): "
        + ", ".join(a.name for a in attrs.fields(Rules)),
    )
    args = parser.parse_args(argv)
    rules = attrs.evolve(CORRECT_RULES, **{name: False for name in args.broken})
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        options = attrs.evolve(options_for_seed(seed, args.replicas, args.ticks), rules=rules)
        if args.liveness_ticks is not None:
            options = attrs.evolve(options, liveness_ticks=args.liveness_ticks)
        result = run_seed(seed, options, trace=print if args.trace else None)
        print(result.summary(), flush=True)
        if not result.ok:
            failed += 1
            for violation in result.violations[1:]:
                print(f"    {violation}")
            if args.stop_on_failure:
                break
    print(f"{args.seeds} seeds, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
