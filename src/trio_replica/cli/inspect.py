"""``trio-replica inspect DIR``: list segments, snapshots and records, decoded.

Records stream from :func:`~trio_replica.journal.scan.iter_records` one at a
time and are printed as they come, so memory stays constant however large
the journal is. Each record shows its op, body size, checksum status and
its body decoded from CBOR (compactly; ``--json`` gives the whole value).
A record or snapshot that fails its checks is listed with the reason, and
the exit status is then 1, as for ``verify``: whatever tool finds damage
says so in its status. Like ``verify``, it never writes.

In a cluster replica's directory (``trio-replica format``) it also shows
the membership, the identity and the durable view state (view, log_view,
commit_max, checkpoint op, suffix headers), and lists each record as a
prepare: its operation, client, request number, view, checksum and whether
its ``parent`` links to the op before (``chain``), then the command. A
prepare that does not verify or does not link counts as bad (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Any, TextIO

import attrs

from ..coordinator.store import verify_snapshots
from ..errors import ReplicaError
from ..journal.scan import RecordInfo, iter_records
from ..journal.superblock import read_superblock
from ..layout import SUPERBLOCK_NAME
from ..storage import OsDirectory
from .cluster_dir import (
    ClusterState,
    checkpoint_fit,
    header_json,
    is_cluster_directory,
    prepare_links,
    read_cluster_state,
)
from .datadir import SNAPSHOT_DIR, WAL_DIR, open_data_dir, running_note
from .errors import ExitStatus, UsageError
from .render import DecodedBody, compact_text, decode_body, to_json_value

__all__ = ["add_parser", "run"]

_CHECKSUM_SHOWN = 16  # hex digits of the checksum shown in text mode


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _emit_json(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(_JSON.encode(obj) + "\n")


def _segment_files(directory: OsDirectory) -> list[tuple[str, int]]:
    """``(name, size)`` of every file in ``wal/``, by name (so by first op)."""
    wal = directory.path_of(WAL_DIR)
    if not os.path.isdir(wal):
        return []
    return [(name, os.stat(os.path.join(wal, name)).st_size) for name in sorted(os.listdir(wal))]


def _first_op(name: str) -> int | None:
    stem = name.removesuffix(".wal")
    return int(stem) if stem != name and stem.isdigit() else None


def _list_superblock(directory: OsDirectory, out: TextIO, *, as_json: bool) -> int:
    """Show the superblock (identity and journal-end evidence); 1 when it is unreadable."""
    path = directory.path_of(SUPERBLOCK_NAME)
    problem: str | None = None
    try:
        block = read_superblock(directory)
    except (ReplicaError, OSError) as exc:
        block, problem = None, str(exc)
    if as_json:
        fields: dict[str, Any] = {"kind": "superblock", "file": path, "valid": problem is None}
        if block is not None:
            fields |= {
                "directory_id": block.directory_id.hex(),
                "sequence": block.sequence,
                "wal_first_op": block.wal_first_op,
                "wal_head_op": block.wal_head_op,
            }
        fields["reason"] = problem
        _emit_json(out, fields)
    elif problem is not None:
        print(f"superblock: INVALID: {problem}", file=out)
    elif block is None:
        print("superblock: none (a data directory never opened)", file=out)
    else:
        print(
            f"superblock: directory {block.directory_id.hex()}, journal from op "
            f"{block.wal_first_op or 1}, newest segment created at op {block.wal_head_op} "
            f"(write {block.sequence})",
            file=out,
        )
    return 0 if problem is None else 1


def _list_files(directory: OsDirectory, out: TextIO, *, as_json: bool) -> int:
    """List the superblock, segments and snapshots; return how many of them are invalid."""
    segments = _segment_files(directory)
    snapshots = verify_snapshots(directory)
    if not as_json:
        print(f"data directory {directory.path}", file=out)
    bad_superblock = _list_superblock(directory, out, as_json=as_json)
    if not as_json:
        count = sum(1 for name, _ in segments if _first_op(name) is not None)
        others = len(segments) - count
        print(
            f"segments ({WAL_DIR}/): {count}" + (f", other files: {others}" if others else ""),
            file=out,
        )
    for name, size in segments:
        first = _first_op(name)
        if as_json:
            _emit_json(
                out,
                {
                    "kind": "segment",
                    "file": os.path.join(directory.path, WAL_DIR, name),
                    "first_op": first,
                    "size": size,
                },
            )
        else:
            if first is not None:
                what = f"first op {first}"
            elif name.endswith(".broken"):
                what = "a copy kept by repair, not read"
            else:
                what = "not a segment, not read"
            print(f"  {name}  {what}, {size} bytes", file=out)
    if not as_json:
        print(f"snapshots ({SNAPSHOT_DIR}/): {len(snapshots)}", file=out)
    for info in snapshots:
        if as_json:
            _emit_json(
                out,
                {
                    "kind": "snapshot",
                    "file": info.path,
                    "op": info.op,
                    "size": info.size,
                    "machine_name": info.machine_name,
                    "machine_version": info.machine_version,
                    "valid": info.valid,
                    "reason": info.reason,
                },
            )
        else:
            state = "valid" if info.valid else f"INVALID: {info.reason}"
            name = os.path.basename(info.path)
            machine = (
                f"machine {info.machine_name} v{info.machine_version}, "
                if info.machine_name is not None
                else ""
            )
            print(f"  {name}  op {info.op}, {info.size} bytes, {machine}{state}", file=out)
    return bad_superblock + sum(not info.valid for info in snapshots)


def _record_json(record: RecordInfo) -> dict[str, Any]:
    """The fields of a journal record's ``--json`` line shared by both listings."""
    return {
        "kind": "record",
        "file": record.path,
        "offset": record.offset,
        "op": record.op,
        "batch_first": record.batch_first,
        "size": record.body_size,
        "checksum": record.checksum,
        "status": record.status,
    }


