"""Recovery: rebuild a state machine from a data directory after any stop.

:func:`recover` loads the newest valid snapshot, restores the state machine
from it, opens the journal (which scans it and cuts a provable torn tail)
and replays every op after the snapshot through the state machine, and
reports what it did in a :class:`RecoveryReport`.

Replay is one pass: the journal's open scan hands each verified body above
the snapshot's op to the replay as it goes (:class:`~trio_replica.journal.Replay`),
so every record is read and verified once, and replay decodes the very
bytes that were verified. The snapshot is therefore loaded first, in the
open's I/O thread with the data directory's lock held; the state machine's
``restore`` and ``apply`` run there too, one batch. Whether the snapshot and
the journal fit is judged once the scan is complete, and a recovery that
fails leaves the state machine in an unspecified state (as it always could:
replay may stop at any op).

Replay is the live applier's rule run again: an op whose ``apply`` raises
:class:`~trio_replica.errors.InvalidCommand` was rejected the same way when
it was first applied, so it is skipped again; any other exception is the
state machine's bug and raises :class:`~trio_replica.errors.StateMachineError`
naming the op (the op is in the journal, so every recovery meets it until
the state machine is fixed).
"""

from __future__ import annotations

import time
from functools import partial

import attrs
import trio

from ..codec import UndecodableError, decode
from ..coordinator.fit import FitObservation, FitProblem, covering_anchor, judge_fit
from ..coordinator.snapshot import Snapshot
from ..coordinator.snapshot_files import LoadScan, MachineCheck, scan_and_load, scan_snapshots
from ..coordinator.store import SnapshotStore
from ..errors import (
    CorruptionError,
    ForeignDataError,
    ReplicaError,
    ReplicaKindError,
    StateMachineError,
)
from ..journal import Journal, JournalDamage, JournalRecovery, Replay, SnapshotAnchor
from ..journal.superblock import Superblock, read_superblock
from ..stm.apply import replay_op
from ..stm.protocol import StateMachine
from ..storage import Directory, DirectoryLike
from .writer import advance_watermark

__all__ = ["RecoveryReport", "recover"]


@attrs.frozen
class RecoveryReport:
    """What :func:`recover` did.

    ``snapshot_op``: op of the snapshot the state was restored from (0: none).
    ``ops_replayed``: journal ops replayed after it (``ops_rejected`` of them
    were rejected by ``apply`` with ``InvalidCommand``, as they were live).
    ``bytes_truncated``: torn-tail bytes the journal cut. ``seconds``: wall
    time of the whole recovery. ``last_op``: the last op in the journal (the
    state now reflects ops 1..last_op). ``journal``: the journal's own scan
    report. ``snapshots_skipped``: invalid snapshot files passed over.
    ``damage``: damage in the journal below the snapshot, which the snapshot
    covers (file, offset, op; logged as a warning): nothing acknowledged was
    lost, but no older snapshot can be fallen back to (None: none).
    """

    snapshot_op: int
    ops_replayed: int
    bytes_truncated: int
    seconds: float
    last_op: int
    journal: JournalRecovery
    snapshots_skipped: int
    ops_rejected: int = 0
    damage: JournalDamage | None = None

    def __str__(self) -> str:
        """One line for a person (``print(replica.recovery)``): where the state
        came from, what replay did, what was cut, and how long it took."""
        took = f"in {self.seconds * 1000:.1f} ms"
        if self.last_op == 0:
            head = f"recovered an empty data directory {took}"
        else:
            source = (
                f"snapshot at op {self.snapshot_op}"
                if self.snapshot_op
                else "no snapshot (replayed from op 1)"
            )
            replayed = f"{self.ops_replayed} op{'' if self.ops_replayed == 1 else 's'} replayed"
            if self.ops_rejected:
                replayed += f" ({self.ops_rejected} rejected again, as when first applied)"
            head = f"recovered to op {self.last_op} {took}: {source} + {replayed}"
        parts = [head]
        if self.bytes_truncated:
            where = self.journal.truncated_path or "the last segment"
            parts.append(f"cut a torn tail of {self.bytes_truncated} bytes from {where}")
        if self.damage is not None:
            parts.append(self.damage.describe())
        if self.snapshots_skipped:
            count = self.snapshots_skipped
            parts.append(f"skipped {count} invalid snapshot{'' if count == 1 else 's'}")
        return "; ".join(parts)


