"""The recovery decision table: what the scan does with each thing it observes.

The scan (``scan.py``) classifies what it finds at each position of the WAL
into exactly one :class:`Case`; :data:`DECISION_TABLE` maps every case to
exactly one :class:`Action`, and the scan acts on the action only. Keeping
the policy in one table (documented in ``docs/format.md``) makes it
reviewable and testable without a file system.

Why a bad record can be a torn tail at all, and when it cannot:

* ``append()`` writes a whole batch with one write and one fsync, and only
  then acknowledges it. A crash during that write may persist any subset of
  the batch's sectors (disks reorder), so inside the last segment a torn
  record may be followed by surviving records *of the same batch*. Every
  record carries ``batch_first`` (the first op of its batch), so such
  survivors are recognisable: ``batch_first`` is at most the op expected at
  the bad position.
* A record of a *later* batch (``batch_first`` greater than the expected op)
  is only ever written after the earlier batch's fsync returned, so the bad
  record was durable and acknowledged: that is corruption, never truncated.
* Segments are created durably (header written and fsynced, directory
  fsynced) before any record goes in, and a segment is sealed only after its
  last batch was fsynced, so nothing in a sealed segment can be torn.

Known limit: damage to the very last batch *after* it was acknowledged looks
exactly like a torn write of that batch. It is truncated, and reported
loudly (a logged warning and ``Journal.recovery``), never silently.

The table has one column per :class:`Replication`: a cluster replica repairs
from its peers (:data:`REPAIRED_FROM_PEERS`) what a single replica refuses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from .record import GENESIS_PARENT, HeaderStatus, SegmentHeader

__all__ = [
    "COVERED_BY_SNAPSHOT",
    "REPAIRED_FROM_PEERS",
    "DECISION_COLUMNS",
    "DECISION_TABLE",
    "REFUSALS",
    "SnapshotAnchor",
    "Action",
    "Case",
    "JournalEvidence",
    "ProbeHit",
    "Replication",
    "SegmentObservation",
    "classify_probe",
    "classify_segment_header",
    "classify_segment_set",
    "decide",
]


class Case(enum.Enum):
    """Everything the recovery scan can observe, one value per situation."""

    # Segment level.
    SEGMENT_HEADER_VALID = "segment header valid and continues the chain"
    SEGMENT_NAME_INVALID = "a *.wal file whose name is not <20 digits>.wal"
    SEGMENT_FOREIGN_MAGIC = "a segment file whose magic is neither ours nor zeros"
    SEGMENT_UNKNOWN_VERSION = "a valid segment header of an unknown format version"
    SEGMENT_FOREIGN_DIRECTORY = "a valid segment header naming another data directory"
    SEGMENT_NAME_MISMATCH = "the header's first op differs from the file name"
    SEGMENT_OP_GAP = "a segment does not start right after the previous one (missing segment)"
    SEGMENT_CHAIN_BREAK = "a segment header's parent is not the previous segment's last checksum"
    JOURNAL_START_LOST = (
        "the oldest segment starts after where the superblock says the journal starts"
    )
    JOURNAL_END_LOST = (
        "the newest segment is older than the newest one the superblock says was created"
    )
    WAL_MISSING = "the superblock says segments were created, but wal/ is missing"
    LAST_SEGMENT_HEADER_TORN = (
        "the last segment's header is invalid, nothing valid follows, its name continues "
        "the journal and the superblock does not vouch for it"
    )
    SEGMENT_HEADER_INVALID = "an invalid header of a sealed segment, or with valid records after"
    # Record level.
    RECORD_VALID = "a record with valid checksums, the expected op and parent"
    RECORD_UNSUPPORTED = "a record with a valid checksum but fields this version never writes"
    RECORD_OP_GAP = "a record with a valid checksum but an unexpected op"
    RECORD_CHAIN_BREAK = "a record with a valid checksum but the wrong parent"
    BAD_RECORD_IN_SEALED_SEGMENT = "an invalid record (or trailing bytes) in a sealed segment"
    BAD_RECORD_NOTHING_VALID_AFTER = "an invalid record in the last segment, nothing valid after"
    BAD_RECORD_ONLY_SAME_BATCH_AFTER = (
        "an invalid record in the last segment, followed only by records of its own batch"
    )
    BAD_RECORD_LATER_BATCH_AFTER = (
        "an invalid record in the last segment, followed by a record of a later batch"
    )
    BAD_RECORD_STALE_AFTER = (
        "an invalid record in the last segment, followed by a valid record that cannot "
        "belong there (an older op or an older batch)"
    )


class Action(enum.Enum):
    """What recovery does about a :class:`Case`."""

    ACCEPT = "accept"
    """Keep going."""
    TRUNCATE = "truncate"
    """Cut the journal where the case was observed; report it.

    At a record: the segment is cut at the record and every later segment
    is deleted. At a segment header: that segment and every later one are
    deleted. The table truncates only in the last segment (a provable torn
    tail), so nothing later exists there; the general meaning is what a
    table that truncated elsewhere would do, so that weakening a refusal row
    to it has a defined effect (tests/testing/test_refusal_rows.py). For
    the cases about the set of segments or ``wal/`` itself
    (``SEGMENT_NAME_INVALID``, ``JOURNAL_START_LOST``,
    ``JOURNAL_END_LOST``, ``WAL_MISSING``) any action that does not refuse
    means: go on with what is there (a misnamed file is ignored)."""
    REMOVE_SEGMENT = "remove_segment"
    """Delete the last segment file (its creation was torn); report it."""
    RAISE_CORRUPTION = "raise_corruption"
    """Refuse to open: :class:`~trio_replica.errors.CorruptionError`."""
    RAISE_FORMAT = "raise_format"
    """Refuse to open: :class:`~trio_replica.errors.FormatError` (not our format)."""
    RAISE_FOREIGN = "raise_foreign"
    """Refuse to open: :class:`~trio_replica.errors.ForeignDataError` (another directory's file)."""
    REPAIR_FROM_PEERS = "repair_from_peers"
    """Cluster replicas only: keep the damaged files as ``.broken`` evidence,
    cut the journal at the damage, and report every op from there on that
    was once durable here as *lost*: the replica fetches those ops from its
    peers and never counts them as a nack in a view change (protocol-aware
    recovery, ``trio_replica.cluster.salvage``)."""


DECISION_TABLE: Mapping[Case, Action] = MappingProxyType(
    {
        Case.SEGMENT_HEADER_VALID: Action.ACCEPT,
        Case.SEGMENT_NAME_INVALID: Action.RAISE_CORRUPTION,
        Case.SEGMENT_FOREIGN_MAGIC: Action.RAISE_FORMAT,
        Case.SEGMENT_UNKNOWN_VERSION: Action.RAISE_FORMAT,
        Case.SEGMENT_FOREIGN_DIRECTORY: Action.RAISE_FOREIGN,
        Case.SEGMENT_NAME_MISMATCH: Action.RAISE_CORRUPTION,
        Case.SEGMENT_OP_GAP: Action.RAISE_CORRUPTION,
        Case.SEGMENT_CHAIN_BREAK: Action.RAISE_CORRUPTION,
        Case.JOURNAL_START_LOST: Action.RAISE_CORRUPTION,
        Case.JOURNAL_END_LOST: Action.RAISE_CORRUPTION,
        Case.WAL_MISSING: Action.RAISE_CORRUPTION,
        Case.LAST_SEGMENT_HEADER_TORN: Action.REMOVE_SEGMENT,
        Case.SEGMENT_HEADER_INVALID: Action.RAISE_CORRUPTION,
        Case.RECORD_VALID: Action.ACCEPT,
        Case.RECORD_UNSUPPORTED: Action.RAISE_FORMAT,
        Case.RECORD_OP_GAP: Action.RAISE_CORRUPTION,
        Case.RECORD_CHAIN_BREAK: Action.RAISE_CORRUPTION,
        Case.BAD_RECORD_IN_SEALED_SEGMENT: Action.RAISE_CORRUPTION,
        Case.BAD_RECORD_NOTHING_VALID_AFTER: Action.TRUNCATE,
        Case.BAD_RECORD_ONLY_SAME_BATCH_AFTER: Action.TRUNCATE,
        Case.BAD_RECORD_LATER_BATCH_AFTER: Action.RAISE_CORRUPTION,
        Case.BAD_RECORD_STALE_AFTER: Action.RAISE_CORRUPTION,
    }
)
"""Every :class:`Case` mapped to exactly one :class:`Action`."""


REFUSALS: frozenset[Action] = frozenset(
    {Action.RAISE_CORRUPTION, Action.RAISE_FORMAT, Action.RAISE_FOREIGN}
)
"""The actions that refuse to open."""


COVERED_BY_SNAPSHOT: frozenset[Case] = frozenset(
    {
        Case.SEGMENT_HEADER_INVALID,
        Case.BAD_RECORD_IN_SEALED_SEGMENT,
        Case.BAD_RECORD_LATER_BATCH_AFTER,
        Case.BAD_RECORD_STALE_AFTER,
        Case.RECORD_OP_GAP,
        Case.RECORD_CHAIN_BREAK,
    }
)
"""The refusals of damage that the newest valid snapshot can cover: the
record-level ones, and a segment header that fails its checksum (damage at
the segment's first op: the header holds nothing the chain does not prove
again for the records after it).

Invariant (docs/invariants.md, 3): such damage at an op at or below the
newest valid snapshot's op does not refuse the open when the journal after
the damage holds the snapshot's op (or the op after it) chained to the
chain checksum the snapshot carries: recovery serves the snapshot plus the
ops after it, which the chain proves are this history's, and reports the
damage (file, offset, op). Damage at an op above the snapshot, or a journal
after the damage that does not chain to the snapshot, is refused as the
table says. A truncation is never turned into a skip: the skip only lifts
a refusal, it never drops an op that is not in the snapshot.
"""


@attrs.frozen
class SnapshotAnchor:
    """The newest valid snapshot, as the journal scan needs it: its op, the
    chain checksum it carries and its file (for messages)."""

    op: int
    chain: bytes
    path: str


REPAIRED_FROM_PEERS: frozenset[Case] = frozenset(
    {
        Case.SEGMENT_HEADER_INVALID,
        Case.RECORD_OP_GAP,
        Case.RECORD_CHAIN_BREAK,
        Case.BAD_RECORD_IN_SEALED_SEGMENT,
        Case.BAD_RECORD_LATER_BATCH_AFTER,
        Case.BAD_RECORD_STALE_AFTER,
    }
)
"""The refusals a cluster replica repairs from its peers instead: damage
inside the journal's segments (bit rot after durability, a latent sector
error, a lost or misdirected write) that a cut at the damage removes. Lost,
foreign or misplaced segments, unknown formats and a damaged superblock
still refuse: a cut cannot remove them, or they are not this replica's."""


class Replication(enum.Enum):
    """Whose journal is being recovered: it selects a column of the table."""

    SINGLE = "single replica"
    """A replica with no peers: what it cannot read, nobody can give back."""
    CLUSTER = "cluster replica"
    """A replica with peers that hold the same prepares."""


DECISION_COLUMNS: Mapping[Replication, Mapping[Case, Action]] = MappingProxyType(
    {
        Replication.SINGLE: DECISION_TABLE,
        # A cluster replica refuses what it cannot prove, as a single replica
        # does, except damage inside the journal's records and sealed
        # segments: what it held there, its peers hold too (a committed op is
        # durable on a quorum), so it repairs instead of refusing. It never
        # cuts or accepts what the single column refuses: REPAIR_FROM_PEERS
        # keeps the evidence and reports every op above the damage as lost,
        # never as blank (test_decision.py).
        Replication.CLUSTER: MappingProxyType(
            dict(DECISION_TABLE) | {case: Action.REPAIR_FROM_PEERS for case in REPAIRED_FROM_PEERS}
        ),
    }
)
"""One action column per :class:`Replication`, each mapping every case to one action."""


def decide(case: Case, replication: Replication = Replication.SINGLE) -> Action:
    """The action for ``case`` in ``replication``'s column of :data:`DECISION_COLUMNS`."""
    return DECISION_COLUMNS[replication][case]


@attrs.frozen
class JournalEvidence:
    """What the superblock says about the journal (see ``superblock.py``).

    ``directory_id``: every segment header must carry it. ``first_op`` /
    ``first_parent``: where the journal starts and the chain checksum it
    starts from (``first_op`` 0: no segment created yet). ``head_op``: the
    first op of the newest segment ever created (0: none).
    """

    directory_id: bytes
    first_op: int = 0
    first_parent: bytes = GENESIS_PARENT
    head_op: int = 0


def classify_segment_set(
    first_ops: tuple[int, ...], evidence: JournalEvidence
) -> tuple[Case, str] | None:
    """Judge the list of segment names against the superblock; None when it fits.

    Pure: ``first_ops`` are the segments' first ops in order. A missing
    trailing segment (the newest on disk starts before ``head_op``) or a
    missing leading one (the oldest starts after ``first_op``) is refused.
    Extra segments beyond the evidence are fine: the superblock is written
    after a segment is created and before old ones are deleted.
    """
    if evidence.head_op and (not first_ops or first_ops[-1] < evidence.head_op):
        newest = f"op {first_ops[-1]}" if first_ops else "none"
        return (
            Case.JOURNAL_END_LOST,
            f"the superblock says a segment starting at op {evidence.head_op} was created, "
            f"but the newest segment on disk starts at {newest}: trailing segments were lost",
        )
    if evidence.first_op and first_ops and first_ops[0] > evidence.first_op:
        return (
            Case.JOURNAL_START_LOST,
            f"the superblock says the journal starts at op {evidence.first_op}, but the "
            f"oldest segment on disk starts at op {first_ops[0]}: leading segments were lost",
        )
    return None


@attrs.frozen
class SegmentObservation:
    """What the scan read at the start of one segment: the input of the header decision.

    ``prev_last_op`` / ``prev_tip``: the end of the previous segment on disk
    (None for the first one). ``probe_hit``: the first valid record header
    after the segment header, looked for only when the header is invalid and
    the segment is the last one.
    """

    status: HeaderStatus
    header: SegmentHeader | None
    first_op: int
    size: int
    is_last: bool
    prev_last_op: int | None
    prev_tip: bytes | None
    evidence: JournalEvidence
    probe_hit: ProbeHit | None = None


def classify_segment_header(obs: SegmentObservation) -> tuple[Case, str]:
    """The :class:`Case` of one segment header, and why (pure)."""
    status, header, first_op = obs.status, obs.header, obs.first_op
    if status is HeaderStatus.FOREIGN:
        return Case.SEGMENT_FOREIGN_MAGIC, "not a trio-replica journal segment (bad magic)"
    if status is HeaderStatus.UNKNOWN_VERSION:
        version = header.version if header is not None else "?"
        return (
            Case.SEGMENT_UNKNOWN_VERSION,
            f"segment of on-disk format version {version}; this trio-replica reads version 2",
        )
    if status is HeaderStatus.INVALID:
        # Only the last segment can have been torn while being created, and
        # then it holds no records. It may go only if its name continues the
        # journal (op 1 of an empty journal, or right after the previous
        # segment) and the superblock, written only after a segment's header
        # is durable, does not name it.
        continues = (obs.prev_last_op is None and first_op == 1 and obs.evidence.first_op <= 1) or (
            obs.prev_last_op is not None and first_op == obs.prev_last_op + 1
        )
        vouched = first_op <= obs.evidence.head_op
        if obs.is_last and continues and not vouched:
            hit = obs.probe_hit
            if hit is None:
                return (
                    Case.LAST_SEGMENT_HEADER_TORN,
                    f"the last segment's header is torn ({obs.size} bytes, no valid records): "
                    "a crash while creating it",
                )
            return (
                Case.SEGMENT_HEADER_INVALID,
                f"segment header is invalid but a valid record follows at offset {hit.offset} "
                f"(op {hit.op})",
            )
        why = (
            "sealed segment"
            if not obs.is_last
            else (
                "the superblock says it was created whole"
                if vouched
                else "its name does not continue the journal"
            )
        )
        return Case.SEGMENT_HEADER_INVALID, f"segment header is invalid ({why})"
    assert header is not None
    if header.directory_id != obs.evidence.directory_id:
        return (
            Case.SEGMENT_FOREIGN_DIRECTORY,
            f"segment belongs to data directory {header.directory_id.hex()}, "
            f"not this one ({obs.evidence.directory_id.hex()})",
        )
    if header.first_op != first_op:
        return (
            Case.SEGMENT_NAME_MISMATCH,
            f"segment header says first op {header.first_op}, the file name says {first_op}",
        )
    if obs.prev_last_op is not None and first_op != obs.prev_last_op + 1:
        return (
            Case.SEGMENT_OP_GAP,
            f"segment starts at op {first_op} but the previous one ends at op "
            f"{obs.prev_last_op} (missing segment)",
        )
    if obs.prev_tip is not None:
        expected_parent: bytes | None = obs.prev_tip
    elif first_op == 1:
        expected_parent = GENESIS_PARENT
    elif first_op == obs.evidence.first_op:
        # The first segment after compaction: the superblock recorded the
        # chain checksum it starts from.
        expected_parent = obs.evidence.first_parent
    else:
        expected_parent = None
    if expected_parent is not None and header.parent != expected_parent:
        return (
            Case.SEGMENT_CHAIN_BREAK,
            "segment header's parent is not the checksum of the previous record "
            "(the previous segment's last, or the one the superblock recorded)",
        )
    return Case.SEGMENT_HEADER_VALID, ""


@attrs.frozen
class ProbeHit:
    """A valid record header found after a bad record: where, its op and batch_first.

    ``checksum``, ``parent`` and ``size`` (the whole record's bytes) are the
    header's, when the prober read them (empty / 0 otherwise).
    """

    offset: int
    op: int
    batch_first: int
    checksum: bytes = b""
    parent: bytes = b""
    size: int = 0


def classify_probe(
    hits: Iterable[ProbeHit], *, expected_op: int, torn_batch_firsts: frozenset[int]
) -> tuple[Case, ProbeHit | None]:
    """Classify a bad record in the last segment by the valid headers after it.

    ``expected_op`` is the op that belonged at the bad position;
    ``torn_batch_firsts`` the ``batch_first`` values its batch can have: the
    expected op itself (the bad record started a batch) or the
    ``batch_first`` of the record just before it in the same segment (it
    continued that batch; batches never span segments).

    Returns the case and the hit that decided it (None when no hit was
    needed). Stops at the first hit that proves corruption, so ``hits`` may
    be a lazy scan of a large file.
    """
    same_batch: ProbeHit | None = None
    for hit in hits:
        if hit.batch_first > expected_op:
            return Case.BAD_RECORD_LATER_BATCH_AFTER, hit
        if hit.op <= expected_op or hit.batch_first not in torn_batch_firsts:
            return Case.BAD_RECORD_STALE_AFTER, hit
        if same_batch is None:
            same_batch = hit
    if same_batch is not None:
        return Case.BAD_RECORD_ONLY_SAME_BATCH_AFTER, same_batch
    return Case.BAD_RECORD_NOTHING_VALID_AFTER, None