def _add_command_json(line: dict[str, Any], decoded: DecodedBody) -> None:
    """Put a decoded command (or why it does not decode) into ``line``."""
    if decoded.error is None:
        line["command"] = to_json_value(decoded.value)
    else:
        line["body_error"] = decoded.error


def _list_records(
    directory: OsDirectory,
    out: TextIO,
    *,
    as_json: bool,
    from_op: int | None,
    to_op: int | None,
    whole: bool = False,
) -> tuple[int, int]:
    """Print the records in range; return ``(records listed, records not ok)``."""
    listed = bad = 0
    if not as_json:
        print("records:", file=out)
        print(f"  {'op':>10} {'size':>7}  {'checksum':<{_CHECKSUM_SHOWN}}  status  body", file=out)
    if not directory.is_dir(WAL_DIR):
        return listed, bad
    # Past a bad record too: whoever looks at damage wants to see what follows it.
    for record in iter_records(directory, from_op=from_op, to_op=to_op, past_damage=True):
        listed += 1
        ok = record.status == "ok"
        bad += not ok
        decoded = decode_body(record.body) if ok and record.body is not None else None
        if as_json:
            line = _record_json(record)
            if decoded is not None:
                _add_command_json(line, decoded)
            _emit_json(out, line)
            continue
        if decoded is None:
            body = f"(at offset {record.offset} of {record.path})"
        elif decoded.error is not None:
            body = f"<{decoded.error}>"
        else:
            body = compact_text(decoded.value)
        status = "ok" if ok else f"BAD: {record.status}"
        checksum = record.checksum[:_CHECKSUM_SHOWN] or "-"  # "-": header unreadable
        if whole and decoded is not None and decoded.error is None:
            # One op asked for by number: its whole command, indented JSON.
            body = "command:\n" + textwrap.indent(
                json.dumps(to_json_value(decoded.value), indent=2, ensure_ascii=False), " " * 4
            )
        print(
            f"  {record.op:>10} {record.body_size:>7}  {checksum:<{_CHECKSUM_SHOWN}}  "
            f"{status:<6}  {body}",
            file=out,
        )
    return listed, bad


