"""Deterministic simulation: a replica, a seeded workload, crashes, restarts.

One simulation runs a replica (:func:`trio_replica.open_replica`) on a
:class:`~trio_replica.testing.SimulatedDisk`, with concurrent submitters of
a counter state machine (:class:`LedgerMachine`, which also records which
command each op was), under a mock clock. After every disk operation (one
*tick*) it may crash, with a seeded probability: the state a power loss at
that moment leaves is drawn with :meth:`SimulatedDisk.crash`, the running
replica is abandoned, and a new one is opened on that state. After every
restart it checks DESIGN.md's invariants:

* acked means durable: every command acknowledged before the crash is in
  the recovered state, as the op it was acknowledged as;
* recovery yields a prefix: the recovered state is exactly ops 1..k applied
  in order (the ledger's total equals the sum of its commands, and the
  replica's applied op is k), with k at least the last acked op, and every
  op recovered by an earlier restart is still there, unchanged.

Everything (workload, crash points, crash states, task scheduling) derives
from the seed, so a seed that fails fails the same way every time: its trace
and its digest are identical from run to run.

Command line: ``python -m trio_replica.testing.simulate --seed N --ticks T``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import random
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import trio
import trio.testing

from ..errors import CorruptionError, InvalidCommand, ReplicaError
from ..journal import DECISION_TABLE, Action, JournalRecovery
from ..replica import Replica, open_replica
from ..stm.protocol import StateMachine
from ..storage import Directory
from .disk import DiskOperation, FaultEvent, Faults, SimulatedDisk, derive_seed
from .scheduling import deterministic_scheduling

__all__ = [
    "InvariantViolation",
    "LedgerMachine",
    "SimulationConfig",
    "SimulationResult",
    "main",
    "run_a_copy",
    "run_simulation",
]


_STALL_SECONDS = 3600


class InvariantViolation(ReplicaError):
    """A DESIGN.md invariant failed in a simulation. ``seed`` replays it;
    ``tick`` is the disk operation count when it was detected."""

    def __init__(self, message: str, *, seed: int, tick: int) -> None:
        super().__init__(f"seed {seed}, tick {tick}: {message}")
        self.seed = seed
        self.tick = tick


class LedgerMachine(StateMachine):
    """A counter that also remembers which command each op was.

    Commands are ``{"id": int, "add": int}``; ``apply`` adds and returns the
    op, so a submitter learns which op its command became. The state is the
    total and the ordered list of command ids (op n is ``ids[n - 1]``).
    """

    name: ClassVar[str] = "simulation-ledger"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.total = 0
        self.ids: list[int] = []
        self.adds: list[int] = []

    def apply(self, op: int, command: Any) -> int:
        """Add ``command["add"]``; record ``command["id"]`` as op ``op``."""
        if not isinstance(command, Mapping) or set(command) != {"id", "add"}:
            raise InvalidCommand(f"expected {{'id': int, 'add': int}}, got {command!r}")
        if op != len(self.ids) + 1:
            # Ops reach apply in order, without gaps: anything else is a bug
            # upstream, and must stop the replica rather than be absorbed.
            raise RuntimeError(f"op {op} applied after op {len(self.ids)}")
        self.ids.append(int(command["id"]))
        self.adds.append(int(command["add"]))
        self.total += int(command["add"])
        return op

    def snapshot(self) -> dict[str, Any]:
        """The total and the ordered ids and amounts."""
        return {"total": self.total, "ids": list(self.ids), "adds": list(self.adds)}

    def restore(self, state: Any) -> None:
        """Replace the state with a value :meth:`snapshot` returned."""
        self.total = int(state["total"])
        self.ids = [int(i) for i in state["ids"]]
        self.adds = [int(a) for a in state["adds"]]


@attrs.frozen
class SimulationConfig:
    """Parameters of one simulation; ``seed`` determines everything else.

    ``ticks`` is the number of disk operations to simulate (over all
    restarts); each one is followed by a crash with ``crash_probability``.
    ``process_crash_probability`` is the chance of a process crash (a
    SIGKILL: the page cache survives, unsynced writes stay pending) after
    each disk operation instead. ``faults`` are injected disk faults (failed
    fsyncs, latent sector errors, bit flips). The replica options are small
    on purpose, so that segment rolls, snapshots and compactions happen
    within a few hundred ticks.
    ``directory`` turns the disk into what the replica is given (for
    example a wrapper that injects a bug); ``None`` gives it the disk.
    ``at_rest`` is called with the disk each power loss left, before the
    restart on it: what happens to the data while the machine is down,
    placed where a test wants it (bit rot with ``corrupt`` or ``rot_bit``, a
    bad sector, or an operator deleting or renaming a file). Like
    ``faults``, it makes a refusal that names the damage an allowed outcome.
    """

    seed: int
    ticks: int = 2000
    submitters: int = 4
    crash_probability: float = 0.01
    process_crash_probability: float = 0.0
    snapshot_every: int = 24
    segment_bytes: int = 2048
    max_batch: int = 8
    faults: Faults = attrs.field(factory=Faults)
    directory: Callable[[SimulatedDisk], Directory] | None = None
    at_rest: Callable[[SimulatedDisk], None] | None = None


@attrs.frozen
class SimulationResult:
    """What one simulation did. ``digest`` (SHA-256 of the trace and the final
    disk) is identical for two runs of the same configuration. ``violation``
    is the first invariant that failed (None: all held). ``stopped`` says why
    a run with injected faults ended early (a corruption that recovery
    reported, or no progress), which is not a violation."""

    seed: int
    ticks: int
    restarts: int
    submitted: int
    acked: int
    final_op: int
    trace: tuple[str, ...]
    digest: str
    violation: str | None
    stopped: str | None = None
    known_limit_losses: int = 0
    """Acknowledged ops lost with a last batch that a fault damaged after its
    acknowledgement (indistinguishable from a torn write: the documented
    limit of a single copy, traced as ``KNOWN LIMIT``), not violations."""

    def summary(self) -> str:
        """A few lines for humans."""
        status = "OK" if self.violation is None else f"VIOLATION: {self.violation}"
        if self.violation is None and self.stopped is not None:
            status = f"OK, stopped early: {self.stopped}"
        if self.known_limit_losses:
            status += (
                f" ({self.known_limit_losses} acked ops lost with a last batch damaged "
                "after its ack: the documented limit)"
            )
        return (
            f"seed {self.seed}: {self.ticks} ticks, {self.restarts} crashes/restarts, "
            f"{self.submitted} submitted, {self.acked} acked, final op {self.final_op}\n"
            f"digest {self.digest}\n{status}"
        )


class _Simulation:
    """The state of one run: kept in one object so every task reads the same."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.disk = SimulatedDisk(config.seed, faults=config.faults)
        self.crash_rng = random.Random(derive_seed(config.seed, "crash-points"))
        self.tick = 0
        self.trace: list[str] = []
        self.next_id = 1
        self.submitted = 0
        self.acked_total = 0
        self.restarts = 0
        # The history every later recovery must start with: what an earlier
        # recovery found plus everything acknowledged since.
        self.durable_ids: list[int] = []
        self.amounts: dict[int, int] = {}
        self.acked: dict[int, int] = {}  # op -> id, acknowledged in this incarnation
        self.crashed: SimulatedDisk | None = None
        self.power_lost = False
        # Faults injected into earlier disks of this run (each crash makes a
        # new disk with its own log): where damage may be found later.
        self.fault_events: list[FaultEvent] = []
        self.known_limit_losses = 0
        self.acked_at_crash: dict[int, int] = {}
        self.cancel: trio.CancelScope | None = None
        self.watchdog: trio.CancelScope | None = None
        self.violation: str | None = None
        self.stopped: str | None = None

    @property
    def damaging_faults(self) -> bool:
        """Whether injected faults can damage stored or read bytes (not only fsyncs)."""
        return self.config.faults.damaging or self.config.at_rest is not None

    def fail(self, message: str) -> InvariantViolation:
        if self.violation is None:
            self.violation = f"tick {self.tick}: {message}"
        self.trace.append(f"VIOLATION {message}")
        return InvariantViolation(message, seed=self.seed, tick=self.tick)

    # --- ticks and crashes ---------------------------------------------

    def on_operation(self, op: DiskOperation) -> None:
        if self.crashed is not None:
            return  # the process is dead; what it still does is not on the disk
        self.tick += 1
        if self.watchdog is not None:
            self.watchdog.deadline = trio.current_time() + _STALL_SECONDS
        self.trace.append(
            f"{self.tick} {op.kind} {op.path} {op.offset} {op.size} {op.target}"
            + (" FAILED" if op.failed else "")
        )
        last = self.tick >= self.config.ticks
        draw = self.crash_rng.random()
        if last or draw < self.config.crash_probability:
            self.crash_now()
        elif draw < self.config.crash_probability + self.config.process_crash_probability:
            self.crash_now(process=True)

    def crash_now(self, *, process: bool = False) -> None:
        self.crashed = self.disk.process_crash() if process else self.disk.crash()
        self.power_lost = not process
        # Merged, not replaced: acks of an earlier incarnation whose restart
        # crashed before it could check them are still owed.
        self.acked_at_crash.update(self.acked)
        kind = "PROCESS CRASH" if process else "CRASH"
        self.trace.append(f"{kind} at tick {self.tick} ({len(self.acked)} acked this run)")
        if self.cancel is not None:
            self.cancel.cancel()

    # --- invariants ----------------------------------------------------

    def damage_in_cut(self, journal: JournalRecovery | None) -> FaultEvent | None:
        """An injected fault inside the bytes recovery cut as a torn tail, if any.

        Damage to the last batch after its acknowledgement (bit rot, a lost
        or corrupted write) is indistinguishable from a torn write of it:
        the documented limit of a single copy (docs/format.md, "Known
        limits"). Recovery cuts it loudly; the acknowledged ops in it are
        lost, and that loss is the limit, not a violation, only when a
        fault struck exactly the bytes that were cut.
        """
        if journal is None or journal.truncated_path is None or journal.case is None:
            return None
        if DECISION_TABLE[journal.case] is not Action.TRUNCATE:
            # Only the table's own torn-tail rows make the limit; a cut by
            # any other row (a weakened table) loses what it cuts.
            return None
        cut_path = journal.truncated_path.removeprefix("sim:").strip("/")
        cut_offset = journal.truncated_offset or 0
        for event in [*self.fault_events, *self.disk.fault_log]:
            if (
                event.kind != "fsync_failure"
                and event.path == cut_path
                and event.offset + event.size > cut_offset
            ):
                return event
        return None

    def check_recovered(
        self, machine: LedgerMachine, applied_op: int, journal: JournalRecovery | None = None
    ) -> None:
        ids = machine.ids
        self.trace.append(f"RECOVERED op {applied_op} total {machine.total}")
        if applied_op != len(ids):
            raise self.fail(f"applied op {applied_op} but the state holds {len(ids)} ops")
        if len(set(ids)) != len(ids):
            raise self.fail("an op was applied twice")
        unknown = [i for i in ids if i not in self.amounts]
        if unknown:
            raise self.fail(f"ops that were never submitted appeared: ids {unknown[:5]}")
        if machine.total != sum(self.amounts[i] for i in ids):
            raise self.fail("the total is not the sum of the recovered ops: not a prefix")
        expected = list(self.durable_ids)
        for op, command_id in sorted(self.acked_at_crash.items()):
            while len(expected) < op - 1:
                expected.append(-1)  # unknown, not acked: anything submitted is fine
            if len(expected) < op:
                expected.append(command_id)
            else:
                expected[op - 1] = command_id
        if len(ids) < len(expected):
            limit = self.damage_in_cut(journal)
            if limit is None:
                raise self.fail(
                    f"recovered {len(ids)} ops but {len(expected)} were durable or acked"
                )
            self.trace.append(
                f"KNOWN LIMIT ops {len(ids) + 1}..{len(expected)} cut with the damaged last "
                f"batch ({limit.kind} {limit.path}@{limit.offset})"
            )
            self.known_limit_losses += len(expected) - len(ids)
            expected = expected[: len(ids)]
        for n, want in enumerate(expected, start=1):
            if want != -1 and ids[n - 1] != want:
                raise self.fail(f"op {n} is command {ids[n - 1]}, but {want} was acked/durable")
        self.durable_ids = list(ids)
        self.acked_at_crash = {}

    # --- one incarnation -----------------------------------------------

    async def submitter(self, replica: Replica, index: int) -> None:
        rng = random.Random(derive_seed(self.seed, "submitter", self.restarts, index))
        while True:
            await trio.sleep(rng.random() * 0.01)
            command_id = self.next_id
            self.next_id += 1
            amount = rng.randint(-1000, 1000)
            self.amounts[command_id] = amount
            self.submitted += 1
            try:
                op = await replica.submit({"id": command_id, "add": amount})
            except ReplicaError as exc:
                self.trace.append(f"submit {command_id} failed: {type(exc).__name__}")
                return
            if self.crashed is None:
                self.acked[op] = command_id
                self.acked_total += 1
                self.trace.append(f"ACK id {command_id} op {op}")

    async def incarnation(self) -> None:
        config = self.config
        directory: Directory = (
            self.disk if config.directory is None else config.directory(self.disk)
        )
        self.acked = {}
        self.crashed = None
        machine = LedgerMachine()
        # A replica that makes no disk progress for an hour of (mock) time is
        # stuck: a liveness failure, reported rather than hanging. Every tick
        # pushes the deadline back.
        self.watchdog = trio.CancelScope(deadline=trio.current_time() + _STALL_SECONDS)
        with trio.CancelScope() as self.cancel, self.disk.observe(self.on_operation):
            try:
                with self.watchdog:
                    async with open_replica(
                        directory,
                        machine,
                        snapshot_every=config.snapshot_every,
                        segment_bytes=config.segment_bytes,
                        max_batch=config.max_batch,
                    ) as replica:
                        self.check_recovered(machine, replica.applied_op, replica.recovery.journal)
                        async with trio.open_nursery() as nursery:
                            for index in range(config.submitters):
                                nursery.start_soon(self.submitter, replica, index)
            except* ReplicaError as group:
                self.on_replica_error(group)
        if self.watchdog.cancelled_caught or (self.crashed is None and self.stopped is None):
            raise self.fail(self._stall_or_stop())

    def at_rest(self) -> None:
        """Let the configured ``at_rest`` act on the disk the power loss left."""
        assert self.config.at_rest is not None
        before = self.disk.operation_count, len(self.disk.fault_log)
        self.config.at_rest(self.disk)
        events = list(self.disk.fault_log)[before[1] :]
        changes = self.disk.operation_count - before[0]
        where = ", ".join(f"{e.kind} {e.path}@{e.offset}" for e in events)
        self.trace.append(f"AT REST {changes} operations {where}".rstrip())

    def _stall_or_stop(self) -> str:
        if self.watchdog is not None and self.watchdog.cancel_called:
            return f"no disk operation for {_STALL_SECONDS} s of simulated time"
        return "the replica stopped without a crash"

    def on_replica_error(self, group: BaseExceptionGroup[ReplicaError]) -> None:
        """Decide what a typed error out of a replica means.

        After a crash the abandoned replica may stop with any typed error.
        Without injected faults, a typed error before the crash (a failed
        recovery included: the disk did only what a real one may do) breaks
        "acked means durable, recovery yields a prefix". With faults, a
        failed fsync stops the replica (a process death in the same boot:
        the page cache survives) and
        a corruption found by recovery ends the simulation: reported, not
        dropped, and nothing further can be recovered.
        """
        if self.violation is not None:
            raise group
        if self.watchdog is not None and self.watchdog.cancel_called and self.crashed is None:
            raise self.fail(self._stall_or_stop()) from group
        if self.crashed is not None:
            self.trace.append("abandoned replica stopped with an error")
            return
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if self.config.faults == Faults() and self.config.at_rest is None:
            raise self.fail(f"the replica failed: {type(first).__name__}: {first}") from group
        if isinstance(first, CorruptionError):
            if not self.damaging_faults:
                # Failed fsyncs never damage durable bytes: a refusal then
                # means the journal trusted what was never durable.
                raise self.fail(
                    f"recovery refused although no fault damaged data: {first}"
                ) from group
            self.stopped = f"corruption detected: {first}"
            self.trace.append(f"STOP {self.stopped}")
            return
        self.trace.append(f"replica stopped: {type(first).__name__}")
        # The process stops; the machine does not: the restart happens in the
        # same boot, with whatever the failed fsync left in the page cache.
        self.crash_now(process=True)

    async def run(self) -> None:
        idle = 0
        while True:
            before = self.tick
            await self.incarnation()
            if self.stopped is not None:
                return
            assert self.crashed is not None
            self.fault_events.extend(self.disk.fault_log)
            self.disk = self.crashed
            self.restarts += 1
            if self.power_lost and self.config.at_rest is not None:
                self.at_rest()
            if self.tick >= self.config.ticks:
                break
            # Restarts that die before writing anything (faults on every
            # recovery) would loop forever: stop after a few.
            idle = idle + 1 if self.tick == before else 0
            if idle > 3:
                self.stopped = "no progress: the replica keeps failing before any write"
                self.trace.append(f"STOP {self.stopped}")
                return
        # A last restart, checked like the others, then a clean close. Faults
        # are off for it: it judges what the run left, not a new fault. A
        # refusal here is reported with the seed like any other outcome.
        self.disk.faults = Faults()
        machine = LedgerMachine()
        try:
            async with open_replica(
                self.disk, machine, segment_bytes=self.config.segment_bytes
            ) as r:
                self.check_recovered(machine, r.applied_op, r.recovery.journal)
        except CorruptionError as exc:
            if not self.damaging_faults:
                raise self.fail(f"the final restart failed: {type(exc).__name__}: {exc}") from exc
            self.stopped = f"corruption detected: {exc}"
            self.trace.append(f"STOP {self.stopped}")
        except ReplicaError as exc:
            raise self.fail(f"the final restart failed: {type(exc).__name__}: {exc}") from exc


