"""The write-ahead journal: checksummed, hash-chained records in rolled segment files.

:class:`Journal` appends batches durably (one write, one fsync), reads ops
back, streams them, and compacts whole segments under a snapshot
watermark. Recovery on open truncates only a provably torn tail and raises
:class:`CorruptionError` for anything else; the decision is the table in
:mod:`.decision`. :func:`scan_journal`, :func:`iter_records` and
:func:`repair_journal` are the synchronous, read-only (repair: explicit)
tools for the command line. The on-disk format is in ``docs/format.md``.
"""

from __future__ import annotations

from ..errors import (
    BodyTooLargeError,
    ClosedError,
    CorruptionError,
    FatalStorageError,
    FormatError,
    InvalidAppendError,
    JournalFull,
)
from .decision import DECISION_TABLE, Action, Case, SnapshotAnchor
from .errors import CompactedError, InvalidWatermarkError, JournalBusyError, OpNotFoundError
from .journal import Entry, Journal, JournalRecovery, JournalStats
from .repair import RepairReport, repair_journal
from .scan import (
    JournalDamage,
    RecordInfo,
    Replay,
    ScanResult,
    SegmentInfo,
    TornTail,
    iter_records,
    scan_journal,
)

__all__ = [
    "DECISION_TABLE",
    "Action",
    "BodyTooLargeError",
    "Case",
    "ClosedError",
    "CompactedError",
    "CorruptionError",
    "Entry",
    "FatalStorageError",
    "FormatError",
    "InvalidAppendError",
    "InvalidWatermarkError",
    "Journal",
    "JournalBusyError",
    "JournalDamage",
    "JournalFull",
    "JournalRecovery",
    "JournalStats",
    "OpNotFoundError",
    "RecordInfo",
    "Replay",
    "RepairReport",
    "ScanResult",
    "SegmentInfo",
    "SnapshotAnchor",
    "TornTail",
    "iter_records",
    "repair_journal",
    "scan_journal",
]