def run(args: argparse.Namespace) -> int:
    """List ``args.dir``; 0 when every listed record and snapshot is ok, 1 otherwise."""
    if args.op is not None:
        if args.from_op is not None or args.to_op is not None:
            raise UsageError("--op shows one op; it cannot be combined with --from or --to")
        args.from_op = args.to_op = args.op
    if args.from_op is not None and args.to_op is not None and args.from_op > args.to_op:
        raise UsageError(f"--from {args.from_op} is after --to {args.to_op}")
    directory = open_data_dir(args.dir, read_only=True)
    out = sys.stdout
    note = running_note(directory)
    if note is not None:
        print(note, file=sys.stderr)
    invalid_snapshots = _list_files(directory, out, as_json=args.json)
    cluster = _cluster_state(directory)
    cluster_bad = len(cluster.problems) if cluster is not None else 0
    if cluster is not None:
        _show_cluster(cluster, out, as_json=args.json)
        listed, bad = _list_prepares(
            directory,
            out,
            as_json=args.json,
            from_op=args.from_op,
            to_op=args.to_op,
            whole=args.op is not None,
        )
    else:
        listed, bad = _list_records(
            directory,
            out,
            as_json=args.json,
            from_op=args.from_op,
            to_op=args.to_op,
            whole=args.op is not None,
        )
    if not args.json:
        print(f"{listed} records listed, {bad} bad", file=out)
    if bad or invalid_snapshots or cluster_bad:
        out.flush()
        failed = [
            f"{count} {noun}{'s' if count != 1 else ''}"
            for count, noun in (
                (bad, "record"),
                (invalid_snapshots, "snapshot or superblock file"),
                (cluster_bad, "membership, view state or checkpoint check"),
            )
            if count
        ]
        print(
            f"trio-replica: {' and '.join(failed)} failed verification; "
            f"run `trio-replica verify {args.dir}` for the details",
            file=sys.stderr,
        )
        return ExitStatus.PROBLEM
    return ExitStatus.OK


def _cluster_state(directory: OsDirectory) -> ClusterState | None:
    """The cluster facts of ``directory``, None for a single replica's (or
    when the superblock cannot be read: the listing above said so)."""
    try:
        block = read_superblock(directory)
    except (ReplicaError, OSError):
        return None
    if not is_cluster_directory(directory, block):
        return None
    state = read_cluster_state(directory, block)
    # The checkpoint the view state names, judged as a restart judges it
    # (its snapshot holds that prepare; the journal goes on from it).
    fit = checkpoint_fit(directory, state)
    return attrs.evolve(state, problems=state.problems + fit.problems)


