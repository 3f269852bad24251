"""``trio-replica status DIR`` or ``status ADDR...``: a data directory, or running cluster replicas.

Given ``host:port`` addresses of cluster replicas (``trio-replica serve``),
``status`` asks each for its view, status, primary, op, commit and applied
op (a read-only status hello, ``docs/format.md``; over mutual TLS with
``--tls-dir`` or ``--tls-ca/--tls-cert/--tls-key``: a replica with TLS
answers only a certificate of its cluster, since even status tells an
outsider who leads and how far the log goes) and says whether they agree:
every replica answered, all are normal in the same view of the same
cluster, and the primary of that view is the one claiming to be. Exit 0
when they agree, 1 when they do not, 3 when none answered. Agreeing says
nothing about how far each replica got: a replica whose applied op is more
than ``LAG_OPS`` behind the furthest one (a restarted replica catching up)
is reported on its own line as catching up, whatever the verdict.

For a data directory:

Where ``verify`` checks every byte, ``status`` answers "what is in there?"
in the time it takes to read the snapshots and the last journal segment:
segments and their bytes, the op range, the snapshots (the newest valid one,
its state machine), and how many ops a recovery would replay. It never
writes and takes no lock, so it never keeps a replica from starting; while
a replica runs, its answer is advisory (files change as it reads) and it
says so on stderr, as ``inspect`` and ``verify`` do. ``--json`` prints the
same facts as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from typing import Any

import attrs
import trio

from ..cluster.config import TlsFiles
from ..cluster.tcp import AddressError, FrameError, parse_address, query_status
from ..cluster.tls import TlsConfigError
from ..coordinator.store import verify_snapshots
from ..errors import ReplicaError
from ..journal.decision import classify_segment_set
from ..journal.plan import evidence_of
from ..journal.scan import iter_records, open_wal_dir
from ..journal.segment import probe_headers
from ..journal.superblock import read_superblock
from ..layout import SUPERBLOCK_NAME
from ..storage import OsDirectory
from .cluster_dir import CheckpointFit, checkpoint_fit, is_cluster_directory, read_cluster_state
from .datadir import SNAPSHOT_DIR, WAL_DIR, open_data_dir, running_note
from .errors import ExitStatus, UsageError
from .tls_options import add_client_tls_arguments, client_tls

__all__ = ["DirectoryStatus", "add_parser", "directory_status", "run"]


@attrs.frozen
class DirectoryStatus:
    """What :func:`directory_status` found. Ops are ``None`` when there are none."""

    directory: str
    segments: int
    segment_bytes: int
    first_op: int | None
    last_op: int | None
    last_segment_problem: str | None
    snapshots: int
    invalid_snapshots: int
    newest_snapshot_op: int | None
    machine_name: str | None
    machine_version: int | None
    #: Everything seen that is not clean: a superblock that does not read or
    #: does not fit the segments, a bad record at the end of the last
    #: segment, invalid snapshots. Empty for a directory that looks clean.
    problems: tuple[str, ...] = ()
    #: True when a running replica holds the directory (files change while read).
    advisory: bool = False
    #: Valid record headers found after the bad record of the last segment
    #: (0: none, the bad record is where the segment ends), and the highest
    #: op among them: damage INSIDE the journal, not a torn tail.
    records_after_problem: int = 0
    last_op_after_problem: int | None = None
    #: A cluster replica's directory: the checkpoint its view state names
    #: (0: none yet), judged as its restart judges it (problems above when
    #: it does not fit). None: a single replica's directory.
    checkpoint_op: int | None = None

    @property
    def ops_to_replay(self) -> int | None:
        """Ops after the newest valid snapshot, what opening would replay; None
        when a problem makes that unknown (``verify`` gives the verdict)."""
        if self.problems:
            return None
        if self.last_op is None:
            return 0
        # A cluster replica restarts from the checkpoint its view state names.
        base = self.checkpoint_op if self.checkpoint_op is not None else self.newest_snapshot_op
        return max(0, self.last_op - (base or 0))

    def as_json(self) -> dict[str, Any]:
        """The status as a JSON-ready dict (every field, plus ``ops_to_replay``)."""
        fields = attrs.asdict(self)
        fields["problems"] = list(self.problems)
        return {**fields, "ops_to_replay": self.ops_to_replay}


def _segments(directory: OsDirectory) -> list[tuple[int, str, int]]:
    """``(first op, name, size)`` of each segment file, by first op."""
    wal = directory.path_of(WAL_DIR)
    if not os.path.isdir(wal):
        return []
    found = []
    for name in os.listdir(wal):
        stem = name.removesuffix(".wal")
        if stem != name and stem.isdigit():
            found.append((int(stem), name, os.stat(os.path.join(wal, name)).st_size))
    return sorted(found)


def _superblock_problems(directory: OsDirectory, first_ops: tuple[int, ...]) -> list[str]:
    """What the superblock says is wrong with the segment set (the same pure
    rule open applies before it reads a record), or that it cannot be read."""
    try:
        block = read_superblock(directory)
    except ReplicaError as exc:
        return [f"the superblock does not read: {exc}"]
    if block is None:
        if first_ops or os.path.isdir(directory.path_of(SNAPSHOT_DIR)):
            return [f"no superblock ({directory.path_of(SUPERBLOCK_NAME)}): open refuses"]
        return []
    misfit = classify_segment_set(first_ops, evidence_of(block))
    return [] if misfit is None else [misfit[1]]


def directory_status(directory: OsDirectory, *, advisory: bool = False) -> DirectoryStatus:
    """Summarize ``directory`` (blocking; reads the superblock, the snapshots and
    the last segment only). ``problems`` lists what is not clean."""
    segments = _segments(directory)
    problems = _superblock_problems(directory, tuple(first for first, _, _ in segments))
    last_op: int | None = None
    problem: str | None = None
    later: list[int] = []
    if segments:
        # A last segment with no valid record yet ends where the previous one did.
        last_op = segments[-1][0] - 1
        for record in iter_records(directory, from_op=segments[-1][0]):
            if record.status != "ok":
                problem = f"op {record.op} at offset {record.offset}: {record.status}"
                later = _later_ops(directory, segments[-1][1], record.offset, record.op)
                break
            last_op = record.op
        if last_op < segments[0][0]:
            last_op = None  # an empty journal
    snapshots = verify_snapshots(directory)
    valid = [s for s in snapshots if s.valid]
    newest = max(valid, key=lambda s: s.op, default=None)
    if problem is not None and later:
        problems.append(
            f"a bad record in the middle of the last segment ({problem}), with "
            f"{len(later)} valid record header(s) after it, up to op {max(later)}: "
            "damage inside the journal, not a torn tail; opening refuses it "
            "(`trio-replica verify` gives the verdict, docs/operations.md what to do)"
        )
    elif problem is not None:
        problems.append(
            f"the last segment ends in a bad record ({problem}): a torn tail opening "
            "cuts, or damage it refuses"
        )
    problems.extend(f"invalid snapshot {s.path}: {s.reason}" for s in snapshots if not s.valid)
    checkpoint = _cluster_checkpoint(directory)
    if checkpoint is not None:
        problems.extend(checkpoint.problems)
    return DirectoryStatus(
        directory=directory.path,
        segments=len(segments),
        segment_bytes=sum(size for _, _, size in segments),
        first_op=segments[0][0] if last_op is not None else None,
        last_op=last_op,
        last_segment_problem=problem,
        snapshots=len(snapshots),
        invalid_snapshots=len(snapshots) - len(valid),
        newest_snapshot_op=newest.op if newest is not None else None,
        machine_name=newest.machine_name if newest is not None else None,
        machine_version=newest.machine_version if newest is not None else None,
        problems=tuple(problems),
        advisory=advisory,
        records_after_problem=len(later),
        last_op_after_problem=max(later, default=None),
        checkpoint_op=checkpoint.op if checkpoint is not None else None,
    )


def _cluster_checkpoint(directory: OsDirectory) -> CheckpointFit | None:
    """A cluster directory's checkpoint, judged as a restart judges it
    (:func:`~.cluster_dir.checkpoint_fit`: one snapshot and two records
    read); None for a single replica's directory or an unreadable superblock
    (reported already)."""
    try:
        block = read_superblock(directory)
    except (ReplicaError, OSError):
        return None
    if block is None or not is_cluster_directory(directory, block):
        return None
    return checkpoint_fit(directory, read_cluster_state(directory, block))


def _later_ops(directory: OsDirectory, name: str, offset: int, op: int) -> list[int]:
    """The ops of the valid record headers after the bad record of op ``op``
    at ``offset`` in segment ``name``: what tells damage in the middle from a
    torn tail (after a torn tail, nothing valid follows)."""
    storage = open_wal_dir(directory).open(name)
    try:
        return [hit.op for hit in probe_headers(storage, offset + 8, storage.size()) if hit.op > op]
    finally:
        storage.close()


def _print_text(status: DirectoryStatus) -> None:
    out = sys.stdout
    print(f"data directory {status.directory}", file=out)
    ops = f"ops {status.first_op}..{status.last_op}" if status.last_op is not None else "no ops"
    if status.records_after_problem:
        ops += (
            f", then a bad record, then {status.records_after_problem} more up to op "
            f"{status.last_op_after_problem}"
        )
    print(
        f"journal ({WAL_DIR}/): {status.segments} segment(s), "
        f"{status.segment_bytes:,} bytes, {ops}",
        file=out,
    )
    if status.newest_snapshot_op is None:
        newest = "no valid snapshot"
    else:
        newest = (
            f"newest valid at op {status.newest_snapshot_op} "
            f"(machine {status.machine_name} v{status.machine_version})"
        )
    invalid = f", {status.invalid_snapshots} invalid" if status.invalid_snapshots else ""
    print(f"snapshots ({SNAPSHOT_DIR}/): {status.snapshots}{invalid}; {newest}", file=out)
    if status.checkpoint_op is not None:
        named = (
            f"op {status.checkpoint_op}, what a restart loads"
            if status.checkpoint_op
            else "none yet"
        )
        print(f"cluster checkpoint (named by the view state): {named}", file=out)
    for problem in status.problems:
        print(f"problem: {problem}", file=out)
    if status.ops_to_replay is None:
        print("not clean: run `trio-replica verify` for the verdict on opening it", file=out)
    else:
        print(f"opening it would replay {status.ops_to_replay} op(s)", file=out)


def _is_address(target: str) -> bool:
    if os.path.exists(target):
        return False
    try:
        parse_address(target)
    except AddressError:
        return False
    return True


async def cluster_status(
    addresses: list[str], *, wait_seconds: float = 2.0, tls: TlsFiles | None = None
) -> dict[str, Any]:
    """Each replica's status (or the error reaching it) and whether they agree
    (over mutual TLS with ``tls``: replicas with TLS answer members only).

    Raises :class:`~trio_replica.cluster.tls.TlsConfigError` when the TLS
    files cannot be used. Returns ``{"replicas": [...], "agree": bool, "reason": str | None}``;
    each replica entry has ``address`` and either the replica's status
    fields or ``error``.
    """
    found: list[dict[str, Any]] = [{"address": a} for a in addresses]

    async def ask(entry: dict[str, Any]) -> None:
        try:
            entry.update(await query_status(entry["address"], wait_seconds=wait_seconds, tls=tls))
        except (OSError, trio.TooSlowError, FrameError) as error:
            entry["error"] = str(error) or type(error).__name__
            if isinstance(error, trio.TooSlowError):
                entry["error"] = f"no answer within {wait_seconds} s"

    async with trio.open_nursery() as nursery:
        for entry in found:
            nursery.start_soon(ask, entry)
    return {"replicas": found, **_agreement(found), "lagging": _lagging(found)}


def _agreement(found: list[dict[str, Any]]) -> dict[str, Any]:
    def verdict(reason: str | None) -> dict[str, Any]:
        return {"agree": reason is None, "reason": reason}

    down = [e["address"] for e in found if "error" in e]
    if down:
        return verdict(f"no status from {', '.join(down)}")
    if len({e.get("cluster_id") for e in found}) != 1:
        return verdict("the replicas belong to different clusters")
    if any(e.get("status") != "normal" for e in found):
        return verdict("a replica is not in normal status (a view change or recovery)")
    views = {e.get("view") for e in found}
    if len(views) != 1:
        return verdict(f"the replicas are in different views {sorted(map(str, views))}")
    count = found[0].get("replica_count") or len(found)
    view = next(iter(views))
    primaries = [e.get("replica") for e in found if e.get("primary")]
    if isinstance(view, int) and primaries != [view % count] and len(found) == count:
        return verdict(f"view {view} should have primary {view % count}, found {primaries}")
    return verdict(None)


LAG_OPS = 100
"""A replica whose applied op is more than this behind the furthest one is
reported as catching up (a few ops apart is only a busy cluster)."""


def _lagging(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The replicas far behind the one that applied the most: ``{"address",
    "replica", "applied", "behind"}`` each. Agreement is about views and the
    primary; this is the separate fact "not caught up yet"."""
    applied = [e for e in found if isinstance(e.get("applied"), int)]
    if not applied:
        return []
    most = max(e["applied"] for e in applied)
    return [
        {
            "address": e["address"],
            "replica": e.get("replica"),
            "applied": e["applied"],
            "behind": most - e["applied"],
        }
        for e in applied
        if most - e["applied"] > LAG_OPS
    ]


