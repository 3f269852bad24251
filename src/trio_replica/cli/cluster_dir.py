"""What ``inspect`` and ``verify`` read in a cluster replica's data directory.

A cluster replica's directory (``trio-replica format``) holds, besides a
journal and snapshots: ``cluster.json`` (its membership), its identity in
the superblock (cluster id, replica index, cluster size), the durable view
state in the superblock (``view``, ``log_view``, ``commit_max``,
``checkpoint_op`` and the suffix headers it last advertised or installed)
and, in each journal record, the op's 96-byte prepare header before the
command (``docs/format.md``). This module reads them without writing and
judges what can be judged from the directory alone:

* the membership file names the identity the superblock holds;
* ``log_view <= view``; every suffix header verifies, their ops ascend and
  consecutive ones link (each one's ``parent`` is the previous one's
  ``checksum``);
* every journal record holds a prepare for its own op whose body matches
  the header, op 1's parent is the cluster's root, and each op's
  ``parent`` is the checksum of the prepare journaled for op - 1 (the
  header chain: a break means the journal mixes two histories);
* the checkpoint the view state names (:func:`checkpoint_fit`), judged as
  ``open_cluster_replica`` judges it: a valid snapshot of that op holding
  the prepare whose checksum the view state records, the journal's prepare
  at that op (when it still holds it) the same one, and the journal going
  on from it without a gap. A cluster checkpoint is bound to the op's
  prepare, never to the local journal's chain checksum (it is the same
  checkpoint on every replica), so the single replica's snapshot fit
  (:mod:`trio_replica.coordinator.fit`) does not apply to it; a snapshot
  newer than the view state's checkpoint (a crash before the view state
  named it) is not loaded by a restart and is no problem.

What only the cluster can judge (whether the suffix headers or the journal
are the committed history) is not judged here: a replica that crashed in a
view change may hold a stale suffix above its commit, and its restart cuts
it (``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from ..cluster.checkpoint import decode_checkpoint
from ..cluster.header import HEADER_SIZE, ROOT, PrepareHeader, decode_header
from ..coordinator.snapshot_files import SNAPSHOT_SUBDIR, MachineCheck, load_newest
from ..errors import CorruptionError, ReplicaError
from ..journal.record import RECORD_HEADER_SIZE
from ..journal.scan import JournalDamage, RecordInfo, iter_records
from ..journal.superblock import Superblock, read_superblock
from ..storage import Directory
from .errors import UsageError
from .format import MEMBERSHIP_NAME, Membership, read_membership

__all__ = [
    "CheckpointFit",
    "ClusterState",
    "PrepareLink",
    "chain_problems",
    "checkpoint_fit",
    "is_cluster_directory",
    "prepare_links",
    "read_cluster_state",
]

_SLOT_PAD = bytes(RECORD_HEADER_SIZE - HEADER_SIZE)


def is_cluster_directory(directory: Directory, block: Superblock | None) -> bool:
    """Whether ``directory`` is a cluster replica's: a membership file, or a
    cluster identity in its superblock ``block``."""
    if directory.exists(MEMBERSHIP_NAME):
        return True
    return block is not None and block.cluster_id != bytes(16)


@attrs.frozen
class ClusterState:
    """The cluster facts of a directory (module docstring). ``problems`` is
    empty when every check passed; ``suffix`` holds the suffix headers that
    verified."""

    membership: Membership | None
    cluster_id: int
    replica: int
    replica_count: int
    view: int
    log_view: int
    commit_max: int
    checkpoint_op: int
    suffix: tuple[PrepareHeader, ...]
    problems: tuple[str, ...]
    checkpoint_checksum: bytes = bytes(16)
    """The prepare checksum of ``checkpoint_op`` the view state records."""

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict of every field (suffix headers summarized)."""
        return {
            "cluster_id": self.cluster_id,
            "replica": self.replica,
            "replica_count": self.replica_count,
            "addresses": list(self.membership.addresses) if self.membership else None,
            "clients_max": self.membership.clients_max if self.membership else None,
            "view": self.view,
            "log_view": self.log_view,
            "commit_max": self.commit_max,
            "checkpoint_op": self.checkpoint_op,
            "checkpoint_checksum": self.checkpoint_checksum.hex(),
            "suffix": [header_json(h) for h in self.suffix],
            "problems": list(self.problems),
        }


def header_json(header: PrepareHeader) -> dict[str, object]:
    """A prepare header as a JSON-ready dict (checksums in hex)."""
    return {
        "op": header.op,
        "checksum": header.checksum.hex(),
        "parent": header.parent.hex(),
        "view": header.view,
        "client": header.client,
        "request": header.request,
        "operation": header.operation.name.lower(),
        "body_len": header.body_len,
    }


