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
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

__all__ = ["DECISION_TABLE", "Action", "Case", "ProbeHit", "classify_probe", "decide"]


class Case(enum.Enum):
    """Everything the recovery scan can observe, one value per situation."""

    # Segment level.
    SEGMENT_HEADER_VALID = "segment header valid and continues the chain"
    SEGMENT_NAME_INVALID = "a *.wal file whose name is not <20 digits>.wal"
    SEGMENT_FOREIGN_MAGIC = "a segment file whose magic is neither ours nor zeros"
    SEGMENT_UNKNOWN_VERSION = "a valid segment header of an unknown format version"
    SEGMENT_NAME_MISMATCH = "the header's first op differs from the file name"
    SEGMENT_OP_GAP = "a segment does not start right after the previous one (missing segment)"
    SEGMENT_CHAIN_BREAK = "a segment header's parent is not the previous segment's last checksum"
    LAST_SEGMENT_HEADER_TORN = "the last segment's header is invalid and nothing valid follows"
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
    """Cut the last segment at the bad record (provable torn tail); report it."""
    REMOVE_SEGMENT = "remove_segment"
    """Delete the last segment file (its creation was torn); report it."""
    RAISE_CORRUPTION = "raise_corruption"
    """Refuse to open: :class:`~trio_replica.errors.CorruptionError`."""
    RAISE_FORMAT = "raise_format"
    """Refuse to open: :class:`~trio_replica.errors.FormatError` (not our format)."""


DECISION_TABLE: Mapping[Case, Action] = MappingProxyType(
    {
        Case.SEGMENT_HEADER_VALID: Action.ACCEPT,
        Case.SEGMENT_NAME_INVALID: Action.RAISE_CORRUPTION,
        Case.SEGMENT_FOREIGN_MAGIC: Action.RAISE_FORMAT,
        Case.SEGMENT_UNKNOWN_VERSION: Action.RAISE_FORMAT,
        Case.SEGMENT_NAME_MISMATCH: Action.RAISE_CORRUPTION,
        Case.SEGMENT_OP_GAP: Action.RAISE_CORRUPTION,
        Case.SEGMENT_CHAIN_BREAK: Action.RAISE_CORRUPTION,
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


def decide(case: Case) -> Action:
    """The action for ``case`` (a lookup in :data:`DECISION_TABLE`)."""
    return DECISION_TABLE[case]


@attrs.frozen
class ProbeHit:
    """A valid record header found after a bad record: where, its op and batch_first."""

    offset: int
    op: int
    batch_first: int


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
