"""``trio-replica repair DIR --truncate-tail [--force]``: the explicit journal repair.

Recovery truncates a provably torn tail on its own; everything else it
refuses. This is the operator's explicit act for both: without ``--force``
it cuts only what opening the journal would cut (so it is the same decision,
made visible and with a ``.broken`` copy); with ``--force`` it cuts at the
first bad record wherever it is, dropping the good records after it, each
affected file copied to ``<name>.broken`` first. It holds the directory's
exclusive lock, so it never runs beside a replica.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ..coordinator.fit import covering_anchor
from ..coordinator.store import verify_snapshots
from ..errors import CorruptionError, FormatError, ReplicaError, StorageError
from ..journal.superblock import read_superblock
from ..storage import Directory
from .cluster_dir import is_cluster_directory
from .datadir import open_data_dir
from .errors import CommandError, ExitStatus, UsageError
from .verify import verify_directory

if TYPE_CHECKING:
    from ..journal.repair import RepairReport

__all__ = ["add_parser", "describe_repair", "run"]


def describe_repair(report: RepairReport) -> list[str]:
    """Lines saying what a repair cut and where the copies are, and what it left."""
    left = (
        []
        if report.damage is None
        else [f"left as it is (opening serves the snapshot): {report.damage.describe()}"]
    )
    if report.path is None:
        if left:
            return ["nothing to cut: the journal has no torn tail", *left]
        return ["nothing to cut: the journal has no torn tail and no bad record"]
    records = f"{report.ops_cut} record{'s' if report.ops_cut != 1 else ''}"
    lines = [
        f"cut {report.bytes_cut} bytes at offset {report.offset} of file {report.path} "
        f"({records} with an intact header among them)"
    ]
    if report.reason:
        lines.append(f"why: {report.reason}")
    lines.extend(f"kept a copy of the original: {copy}" for copy in report.broken_copies)
    return lines + left


def _cluster_checkpoint(directory: Directory) -> int | None:
    """The checkpoint op a cluster directory's view state names (0: none
    yet), or None for a single replica's directory."""
    try:
        block = read_superblock(directory)
    except (ReplicaError, OSError):
        return None  # the repair itself reports an unreadable superblock
    if not is_cluster_directory(directory, block):
        return None
    return block.checkpoint_op if block is not None else 0


def run(args: argparse.Namespace) -> int:
    """Repair ``args.dir``."""
    if not args.truncate_tail:
        raise UsageError(
            "repair needs --truncate-tail (the only repair there is: cut the journal "
            "at its first bad record, keeping a .broken copy)"
        )
    from ..journal.repair import forced_cut_refusal, repair_journal
    from ..journal.scan import open_wal_dir

    directory = open_data_dir(args.dir)
    snapshots = verify_snapshots(directory)
    valid = [info.op for info in snapshots if info.valid]
    keep_after = max(valid) if valid else None
    cluster = _cluster_checkpoint(directory)
    if cluster is not None:
        # A cluster replica restarts from the checkpoint its view state
        # names, and its journal opens without a snapshot anchor (cluster
        # checkpoints are bound to prepares, not to the journal's chain).
        keep_after = cluster or None
    try:
        # The same judgment as opening: damage the newest valid snapshot
        # covers is served by open, so repair neither refuses nor cuts it.
        report = repair_journal(
            directory,
            force=args.force,
            keep_after=keep_after,
            anchor=None if cluster is not None else lambda: covering_anchor(snapshots),
        )
    except CorruptionError as exc:
        if args.force or isinstance(exc, FormatError):
            raise
        # Offer --force only where a forced cut would be made (one rule,
        # shared with repair_journal), never as a hint that then refuses.
        try:
            wal = open_wal_dir(directory)
        except StorageError:
            refusal: str | None = "the journal directory is missing (repair cannot recreate it)"
        else:
            refusal = forced_cut_refusal(wal, exc, keep_after)
        if refusal is not None:
            raise CommandError(f"{exc}; {refusal}; nothing was changed") from exc
        raise CommandError(
            f"{exc}; this is not a torn tail (the records after it were durable), so "
            "repair refuses to cut here; --force cuts at this record and loses "
            "everything after it (keeping .broken copies)"
        ) from exc
    if args.json:
        print(
            json.dumps(
                {
                    "file": report.path,
                    "offset": report.offset,
                    "bytes_cut": report.bytes_cut,
                    "ops_cut": report.ops_cut,
                    "broken_copies": list(report.broken_copies),
                    "reason": report.reason,
                    "damage_left": None if report.damage is None else report.damage.describe(),
                },
                separators=(",", ":"),
            )
        )
    else:
        for line in describe_repair(report):
            print(line, file=sys.stdout)
    # Never a success on a result that opening refuses: the same judgment.
    after = verify_directory(directory, shown_path=args.dir)
    refused = [
        p for p in after.problems if not p.startswith("snapshot: ") and p not in after.opens_with
    ]
    if refused:
        raise CommandError(
            "after the repair the directory still does not open: " + "; ".join(refused)
        )
    # Repair is about the journal only; say so when a snapshot is bad too.
    for info in verify_snapshots(directory):
        if not info.valid:
            print(
                f"note: snapshot file {info.path} (op {info.op}) is invalid ({info.reason}); "
                "repair leaves snapshots alone: recovery skips it and loads an older one",
                file=sys.stderr if args.json else sys.stdout,
            )
    return ExitStatus.OK


def add_parser(commands: Any) -> None:
    """Add the ``repair`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "repair",
        help="cut a torn or corrupt journal tail, keeping a .broken copy",
        description="Cut the journal at its first bad record, after copying each "
        "affected segment to <name>.broken. Without --force only a provably torn "
        "tail is cut (what opening the journal would cut); a bad record with good "
        "records after it is refused with exit 1. With --force the cut is made at "
        "the first bad record wherever it is, and the good records after it are lost.",
    )
    parser.add_argument("dir", metavar="DIR", help="the replica's data directory")
    parser.add_argument(
        "--truncate-tail",
        action="store_true",
        help="cut the journal at its first bad record (required: the only repair)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="also cut a bad record that has good records after it (they are lost)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: file, offset, bytes_cut, ops_cut, broken_copies, reason",
    )
    parser.set_defaults(run=run)