def _show_cluster(state: ClusterState, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        _emit_json(out, {"kind": "cluster", **state.as_json()})
        return
    membership = state.membership
    where = (
        f", addresses {', '.join(membership.addresses)}, up to {membership.clients_max} "
        "client sessions"
        if membership is not None
        else ""
    )
    print(
        f"cluster: replica {state.replica} of {state.replica_count} in cluster "
        f"{state.cluster_id}{where}",
        file=out,
    )
    checkpoint = (
        f", checkpoint op {state.checkpoint_op} (prepare {state.checkpoint_checksum.hex()})"
        if state.checkpoint_op
        else ""
    )
    ops = f" (ops {state.suffix[0].op}..{state.suffix[-1].op})" if state.suffix else ""
    print(
        f"view state: view {state.view}, log_view {state.log_view}, commit_max "
        f"{state.commit_max}{checkpoint}, {len(state.suffix)} suffix headers{ops}",
        file=out,
    )
    for problem in state.problems:
        print(f"  BAD: {problem}", file=out)


_CHAIN = {True: "linked", False: "BROKEN", None: "-"}


def _list_prepares(
    directory: OsDirectory,
    out: TextIO,
    *,
    as_json: bool,
    from_op: int | None,
    to_op: int | None,
    whole: bool = False,
) -> tuple[int, int]:
    """Print a cluster replica's records as prepares; ``(listed, not ok)``."""
    listed = bad = 0
    if not as_json:
        print("records (prepares):", file=out)
        print(
            f"  {'op':>10} {'size':>7}  {'checksum':<{_CHECKSUM_SHOWN}}  status  "
            f"{'operation':<9} {'client':>20} {'request':>7} {'view':>5}  chain   command",
            file=out,
        )
    if not directory.is_dir(WAL_DIR):
        return listed, bad
    for link in prepare_links(directory, from_op=from_op, to_op=to_op):
        record = link.record
        listed += 1
        ok = record.status == "ok" and link.problem is None
        bad += not ok
        decoded = decode_body(link.command) if link.command is not None else None
        if as_json:
            line = _record_json(record)
            line["prepare"] = None if link.header is None else header_json(link.header)
            line["chain"] = link.links
            line["problem"] = link.problem
            if decoded is not None and link.header is not None and link.header.body_len:
                _add_command_json(line, decoded)
            _emit_json(out, line)
            continue
        status = "ok" if record.status == "ok" else f"BAD: {record.status}"
        checksum = record.checksum[:_CHECKSUM_SHOWN] or "-"
        if link.header is None:
            detail = link.problem or f"(at offset {record.offset} of {record.path})"
            print(
                f"  {record.op:>10} {record.body_size:>7}  {checksum:<{_CHECKSUM_SHOWN}}  "
                f"{status:<6}  {detail}",
                file=out,
            )
            continue
        h = link.header
        if not h.body_len:
            command = ""
        elif decoded is None or decoded.error is not None:
            command = f"<{decoded.error if decoded is not None else 'none'}>"
        elif whole:
            command = "\n" + textwrap.indent(
                json.dumps(to_json_value(decoded.value), indent=2, ensure_ascii=False), " " * 4
            )
        else:
            command = compact_text(decoded.value)
        shown = h.checksum.hex()[:_CHECKSUM_SHOWN]
        print(
            f"  {record.op:>10} {record.body_size:>7}  {shown:<{_CHECKSUM_SHOWN}}  {status:<6}  "
            f"{h.operation.name.lower():<9} {h.client:>20} {h.request:>7} {h.view:>5}  "
            f"{_CHAIN[link.links]:<6}  {command}".rstrip(),
            file=out,
        )
        if link.problem is not None:
            print(f"  BAD: {link.problem}", file=out)
    return listed, bad


def _op(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an op number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"ops start at 1, got {value}")
    return value


_JSON_HELP = """\
with --json, one JSON object per line, each with a "kind":
  {"kind": "segment", "file", "first_op", "size"}
  {"kind": "snapshot", "file", "op", "size", "machine_name", "machine_version",
   "valid", "reason"}
  {"kind": "record", "file", "offset", "op", "batch_first", "size", "checksum",
   "status", "command" (the body decoded from CBOR) or "body_error"}
in a cluster replica's directory also
  {"kind": "cluster", "cluster_id", "replica", "replica_count", "addresses",
   "clients_max", "view", "log_view", "commit_max", "checkpoint_op",
   "suffix" (headers), "problems"}
and each record has "prepare" (op, checksum, parent, view, client, request,
operation, body_len), "chain" (true, false, or null when not judged) and
"problem", its "command" decoded from the prepare's body.
CBOR values that JSON cannot hold are tagged objects: byte strings are
{"$bytes": "<hex>"}, CBOR tags {"$tag": N, "value": V}, non-finite floats
{"$float": "nan"}, anything else {"$repr": "..."}.
"""


def add_parser(commands: Any) -> None:
    """Add the ``inspect`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "inspect",
        help="list segments, snapshots and records with decoded commands (read-only)",
        # The epilog's layout must survive, so the description is wrapped here.
        description=textwrap.fill(
            "List the journal segments, the snapshots and the records (op, body size, "
            "checksum and its status, body decoded from CBOR) of a data directory, "
            "streaming in constant memory. Never writes. Exit 1 when a listed record "
            "or snapshot fails its checks.",
            width=79,
        ),
        epilog=_JSON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="the replica's data directory")
    parser.add_argument("--from", dest="from_op", type=_op, metavar="OP", help="first op to list")
    parser.add_argument("--to", dest="to_op", type=_op, metavar="OP", help="last op to list")
    parser.add_argument(
        "--op",
        type=_op,
        metavar="OP",
        help="show only this op, with its whole command as indented JSON (for example "
        "the op a StateMachineError names)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(run=run)
