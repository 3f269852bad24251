"""``trio-replica verify DIR``: check every record, the chain and every snapshot.

It reads everything once, with memory bounded by one read chunk and the
largest snapshot, and writes nothing and takes no lock (see
:mod:`trio_replica.cli.datadir`). Exit 0 and a one-line summary when clean;
exit 1 with one line per problem (file, offset, op, what is wrong) when
not. A torn tail counts as not clean: the data is recoverable, but an
operator should know that opening the journal will cut bytes. Damage below
the newest valid snapshot that the snapshot covers (the journal after it
chains to the checksum the snapshot carries) is not clean either, exit 1:
the directory opens with nothing acknowledged lost, but the damaged ops are
unreadable and no older snapshot can be fallen back to; the line says that
it opens, and names the file, offset and op. On a
directory a running replica holds, the findings are printed as advisory and
the exit status is 3: files change under a reader, so there is no verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import attrs

from .. import codec
from ..cluster.header import Operation
from ..cluster.storage import decode_envelope
from ..coordinator import SnapshotInfo
from ..coordinator.fit import FitObservation, covering_anchor, judge_fit
from ..coordinator.store import verify_snapshots
from ..errors import CorruptionError, ReplicaError
from ..journal.decision import SnapshotAnchor
from ..journal.scan import ScanResult, iter_records, scan_journal
from ..journal.superblock import read_superblock
from ..storage import Directory
from .cluster_dir import (
    CheckpointFit,
    ClusterState,
    chain_problems,
    checkpoint_fit,
    is_cluster_directory,
    read_cluster_state,
)
from .datadir import SNAPSHOT_DIR, WAL_DIR, open_data_dir, running_note
from .errors import ExitStatus
from .format import MEMBERSHIP_NAME

__all__ = ["VerifyReport", "add_parser", "print_report", "run", "verify_directory"]


@attrs.frozen
class VerifyReport:
    """What :func:`verify_directory` found. ``problems`` is empty when clean;
    ``opens_with`` are the problems among them that opening serves around
    (damage the newest valid snapshot covers), not refuses."""

    scan: ScanResult | None
    snapshots: list[SnapshotInfo]
    problems: list[str]
    seconds: float
    opens_with: list[str] = attrs.field(factory=list)
    cluster: ClusterState | None = None
    """A cluster replica's identity and view state (None: a single replica)."""
    checkpoint: CheckpointFit | None = None
    """A cluster replica's checkpoint, judged as its restart judges it."""

    @property
    def clean(self) -> bool:
        """True when nothing is wrong (not even a torn tail)."""
        return not self.problems


def _fit_problem(
    scan: ScanResult, snapshots: list[SnapshotInfo], chains: dict[int, bytes]
) -> str | None:
    """Open's judgment (:func:`~trio_replica.coordinator.fit.judge_fit`) on what was read."""
    valid = [s for s in snapshots if s.valid]
    newest = max(valid, key=lambda s: s.op) if valid else None
    journal_chain = None
    if newest is not None:
        if scan.damage is not None and scan.damage.snapshot_op == newest.op:
            journal_chain = scan.damage.snapshot_chain  # the scan proved the chain
        elif newest.op == scan.first_op - 1:
            journal_chain = scan.root_parent
        else:
            journal_chain = chains.get(newest.op)
    verdict = judge_fit(
        FitObservation(
            first_op=scan.first_op,
            last_op=scan.last_op,
            snapshot_op=newest.op if newest is not None else None,
            snapshot_path=newest.path if newest is not None else None,
            snapshot_chain=newest.chain_checksum if newest is not None else None,
            journal_chain=journal_chain,
        )
    )
    if verdict is None:
        return None
    where = f" (file {verdict.path})" if verdict.path is not None else ""
    return f"{verdict.message}{where}"


def _undecodable(directory: Directory, scan: ScanResult, from_op: int) -> str | None:
    """The first record from ``from_op`` on whose body is not a command, or None.

    Read as recovery reads it: from where the scan resumed after damage a
    snapshot covers (:attr:`ScanResult.damage`), never over the damage.
    """
    # A cluster replica's record body is a prepare envelope (the 96-byte
    # prepare header, then the command): the membership file marks one.
    cluster = directory.exists(MEMBERSHIP_NAME)
    for record in iter_records(directory, from_op=from_op, resume=scan.damage):
        if record.status != "ok" or record.body is None:
            return None  # the scan judged the records already
        try:
            if cluster:
                try:
                    header, body = decode_envelope(record.body, op=record.op, path=record.path)
                except CorruptionError:
                    continue  # the header chain check reports it, with its place

                if header.operation != Operation.REQUEST:
                    continue
                codec.decode(body)
            else:
                codec.decode(record.body)
        except codec.UndecodableError as exc:
            return (
                f"journal: op {record.op} does not hold a valid CBOR command: {exc.reason} "
                f"(file {record.path}, offset {record.offset}, op {record.op})"
            )
    return None


