"""Workloads recorded on a SimulatedDisk, and the invariant checks of their crash states.

Every ``record_*`` function runs a representative workload on a directory
(the disk itself, or a deliberately broken wrapper of it) under a
:class:`CrashRecorder`, whose context is what had been acknowledged at each
moment. Every ``check_*`` function recovers every recorded crash state and
returns the violations it found (an empty list: the invariants held), so the
same check proves the real code right and a broken variant wrong.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import attrs

from trio_replica.coordinator import Snapshot, SnapshotStore
from trio_replica.errors import CorruptionError
from trio_replica.journal import Entry, Journal
from trio_replica.storage import Directory
from trio_replica.testing import CrashRecorder, FaultyDirectory, SimulatedDisk
from trio_replica.testing.faults import FaultOperation

Wrap = Callable[[SimulatedDisk], Any]


def without(operation: FaultOperation, where: str) -> Callable[[Directory], Directory]:
    """A wrap that makes ``operation`` do nothing under ``where``: a
    deliberately broken disk (an fsync that claims durability without asking
    the disk), to show that a check catches the classic bug."""

    def wrap(disk: Directory) -> Directory:
        broken = FaultyDirectory(disk)
        broken.plan.skip(operation, where=where)
        return broken

    return wrap


def quiet_recovery_logs() -> None:
    """Torn-tail truncations are logged as warnings; thousands of them are noise here."""
    logging.getLogger("trio_replica").setLevel(logging.ERROR)


def body(op: int) -> bytes:
    """A distinct, op-dependent body whose size varies (some records span sectors)."""
    rng = random.Random(op)
    return bytes(rng.randrange(256) for _ in range(rng.choice((10, 60, 200, 700))))


@attrs.frozen
class Acked:
    """What the workload had acknowledged at a crash point."""

    last_op: int = 0
    watermark: int = 0


def _dir(disk: SimulatedDisk, wrap: Wrap | None) -> Directory:
    return disk if wrap is None else wrap(disk)  # type: ignore[no-any-return]


# --- the journal ------------------------------------------------------------


async def record_journal_appends(
    disk: SimulatedDisk,
    *,
    wrap: Wrap | None = None,
    batches: int = 14,
    segment_bytes: int = 1500,
    compact: bool = False,
    max_states_per_point: int = 24,
) -> CrashRecorder[Acked]:
    """Append batches of 1-3 entries across several segment rolls; with
    ``compact``, then advance the watermark and compact, and append more."""
    acked = Acked()
    recorder: CrashRecorder[Acked] = CrashRecorder(
        disk, context=lambda: acked, max_states_per_point=max_states_per_point
    )
    rng = random.Random(disk.seed)
    with recorder:
        journal = await Journal.open(_dir(disk, wrap), segment_bytes=segment_bytes)
        op = 0
        for _ in range(batches):
            batch = [Entry(op=op + i + 1, body=body(op + i + 1)) for i in range(rng.randint(1, 3))]
            await journal.append(batch)
            op += len(batch)
            acked = Acked(op, acked.watermark)
        if compact:
            watermark = op - 2
            journal.set_watermark(watermark)
            acked = Acked(op, watermark)
            removed = await journal.compact()
            assert removed >= 2, "the workload must delete segments to test compaction"
            for _ in range(2):
                await journal.append([Entry(op=op + 1, body=body(op + 1))])
                op += 1
                acked = Acked(op, watermark)
        await journal.aclose()
    return recorder


@attrs.frozen
class CheckResult:
    """Per-check counts, and the violations (empty when the invariants held)."""

    states: int
    violations: list[str]
    counts: dict[str, int]


async def check_journal_states(recorder: CrashRecorder[Acked]) -> CheckResult:
    """Recover every crash state: the journal must open (a crash alone never
    makes it unrecoverable) and hold exactly ops first..k with the bodies
    written, k >= the last acked op, and every op after the compaction
    watermark still present."""
    violations: list[str] = []
    counts = {"torn_tail_cut": 0, "unacked_survived": 0}
    for point in recorder.points:
        acked = point.context
        where = f"after {point.operation}"
        try:
            journal = await Journal.open(point.state, segment_bytes=1500)
            entries = [e async for e in journal.entries(after=journal.first_op - 1)]
            recovery = journal.recovery
            await journal.aclose()
        except CorruptionError as exc:
            violations.append(f"{where}: recovery failed: {exc}")
            continue
        ops = [e.op for e in entries]
        if ops and ops != list(range(ops[0], ops[0] + len(ops))):
            violations.append(f"{where}: ops not contiguous: {ops}")
            continue
        last = ops[-1] if ops else 0
        first = ops[0] if ops else last + 1
        if last < acked.last_op:
            violations.append(f"{where}: acked op {acked.last_op} lost (recovered up to {last})")
        if first > acked.watermark + 1:
            violations.append(f"{where}: ops after the watermark {acked.watermark} lost")
        for e in entries:
            if e.body != body(e.op):
                violations.append(f"{where}: op {e.op} has the wrong body")
        counts["torn_tail_cut"] += recovery.bytes_truncated > 0
        counts["unacked_survived"] += last > acked.last_op
    return CheckResult(len(recorder.points), violations, counts)


async def check_journal_corruption(
    recorder: CrashRecorder[Acked], *, flips_per_state: int = 2, seed: int = 0
) -> CheckResult:
    """Flip bits in the WAL files of every crash state, then recover.

    Allowed: ``CorruptionError`` (reported), or a recovery that still holds
    every acked op with the bodies written, or one that lost acked ops ONLY
    by cutting a torn tail that it reports (``bytes_truncated`` at or before
    the flipped byte: the last record of a file is indistinguishable from a
    torn write). Anything else drops data silently.
    """
    rng = random.Random(seed)
    violations: list[str] = []
    counts = {"raised": 0, "intact": 0, "reported_cut": 0}
    for point in recorder.points:
        for _ in range(flips_per_state):
            state = point.state.clone()
            wal_files = {p: c for p, c in state.snapshot_bytes().items() if p.startswith("wal/")}
            if not wal_files:
                continue
            path = rng.choice(sorted(wal_files))
            if not wal_files[path]:
                continue
            offset = rng.randrange(len(wal_files[path]))
            state.corrupt(path, offset, rng.randrange(8))
            where = f"after {point.operation}, bit flip at {path}:{offset}"
            try:
                journal = await Journal.open(state, segment_bytes=1500)
                entries = [e async for e in journal.entries(after=journal.first_op - 1)]
                recovery = journal.recovery
                await journal.aclose()
            except CorruptionError:
                counts["raised"] += 1
                continue
            wrong = [e.op for e in entries if e.body != body(e.op)]
            if wrong:
                violations.append(f"{where}: ops {wrong} recovered with corrupted bodies")
                continue
            last = entries[-1].op if entries else 0
            if last >= point.context.last_op:
                counts["intact"] += 1
                continue
            cut_here = (
                recovery.bytes_truncated > 0
                and recovery.truncated_path is not None
                and recovery.truncated_path.endswith(path)
                and (recovery.truncated_offset or 0) <= offset
            )
            if cut_here:
                counts["reported_cut"] += 1
            else:
                violations.append(f"{where}: acked ops after {last} silently dropped")
    return CheckResult(len(recorder.points), violations, counts)


# --- the snapshot store ---------------------------------------------------


def snapshot_state(op: int) -> dict[str, Any]:
    """A state for snapshot ``op``, big enough to span many sectors."""
    return {"op": op, "payload": bytes(random.Random(op).randbytes(3000))}


async def record_snapshot_persists(
    disk: SimulatedDisk, *, wrap: Wrap | None = None, persists: int = 4
) -> CrashRecorder[Acked]:
    """Persist snapshots 10, 20, ... with keep=2 (so older ones get deleted)."""
    acked = Acked()
    recorder: CrashRecorder[Acked] = CrashRecorder(
        disk, context=lambda: acked, max_states_per_point=600
    )
    with recorder:
        store = SnapshotStore(_dir(disk, wrap), keep=2)
        for n in range(1, persists + 1):
            await store.persist(Snapshot(10 * n, snapshot_state(10 * n)))
            acked = Acked(10 * n)
        await store.aclose()
    return recorder


async def check_snapshot_states(recorder: CrashRecorder[Acked]) -> CheckResult:
    """load_latest must return the newest persisted snapshot or a newer one
    being persisted, whole (never a broken one), and never None after a
    persist returned."""
    violations: list[str] = []
    counts = {"previous": 0, "newer": 0}
    for point in recorder.points:
        acked = point.context.last_op
        where = f"after {point.operation}"
        store = SnapshotStore(point.state, keep=2)
        try:
            snap = await store.load_latest()
        except Exception as exc:
            violations.append(f"{where}: load_latest failed: {exc!r}")
            continue
        finally:
            await store.aclose()
        if snap is None:
            if acked:
                violations.append(f"{where}: no snapshot, but {acked} was persisted")
            continue
        if snap.op < acked:
            violations.append(f"{where}: loaded snapshot {snap.op}, but {acked} was persisted")
        if snap.state != snapshot_state(snap.op):
            violations.append(f"{where}: snapshot {snap.op} has a wrong state")
        counts["newer" if snap.op > acked else "previous"] += 1
    return CheckResult(len(recorder.points), violations, counts)