async def recover(
    directory: DirectoryLike,
    machine: StateMachine,
    *,
    slot_count: int = 1024,
    segment_bytes: int = 64 * 2**20,
    max_body_bytes: int = 4 * 2**20,
    keep_snapshots: int = 2,
    lock: bool = True,
) -> tuple[Journal, SnapshotStore, RecoveryReport]:
    """Recover ``machine`` from ``directory``; return the open journal and store.

    With ``lock=True`` the journal takes ``<data>/LOCK`` (held until the
    journal is closed); pass ``lock=False`` only when the caller already
    holds it, as ``open_replica`` does. On success the caller owns the
    journal and the store and must close them; on failure both are closed.

    The journal's watermark is set to the oldest retained snapshot, so the
    journal keeps every op a fallback to that older snapshot would need.

    Raises :class:`~trio_replica.errors.CorruptionError` when the journal and
    the snapshots do not fit together (ops missing between the snapshot and
    the journal, or a snapshot newer than the journal's last op), and
    :class:`~trio_replica.errors.StateMachineError` when replay hits a bug.
    """
    started = time.perf_counter()
    check = MachineCheck(machine.name, machine.version, 0 if _upgrades(machine) else None)
    replayer = _Replayer(machine, check)
    journal = await Journal.open(
        directory,
        slot_count=slot_count,
        segment_bytes=segment_bytes,
        max_body_bytes=max_body_bytes,
        lock=lock,
        snapshot_anchor=partial(_newest_snapshot, machine=check),
        replay=replayer.prepare,
    )
    store: SnapshotStore | None = None
    try:
        _refuse_cluster_directory(journal)
        store = SnapshotStore(
            directory,
            keep=keep_snapshots,
            machine_name=machine.name,
            machine_version=machine.version,
            directory_id=journal.directory_id,
            chain_checksum=journal.checksum_at,
            # A machine that upgrades older states accepts their snapshots.
            oldest_machine_version=0 if _upgrades(machine) else None,
        )
        if replayer.loaded is not None:
            snapshot = store.adopt(replayer.loaded)
        else:
            # No snapshot directory yet: the store creates it (nothing to load).
            snapshot = await store.load_latest()
        snapshot_op = snapshot.op if snapshot is not None else 0
        damage = journal.recovery.damage
        if damage is not None and snapshot_op < damage.snapshot_op:
            # The snapshot that covers the damage could not be loaded after
            # all (its body does not decode): the ops replay would need from
            # the older one are the damaged ones.
            raise CorruptionError(
                f"{damage.reason}; the snapshot at op {damage.snapshot_op} that covered it "
                f"could not be loaded, and replay from op {snapshot_op} would need the "
                "damaged ops",
                path=damage.path,
                offset=damage.offset,
                op=damage.op,
            )
        await _check_fits(journal, store, snapshot)
        if replayer.gap is not None or replayer.expected != journal.last_op + 1:
            # _check_fits refuses every journal that does not continue the
            # snapshot up to its last op; this is replay's own account of it.
            raise CorruptionError(
                f"journal replay after the snapshot at op {snapshot_op} reached op "
                f"{replayer.expected - 1}, the journal ends at op {journal.last_op}",
                op=replayer.expected,
            )
        skipped = len(store.last_load_skipped)
        replayed, rejected = replayer.replayed, replayer.rejected
        retain_from = store.oldest_retained_op
        advance_watermark(journal, snapshot_op if retain_from is None else retain_from)
    except BaseException:
        with trio.CancelScope(shield=True):
            if store is not None:
                await store.aclose()
            await journal.aclose()
        raise
    report = RecoveryReport(
        snapshot_op=snapshot_op,
        ops_replayed=replayed,
        bytes_truncated=journal.recovery.bytes_truncated,
        seconds=time.perf_counter() - started,
        last_op=journal.last_op,
        journal=journal.recovery,
        snapshots_skipped=skipped,
        ops_rejected=rejected,
        damage=journal.recovery.damage,
    )
    return journal, store, report


def _refuse_cluster_directory(journal: Journal) -> None:
    """A cluster member's directory is never replayed as a single replica's."""
    block = journal.superblock
    if _is_cluster(block):
        raise ReplicaKindError(
            f"{journal.path} is the data directory of replica {block.replica} of a "
            f"{block.replica_count}-replica cluster "
            f"{int.from_bytes(block.cluster_id, 'little')}; open it with open_cluster_replica "
            "(or `trio-replica serve`), not as a single replica",
            path=journal.path,
            replica=block.replica,
            replica_count=block.replica_count,
        )


def _is_cluster(block: Superblock) -> bool:
    return block.replica_count != 1 or block.cluster_id != bytes(16)


def _newest_snapshot(data: Directory, *, machine: MachineCheck) -> SnapshotAnchor | None:
    """The newest snapshot file of ``machine`` that verifies, for the journal scan (blocking).

    Asked only when the journal meets damage a snapshot may cover. An
    unbound snapshot (zero chain checksum) matches no record, so it never
    covers anything.
    """
    found = scan_snapshots(data, machine=machine, create=False, remove_temps=False, decode=False)
    return None if found is None else covering_anchor(found.entries)