def verify_directory(directory: Directory, *, shown_path: str) -> VerifyReport:
    """Check the journal and the snapshots of ``directory``; never writes (sync)."""
    started = time.monotonic()
    problems: list[str] = []
    scan: ScanResult | None = None
    snapshots = verify_snapshots(directory)
    wanted = {info.op for info in snapshots if info.valid}
    chains: dict[int, bytes] = {}

    def keep_chain(_segment: int, _offset: int, op: int, _size: int, checksum: bytes) -> None:
        if op in wanted:
            chains[op] = checksum

    cluster_dir = _is_cluster(directory)

    def newest_snapshot() -> SnapshotAnchor | None:
        if cluster_dir:
            # A cluster replica's journal opens without a snapshot anchor: its
            # checkpoints are bound to prepares, not to the journal's chain.
            return None
        return covering_anchor(snapshots)  # as open asks for it (same judgment)

    if not directory.is_dir(WAL_DIR):
        problems.append(f"journal: there is no {directory.path_of(WAL_DIR)} directory")
    else:
        try:
            scan = scan_journal(directory, on_record=keep_chain, anchor=newest_snapshot)
        except CorruptionError as exc:
            problems.append(f"journal: {exc}")
    opens_with: list[str] = []
    if scan is not None and scan.damage is not None:
        opens_with.append(
            f"journal: {scan.damage.describe()}; the directory opens (from that snapshot)"
        )
        problems.extend(opens_with)
    if scan is not None and scan.torn_tail is not None:
        torn = scan.torn_tail
        reason = torn.reason.removeprefix("torn tail: ")
        if torn.action == "remove_segment":
            found = f"journal: torn tail: the last segment, file {torn.path} ({torn.bytes} bytes)"
            fix = "would delete it"
        else:
            found = (
                f"journal: torn tail: {torn.bytes} bytes at offset {torn.offset} "
                f"of file {torn.path}"
            )
            fix = "would truncate them"
        problems.append(
            f"{found} ({reason}); opening the journal {fix}, `trio-replica repair "
            f"{shown_path} --truncate-tail` does it explicitly and keeps a .broken copy"
        )
    if directory.exists(SNAPSHOT_DIR) and not directory.is_dir(SNAPSHOT_DIR):
        # Open would fail creating or reading the snapshot directory.
        problems.append(
            f"snapshots: {directory.path_of(SNAPSHOT_DIR)} is not a directory; opening the "
            "replica fails on it"
        )
    for info in snapshots:
        if not info.valid:
            problems.append(f"snapshot: file {info.path} (op {info.op}) is invalid: {info.reason}")
    cluster, checkpoint = _cluster_checks(directory, scan, problems)
    if scan is not None and cluster_dir:
        # The checkpoint was judged with the cluster's rules (checkpoint_fit);
        # the ops after it are what a restart applies.
        if checkpoint is not None and not checkpoint.problems:
            undecodable = _undecodable(directory, scan, checkpoint.op + 1)
            if undecodable is not None:
                problems.append(undecodable)
    elif scan is not None:
        misfit = _fit_problem(scan, snapshots, chains)
        if misfit is not None:
            problems.append(misfit)
        else:
            # Replay decodes every op after the snapshot it loads: so does verify.
            valid = [info.op for info in snapshots if info.valid]
            undecodable = _undecodable(directory, scan, (max(valid) if valid else 0) + 1)
            if undecodable is not None:
                problems.append(undecodable)
    return VerifyReport(
        scan, snapshots, problems, time.monotonic() - started, opens_with, cluster, checkpoint
    )


def _is_cluster(directory: Directory) -> bool:
    """Whether ``directory`` is a cluster replica's (membership file or identity)."""
    try:
        block = read_superblock(directory)
    except (ReplicaError, OSError):
        block = None
    return is_cluster_directory(directory, block)


def _cluster_checks(
    directory: Directory, scan: ScanResult | None, problems: list[str]
) -> tuple[ClusterState | None, CheckpointFit | None]:
    """A cluster replica's membership, view state, checkpoint and prepare
    header chain (:mod:`.cluster_dir`); their problems are added to ``problems``."""
    try:
        block = read_superblock(directory)
    except (ReplicaError, OSError) as exc:
        if directory.exists(MEMBERSHIP_NAME):
            problems.append(f"superblock: {exc}; the cluster view state cannot be read")
        return None, None
    if not is_cluster_directory(directory, block):
        return None, None
    state = read_cluster_state(directory, block)
    problems.extend(state.problems)
    checkpoint = None
    if scan is not None:
        checkpoint = checkpoint_fit(directory, state)
        problems.extend(checkpoint.problems)
        problems.extend(chain_problems(directory, resume=scan.damage))
    return state, checkpoint