class _ExpectedAfterCrash(logging.Filter):
    """Demote the journal's torn-tail warning to DEBUG: after a simulated crash
    a torn tail is the expected outcome, not news for an operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("journal recovery:"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


@contextlib.contextmanager
def _crashes_are_expected() -> Iterator[None]:
    journal_logger = logging.getLogger("trio_replica.journal")
    demote = _ExpectedAfterCrash()
    journal_logger.addFilter(demote)
    try:
        yield
    finally:
        journal_logger.removeFilter(demote)


def run_simulation(config: SimulationConfig) -> SimulationResult:
    """Run one simulation (its own ``trio.run`` under a mock clock) and report.

    An invariant violation is returned in the result, not raised; any other
    exception (a bug the replica did not turn into a typed error) propagates.
    """
    sim = _Simulation(config)

    async def main() -> None:
        await sim.run()

    with (
        deterministic_scheduling(derive_seed(config.seed, "scheduler")),
        _crashes_are_expected(),
    ):
        clock = trio.testing.MockClock(autojump_threshold=0)
        try:
            trio.run(main, clock=clock)
        except BaseException:
            # However the violation got wrapped on its way out, it was
            # recorded when it was detected.
            if sim.violation is None:
                raise
    h = hashlib.sha256()
    for line in sim.trace:
        h.update(line.encode())
        h.update(b"\n")
    h.update(sim.disk.digest().encode())
    return SimulationResult(
        seed=config.seed,
        ticks=sim.tick,
        restarts=sim.restarts,
        submitted=sim.submitted,
        acked=sim.acked_total,
        final_op=len(sim.durable_ids),
        trace=tuple(sim.trace),
        digest=h.hexdigest(),
        violation=sim.violation,
        stopped=sim.stopped,
        known_limit_losses=sim.known_limit_losses,
    )


def run_a_copy(
    disk: SimulatedDisk,
    *,
    seed: int,
    ops: int,
    first_id: int = 10**6,
    config: SimulationConfig | None = None,
) -> SimulatedDisk:
    """A copy of the data directory on ``disk``, run on elsewhere: another history.

    What an operator makes copying a data directory to another machine (or
    restoring the same backup twice) and running a replica on each copy:
    both carry the same directory identity, and after the copy each writes
    its own ops. Returns the copy after a replica recovered it (as the
    original's next start would), applied ``ops`` commands of its own
    (ids from ``first_id`` on, amounts drawn from ``seed``: none of them is
    ever submitted to the original; ids of 2**32 and more make larger
    records, another workload's) and closed cleanly. ``disk`` is not changed.
    ``config`` gives the replica options (those of the simulation it copies).

    Synchronous, so an ``at_rest`` hook can call it: the copy runs in its
    own Trio loop on a worker thread while the caller waits. Raises what
    the replica raises (a copy of a directory it refuses cannot run on).
    """
    options = config if config is not None else SimulationConfig(seed=seed)
    copy = disk.clone()
    rng = random.Random(derive_seed(seed, "copy"))

    async def run() -> None:
        async with open_replica(
            copy,
            LedgerMachine(),
            snapshot_every=options.snapshot_every,
            segment_bytes=options.segment_bytes,
            max_batch=options.max_batch,
        ) as replica:
            for n in range(ops):
                await replica.submit({"id": first_id + n, "add": rng.randint(-1000, 1000)})

    failure: list[BaseException] = []

    def worker() -> None:
        try:
            trio.run(run)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=worker, name="simulated-copy")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return copy


def _replay_args(args: argparse.Namespace, seed: int) -> str:
    parts = [f"--seed {seed}", f"--ticks {args.ticks}"]
    for name in (
        "crash_probability",
        "process_crash_probability",
        "fsync_failure",
        "read_error",
        "read_bitflip",
        "write_corruption",
        "lost_write",
        "misdirected_write",
        "bit_rot",
        "bad_sector",
    ):
        parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    parts.append(f"--submitters {args.submitters}")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trio_replica.testing.simulate --seed N --ticks T``: exit 1 on a violation."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_replica.testing.simulate",
        description="Run a replica on a simulated disk with seeded crashes and restarts, "
        "checking after each restart that every acknowledged op survived as the op it was "
        "acknowledged as and that the state is exactly ops 1..k. The seed determines "
        "everything: the same options print the same digest. Exit 1 if any seed violated "
        "an invariant.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0, help="the (first) seed")
    parser.add_argument(
        "--ticks", type=int, default=2000, help="disk operations to simulate per seed"
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="how many seeds to run: --seed, --seed+1, ..."
    )
    parser.add_argument(
        "--crash-probability",
        type=float,
        default=0.01,
        metavar="P",
        help="chance of a crash (power loss, then restart) after each disk operation",
    )
    parser.add_argument(
        "--process-crash-probability",
        type=float,
        default=0.0,
        metavar="P",
        help="chance of a process crash (SIGKILL: the page cache survives) after each disk "
        "operation",
    )
    parser.add_argument(
        "--fsync-failure",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a file or directory fsync fails (its writes stay visible, never durable)",
    )
    parser.add_argument(
        "--read-error",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a read hits a latent sector error (EIO until the sector is rewritten)",
    )
    parser.add_argument(
        "--read-bitflip",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a read returns its data with one bit flipped",
    )
    parser.add_argument(
        "--write-corruption",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a write stores its data with one bit flipped",
    )
    parser.add_argument(
        "--lost-write",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a write is lost by the drive (read back and synced, never stored)",
    )
    parser.add_argument(
        "--misdirected-write",
        type=float,
        default=0.0,
        metavar="P",
        help="chance that a write lands where the previous write to its file went",
    )
    parser.add_argument(
        "--bit-rot",
        type=float,
        default=0.0,
        metavar="P",
        help="chance, after each disk operation, that one bit of durable data flips at rest",
    )
    parser.add_argument(
        "--bad-sector",
        type=float,
        default=0.0,
        metavar="P",
        help="chance, after each disk operation, that one durable sector becomes unreadable",
    )
    parser.add_argument(
        "--submitters",
        type=int,
        default=4,
        metavar="N",
        help="concurrent tasks submitting commands to the replica",
    )
    parser.add_argument(
        "--trace", action="store_true", help="print every event of the trace, not only the summary"
    )
    args = parser.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        result = run_simulation(
            SimulationConfig(
                seed=seed,
                ticks=args.ticks,
                crash_probability=args.crash_probability,
                process_crash_probability=args.process_crash_probability,
                submitters=args.submitters,
                faults=Faults(
                    fsync_failure=args.fsync_failure,
                    read_error=args.read_error,
                    read_bitflip=args.read_bitflip,
                    write_corruption=args.write_corruption,
                    lost_write=args.lost_write,
                    misdirected_write=args.misdirected_write,
                    bit_rot=args.bit_rot,
                    bad_sector=args.bad_sector,
                ),
            )
        )
        if args.trace:
            print("\n".join(result.trace))
        print(result.summary())
        if result.violation is not None:
            # Everything needed to replay it: the same options, this seed.
            print(f"replay: python -m trio_replica.testing.simulate {_replay_args(args, seed)}")
        failed += result.violation is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