def _upgrades(machine: StateMachine) -> bool:
    """Whether ``machine`` overrides :meth:`StateMachine.upgrade_snapshot`."""
    return type(machine).upgrade_snapshot is not StateMachine.upgrade_snapshot


def _restore(machine: StateMachine, snapshot: Snapshot | None) -> int:
    if snapshot is None:
        return 0
    state = snapshot.state
    version = snapshot.machine_version
    if version is not None and version != machine.version:
        try:
            state = machine.upgrade_snapshot(version, state)
        except Exception as exc:
            raise StateMachineError(
                f"state machine {machine.name!r} version {machine.version} could not upgrade "
                f"the snapshot at op {snapshot.op}, written by version {version}: "
                f"{type(exc).__name__}: {exc}",
                op=snapshot.op,
            ) from exc
    try:
        machine.restore(state)
    except ReplicaError:
        raise
    except Exception as exc:
        raise StateMachineError(
            f"state machine {machine.name!r} raised {type(exc).__name__} restoring "
            f"the snapshot at op {snapshot.op}: {exc}",
            op=snapshot.op,
        ) from exc
    return snapshot.op


async def _check_fits(journal: Journal, store: SnapshotStore, snapshot: Snapshot | None) -> None:
    """The snapshot and the journal must fit: the judgment ``verify`` makes too."""
    path = None
    chain = None
    if snapshot is not None:
        path = next((info.path for info in store.list() if info.op == snapshot.op), None)
        if journal.first_op - 1 <= snapshot.op <= journal.last_op:
            chain = await journal.checksum_at(snapshot.op)
    verdict = judge_fit(
        FitObservation(
            first_op=journal.first_op,
            last_op=journal.last_op,
            snapshot_op=snapshot.op if snapshot is not None else None,
            snapshot_path=path,
            snapshot_chain=snapshot.chain_checksum if snapshot is not None else None,
            journal_chain=chain,
        )
    )
    if verdict is None:
        return
    error = ForeignDataError if verdict.problem is FitProblem.FOREIGN else CorruptionError
    raise error(verdict.message, path=verdict.path, op=verdict.op)


class _Replayer:
    """Recovery's one pass: load the snapshot, restore, replay what the scan verifies.

    :meth:`prepare` runs in the journal open's I/O thread with the lock
    held, before the scan; :meth:`apply` is then given each verified body
    above the snapshot's op, in op order. A body whose op is not the next
    one (the journal does not continue the snapshot) stops the replay; the
    fit check that follows the open refuses such a journal.
    """

    def __init__(self, machine: StateMachine, check: MachineCheck) -> None:
        self.machine = machine
        self.check = check
        self.loaded: LoadScan | None = None
        self.snapshot_op = 0
        self.expected = 1
        self.rejected = 0
        self.gap: int | None = None

    def prepare(self, data: Directory) -> Replay | None:
        """Load the newest valid snapshot, restore it; what the scan should hand over."""
        block = read_superblock(data)
        if block is not None and _is_cluster(block):
            return None  # refused once the journal is open, before anything is replayed
        # Read-only until the journal is judged, but for leftover temp files
        # of an interrupted persist, which are never loaded whatever happens.
        loaded = scan_and_load(data, machine=self.check, create=False, remove_temps=True)
        self.loaded = loaded
        info = loaded.info if loaded is not None else None
        if info is None and loaded is not None and loaded.scan.entries:
            return None  # snapshot files, none valid: recovery refuses after the open
        if info is not None:
            _restore(
                self.machine,
                Snapshot(
                    info.op,
                    loaded.state if loaded is not None else None,
                    chain_checksum=info.chain_checksum,
                    machine_version=info.machine_version,
                ),
            )
            self.snapshot_op = info.op
        self.expected = self.snapshot_op + 1
        return Replay(self.snapshot_op, self.apply)

    def apply(self, op: int, body: memoryview) -> None:
        """Decode and apply one verified body (the scan's hot loop calls this)."""
        if op != self.expected:
            # Ops only grow: once one is missing, every later op is off too.
            if self.gap is None:
                self.gap = op
            return
        try:
            command = decode(body)
        except UndecodableError as exc:
            # The record's checksum matched, yet it does not decode: the
            # replica only journals commands that round-trip, so this is
            # corruption (the scan adds the file and offset).
            raise CorruptionError(
                f"journal op {op} does not hold a valid CBOR command: {exc.reason}", op=op
            ) from exc
        if not replay_op(self.machine, op, command):
            self.rejected += 1
        self.expected = op + 1

    @property
    def replayed(self) -> int:
        """Ops replayed so far (rejected ones included)."""
        return self.expected - 1 - self.snapshot_op