def _summary(report: VerifyReport) -> str:
    scan = report.scan
    assert scan is not None
    ops = f"ops {scan.first_op}..{scan.last_op}" if scan.records else "no ops"
    valid = [s.op for s in report.snapshots if s.valid]
    snaps = f"{len(valid)} snapshot{'s' if len(valid) != 1 else ''}"
    if valid:
        snaps += f" (newest at op {max(valid)})"
    segments = len(scan.segments)
    cluster = ""
    if report.cluster is not None:
        c = report.cluster
        cluster = (
            f"; cluster {c.cluster_id} replica {c.replica} of {c.replica_count}: view {c.view}, "
            f"log_view {c.log_view}, commit_max {c.commit_max}, {len(c.suffix)} suffix "
            "headers, prepare header chain linked"
        )
        if report.checkpoint is not None:
            cluster += f", {report.checkpoint.describe()}"
    return (
        f"clean: {segments} segment{'s' if segments != 1 else ''}, "
        f"{scan.records} records ({ops}), {snaps}{cluster}; checked in {report.seconds:.2f} s"
    )


def report_json(report: VerifyReport, *, advisory: bool) -> dict[str, Any]:
    """The report as one JSON object (``--json``)."""
    scan = report.scan
    return {
        "clean": report.clean and not advisory,
        "advisory": advisory,
        "problems": list(report.problems),
        "journal": None
        if scan is None
        else {
            "segments": len(scan.segments),
            "records": scan.records,
            "first_op": scan.first_op,
            "last_op": scan.last_op,
        },
        "snapshots": [
            {"file": s.path, "op": s.op, "valid": s.valid, "reason": s.reason}
            for s in report.snapshots
        ],
        "cluster": None if report.cluster is None else report.cluster.as_json(),
        "checkpoint": None
        if report.checkpoint is None
        else {
            "op": report.checkpoint.op,
            "checksum": report.checkpoint.checksum.hex(),
            "problems": list(report.checkpoint.problems),
        },
        "seconds": round(report.seconds, 6),
    }


def print_report(report: VerifyReport, out: TextIO) -> None:
    """Print the one-line summary, or one line per problem and a closing line."""
    if report.clean:
        print(_summary(report), file=out)
        return
    for problem in report.problems:
        print(problem, file=out)
    count = len(report.problems)
    print(f"NOT CLEAN: {count} problem{'s' if count != 1 else ''} found", file=out)


def run(args: argparse.Namespace) -> int:
    """Verify ``args.dir``: 0 when clean, 1 when not."""
    directory = open_data_dir(args.dir, read_only=True)
    note = running_note(directory)
    report = verify_directory(directory, shown_path=args.dir)
    if args.json:
        if note is not None:
            print(note, file=sys.stderr)
        print(json.dumps(report_json(report, advisory=note is not None), separators=(",", ":")))
        if note is not None:
            return ExitStatus.UNAVAILABLE
        return ExitStatus.OK if report.clean else ExitStatus.PROBLEM
    if note is not None:
        print(note, file=sys.stderr)
        print_report(report, sys.stdout)
        print(
            "no verdict: a running replica holds the directory; stop it (or copy the "
            "directory) and verify again",
            file=sys.stdout,
        )
        return ExitStatus.UNAVAILABLE
    print_report(report, sys.stdout)
    return ExitStatus.OK if report.clean else ExitStatus.PROBLEM


def add_parser(commands: Any) -> None:
    """Add the ``verify`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "verify",
        help="check every record, the hash chain and every snapshot (read-only)",
        description="Check every journal record (checksum, op, hash chain across "
        "segments) and every snapshot file, in constant memory, without writing "
        "anything; in a cluster replica's directory also its membership, the view "
        "state (view, log_view, commit_max, suffix headers), the checkpoint the view "
        "state names (a valid snapshot of that op holding that prepare, as a restart "
        "loads it) and the prepare header "
        "chain. Exit 0 when clean; 1 with one line per problem (file, offset, op, "
        "what is wrong) when not, including a torn tail and damage below the newest "
        "snapshot that it covers (the directory then opens, and the line says so); "
        "2 on usage errors; 3 when "
        "a running replica holds the directory (the findings are then advisory: "
        "files change while they are read). Never takes a lock, so it never keeps "
        "a replica from starting.",
    )
    parser.add_argument("dir", metavar="DIR", help="the replica's data directory")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: clean, advisory, problems, journal, snapshots, "
        "cluster (identity and view state, or null), seconds",
    )
    parser.set_defaults(run=run)