def _print_cluster(report: dict[str, Any]) -> None:
    for e in report["replicas"]:
        if "error" in e:
            print(f"{e['address']}: unreachable ({e['error']})")
            continue
        role = "primary" if e.get("primary") else "backup"
        print(
            f"{e['address']}: replica {e.get('replica')} view {e.get('view')} "
            f"{e.get('status')} {role}, op {e.get('op')} commit {e.get('commit')} "
            f"applied {e.get('applied')}"
        )
    if report["agree"]:
        print("the replicas agree (one cluster, all normal in one view, its primary leads)")
    else:
        print(f"the replicas do not agree: {report['reason']}")
    for e in report.get("lagging", []):
        print(
            f"replica {e['replica']} at {e['address']} is catching up: applied {e['applied']}, "
            f"{e['behind']} ops behind the furthest replica"
        )


def _run_cluster(args: argparse.Namespace, addresses: list[str]) -> int:
    tls = client_tls(args)
    try:
        report = trio.run(partial(cluster_status, addresses, tls=tls))
    except TlsConfigError as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        _print_cluster(report)
    if all("error" in e for e in report["replicas"]):
        return ExitStatus.UNAVAILABLE
    return ExitStatus.OK if report["agree"] else ExitStatus.PROBLEM


def run(args: argparse.Namespace) -> int:
    """Print the status of a data directory (0 when it looks clean, 1 when it
    found a problem), or of cluster replicas at ``host:port`` addresses (see
    the module docstring)."""
    targets: list[str] = args.dir
    if all(_is_address(t) for t in targets):
        return _run_cluster(args, targets)
    if len(targets) != 1:
        raise UsageError("status takes one data directory, or host:port addresses of replicas")
    directory = open_data_dir(targets[0], read_only=True)
    note = running_note(directory)
    if note is not None:
        print(note, file=sys.stderr)
    status = directory_status(directory, advisory=note is not None)
    if args.json:
        print(json.dumps(status.as_json(), separators=(",", ":")))
    else:
        _print_text(status)
    return ExitStatus.PROBLEM if status.problems else ExitStatus.OK


def add_parser(commands: Any) -> None:
    """Add the ``status`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "status",
        help="summarize a data directory (read-only), or ask running cluster replicas",
        description="Summarize a data directory cheaply: segments and bytes, the op "
        "range, the snapshots (the newest valid one and its state machine) and how "
        "many ops opening it would replay. Reads the snapshots and the last journal "
        "segment only; `verify` checks everything. Never writes, takes no lock. "
        "Exit 1 when it sees anything not clean (a superblock that does not read or "
        "does not fit the segments, a bad record at the end, an invalid snapshot); "
        "then it predicts nothing and `verify` gives the verdict. Given host:port "
        "addresses of cluster replicas instead, asks each for its view, status, primary, "
        "op, commit and applied op and says whether they agree (exit 1 when not, 3 "
        "when none answers).",
    )
    parser.add_argument(
        "dir",
        metavar="DIR|ADDR",
        nargs="+",
        help="a data directory, or the host:port of one or more cluster replicas",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_client_tls_arguments(parser)
    parser.set_defaults(run=run)