def read_cluster_state(directory: Directory, block: Superblock | None = None) -> ClusterState:
    """Read and check the membership, identity and view state (sync).

    ``block``: the superblock when the caller read it already. Raises
    :class:`~trio_replica.errors.ReplicaError` when the superblock cannot be
    read (callers report that as they report any superblock failure).
    """
    if block is None:
        block = read_superblock(directory)
    problems: list[str] = []
    membership = None
    try:
        membership = read_membership(directory.path)
    except UsageError as error:
        problems.append(f"membership: {error}")
    if block is None:
        return ClusterState(membership, 0, 0, 0, 0, 0, 0, 0, (), (*problems, "no superblock"))
    cluster_id = int.from_bytes(block.cluster_id, "little")
    where = directory.path_of("superblock")
    if membership is not None:
        mine = (membership.cluster_id, membership.replica, len(membership.addresses))
        if mine != (cluster_id, block.replica, block.replica_count):
            problems.append(
                f"membership: {MEMBERSHIP_NAME} names replica {mine[1]} of {mine[2]} in "
                f"cluster {mine[0]}, the superblock ({where}) replica {block.replica} of "
                f"{block.replica_count} in cluster {cluster_id}; serve refuses to open it"
            )
    if block.log_view > block.view:
        problems.append(
            f"view state: log_view {block.log_view} is above view {block.view} ({where})"
        )
    suffix: list[PrepareHeader] = []
    for index, slot in enumerate(block.suffix_headers):
        header = decode_header(slot[:HEADER_SIZE])
        if header is None or slot[HEADER_SIZE:] != _SLOT_PAD:
            problems.append(
                f"view state: suffix header {index} does not verify ({where}); the replica "
                "refuses to open"
            )
            continue
        if suffix and header.op <= suffix[-1].op:
            problems.append(
                f"view state: suffix header {index} (op {header.op}) is not above the one "
                f"before it (op {suffix[-1].op}) ({where})"
            )
        elif suffix and header.op == suffix[-1].op + 1 and header.parent != suffix[-1].checksum:
            problems.append(
                f"view state: suffix header of op {header.op} does not link to op "
                f"{suffix[-1].op} (its parent is not that checksum) ({where})"
            )
        suffix.append(header)
    return ClusterState(
        membership,
        cluster_id,
        block.replica,
        block.replica_count,
        block.view,
        block.log_view,
        block.commit_max,
        block.checkpoint_op,
        tuple(suffix),
        tuple(problems),
        block.checkpoint_checksum if block.checkpoint_op else bytes(16),
    )


@attrs.frozen
class PrepareLink:
    """One journal record read as a prepare: ``header`` (None when the body
    holds no valid prepare for the op: ``problem`` says why), the command
    bytes, and ``links``: True when the parent is the previous op's
    checksum (or the root for op 1), False when it is not, None when the
    previous op was not read (first record shown, or after a bad one)."""

    record: RecordInfo
    header: PrepareHeader | None
    command: bytes | None
    links: bool | None
    problem: str | None


def prepare_links(
    directory: Directory,
    *,
    from_op: int | None = None,
    to_op: int | None = None,
    resume: JournalDamage | None = None,
) -> Iterator[PrepareLink]:
    """Every record of the journal in ``[from_op, to_op]`` as a prepare, with
    its link to the op before it (streaming, read-only). The op before
    ``from_op`` is read too (not yielded), so the first one shown is judged."""
    start = from_op - 1 if from_op is not None and from_op > 1 else from_op
    previous: PrepareHeader | None = None
    for record in iter_records(directory, from_op=start, to_op=to_op, resume=resume):
        link = _link(record, previous)
        previous = link.header
        if from_op is not None and record.op < from_op:
            continue
        yield link


def _link(record: RecordInfo, previous: PrepareHeader | None) -> PrepareLink:
    if record.status != "ok" or record.body is None:
        return PrepareLink(record, None, None, None, None)  # the scan reports the record
    data = record.body
    header = decode_header(data[:HEADER_SIZE])
    command = data[HEADER_SIZE:]
    if header is None or header.op != record.op or not header.valid_body(command):
        problem: str | None = (
            f"journal: op {record.op} does not hold a valid prepare (file {record.path}, "
            f"offset {record.offset})"
        )
        return PrepareLink(record, None, None, None, problem)
    links: bool | None = None
    if record.op == 1:
        links = header.parent == ROOT.checksum
    elif previous is not None and previous.op == record.op - 1:
        links = header.parent == previous.checksum
    problem = None
    if links is False:
        before = "the cluster's root" if record.op == 1 else f"op {record.op - 1}'s prepare"
        problem = (
            f"journal: the prepare of op {record.op} does not link to {before} (its parent "
            f"is not that checksum; file {record.path}, offset {record.offset}): the header "
            "chain is broken"
        )
    return PrepareLink(record, header, command, links, problem)


