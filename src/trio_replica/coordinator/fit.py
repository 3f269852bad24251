"""Whether the snapshots and the journal fit together: one judgment for open and verify.

Recovery loads the newest valid snapshot and replays the journal after it;
``verify`` must say "clean" exactly when that works with nothing lost. Both
call :func:`judge_fit` with what they found, so they cannot disagree. It is
a pure function over a small frozen observation (:class:`FitObservation`):
no I/O, testable case by case.

The rules, in the order they are checked:

* without a snapshot the journal must start at op 1 (``GAP``);
* the snapshot's op must not be below the op before the journal's first
  (``GAP``: ops between them are in neither) nor above the journal's last
  (``AHEAD``: the journal lost ops that were durable);
* the snapshot's chain checksum must be the journal's at its op
  (``FOREIGN``: a snapshot of another directory or another history; never
  served).

Which snapshot may cover damage in the journal (:func:`covering_anchor`) is
decided here too, once, for open, ``verify`` and ``repair``.

This is a single replica's judgment. A cluster replica's checkpoints are
not bound to the journal's chain (they carry the unbound marker) but to
their op's prepare, named by the durable view state; its restart and the
tools on its directory judge them by those rules instead
(``trio_replica.cluster.checkpoint_store.load_checkpoint``,
``trio_replica.cli.cluster_dir.checkpoint_fit``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from ..journal.decision import SnapshotAnchor
from .snapshot import SnapshotInfo

__all__ = ["FitObservation", "FitProblem", "FitVerdict", "covering_anchor", "judge_fit"]


class FitProblem(enum.Enum):
    """Why a snapshot and the journal do not fit."""

    GAP = "gap"
    AHEAD = "ahead"
    FOREIGN = "foreign"


@attrs.frozen
class FitObservation:
    """What was found: the journal's extent and the snapshot recovery would load.

    ``snapshot_op`` None: no snapshot. ``snapshot_chain``: the chain checksum
    the snapshot file carries. ``journal_chain``: the journal's chain checksum
    at ``snapshot_op`` (None when the journal does not reach that op).
    """

    first_op: int
    last_op: int
    snapshot_op: int | None = None
    snapshot_path: str | None = None
    snapshot_chain: bytes | None = None
    journal_chain: bytes | None = None


@attrs.frozen
class FitVerdict:
    """A misfit: which rule, the op it concerns, the file, and a sentence."""

    problem: FitProblem
    op: int
    path: str | None
    message: str


def judge_fit(seen: FitObservation) -> FitVerdict | None:
    """None when recovery can load the snapshot and replay the journal after it."""
    snapshot_op = 0 if seen.snapshot_op is None else seen.snapshot_op
    if snapshot_op < seen.first_op - 1:
        covered = (
            f"the newest valid snapshot is at op {snapshot_op}"
            if seen.snapshot_op is not None
            else "there is no valid snapshot"
        )
        return FitVerdict(
            FitProblem.GAP,
            snapshot_op + 1,
            seen.snapshot_path,
            f"gap: ops {snapshot_op + 1}..{seen.first_op - 1} are neither in a snapshot nor "
            f"in the journal (the journal starts at op {seen.first_op}, {covered})",
        )
    if snapshot_op > seen.last_op:
        return FitVerdict(
            FitProblem.AHEAD,
            seen.last_op + 1,
            seen.snapshot_path,
            f"the snapshot at op {snapshot_op} is newer than the journal's last op "
            f"{seen.last_op}: the journal lost ops that were durable",
        )
    if seen.snapshot_op is not None and seen.snapshot_chain != seen.journal_chain:
        carried = seen.snapshot_chain.hex() if seen.snapshot_chain else "none"
        expected = seen.journal_chain.hex() if seen.journal_chain else "unknown"
        return FitVerdict(
            FitProblem.FOREIGN,
            snapshot_op,
            seen.snapshot_path,
            f"the snapshot at op {snapshot_op} does not belong to this journal: it carries "
            f"chain checksum {carried}, the journal's record at op {snapshot_op} is "
            f"{expected} (a snapshot of another data directory or another history)",
        )
    return None


def covering_anchor(snapshots: Iterable[SnapshotInfo]) -> SnapshotAnchor | None:
    """The snapshot that may cover damage in the journal, as the journal scan needs it.

    The newest valid snapshot among ``snapshots`` whose chain checksum could
    be read (an unbound snapshot, zero checksum, matches no record, so it
    covers nothing). Open, ``verify`` and ``repair`` all
    ask this one function, so they cover the same damage
    (docs/invariants.md, 3).
    """
    for info in sorted(snapshots, key=lambda info: info.op, reverse=True):
        if info.valid and info.chain_checksum is not None:
            return SnapshotAnchor(info.op, info.chain_checksum, info.path)
    return None