def chain_problems(directory: Directory, *, resume: JournalDamage | None = None) -> list[str]:
    """Every prepare and header chain problem of the whole journal (sync)."""
    try:
        return [
            link.problem
            for link in prepare_links(directory, resume=resume)
            if link.problem is not None
        ]
    except (ReplicaError, CorruptionError) as error:
        return [f"journal: {error}"]


@attrs.frozen
class CheckpointFit:
    """The judgment of a cluster directory's checkpoint (:func:`checkpoint_fit`).

    ``op`` and ``checksum``: the checkpoint the view state names (op 0: none
    yet). ``problems``: one line each for what makes ``open_cluster_replica``
    refuse the directory (empty: it restarts from that checkpoint).
    """

    op: int
    checksum: bytes
    problems: tuple[str, ...]

    def describe(self) -> str:
        """One phrase for a summary line."""
        if self.op == 0:
            return "no checkpoint yet"
        state = "matches its snapshot and the journal" if not self.problems else "DOES NOT FIT"
        return f"checkpoint op {self.op} (prepare {self.checksum.hex()[:16]}) {state}"


def checkpoint_fit(directory: Directory, state: ClusterState) -> CheckpointFit:
    """Judge the checkpoint ``state``'s view state names, as a restart does (sync).

    The rules are those of ``open_cluster_replica`` (``load_checkpoint`` and
    ``Consensus.start``): a valid snapshot file of ``checkpoint_op`` exists
    (else ``CheckpointMissingError``); it holds a cluster checkpoint whose
    prepare is of that op with the checksum the view state records (else
    ``CheckpointMismatchError``); the journal's prepare at that op, when the
    journal still holds it, is that same prepare; and the journal goes on
    from the checkpoint without a gap (its first op is at most
    ``checkpoint_op + 1``; a journal restarted after an installed
    checkpoint starts at ``checkpoint_op + 1`` with a prepare whose parent
    is the checkpoint's). Never the journal's chain checksum: a cluster
    checkpoint is bound to its prepare (``docs/format.md``).
    """
    op, expected = state.checkpoint_op, state.checkpoint_checksum
    problems: list[str] = []
    first = _first_journaled(directory)
    if op == 0:
        if first is not None and first.op > 1:
            problems.append(
                f"checkpoint: the view state names no checkpoint, but the journal starts at "
                f"op {first.op} (file {first.path}): ops 1..{first.op - 1} are in neither; "
                "the replica refuses to open"
            )
        return CheckpointFit(0, expected, tuple(problems))
    refuses = "the replica refuses to open"
    header = None
    snapshots = directory.subdir(SNAPSHOT_SUBDIR) if directory.is_dir(SNAPSHOT_SUBDIR) else None
    if snapshots is None:
        problems.append(
            f"checkpoint: the view state names checkpoint op {op}, but there is no "
            f"{directory.path_of(SNAPSHOT_SUBDIR)} directory; {refuses}"
        )
    else:
        info, value, failed = load_newest(snapshots, [op], machine=MachineCheck(None, None))
        if info is None:
            why = f": {failed[0].reason} (file {failed[0].path})" if failed else ""
            problems.append(
                f"checkpoint: the view state names checkpoint op {op}, but no valid snapshot "
                f"of that op is there{why}; {refuses}"
            )
        else:
            try:
                header = decode_checkpoint(value, path=info.path).header
            except CorruptionError as error:
                problems.append(f"checkpoint: {error}; {refuses}")
            else:
                if header.op != op or header.checksum != expected:
                    problems.append(
                        f"checkpoint: the snapshot of checkpoint op {op} (file {info.path}) "
                        f"holds prepare {header.checksum.hex()} of op {header.op}, the view "
                        f"state names prepare {expected.hex()}; {refuses}"
                    )
                    header = None
    if first is not None and first.op > op + 1:
        problems.append(
            f"checkpoint: the journal starts at op {first.op} (file {first.path}): ops "
            f"{op + 1}..{first.op - 1} after checkpoint op {op} are missing; {refuses}"
        )
    elif first is not None and header is not None:
        link = next(prepare_links(directory, from_op=max(op, first.op), to_op=op + 1), None)
        at = link.record if link is not None else None
        if link is not None and link.header is not None and at is not None:
            if at.op == op and link.header != header:
                problems.append(
                    f"checkpoint: the journal holds another prepare at checkpoint op {op} "
                    f"(file {at.path}, offset {at.offset}) than its snapshot; {refuses}"
                )
            elif at.op == op + 1 and link.header.parent != header.checksum:
                problems.append(
                    f"checkpoint: the journal's first prepare, op {at.op} (file {at.path}, "
                    f"offset {at.offset}), does not link to checkpoint op {op}'s prepare"
                )
    return CheckpointFit(op, expected, tuple(problems))


def _first_journaled(directory: Directory) -> RecordInfo | None:
    """The journal's first record (None: no journal, or no record)."""
    try:
        return next(iter_records(directory), None)
    except (ReplicaError, OSError):
        return None  # the journal checks report an unreadable journal
