"""Plan, then act: everything :meth:`Journal.open` will do, decided before a byte changes.

:func:`plan_open` reads the superblock and every segment and returns a
:class:`JournalPlan`; it never writes. :meth:`Journal.open` carries the plan
out; :func:`~.scan.scan_journal` (``verify``) only reports it. A refused open
therefore leaves the directory exactly as it found it, and ``verify`` and
``open`` reach one judgment because they run this same function.

What the superblock's absence means (see ``docs/format.md``):

* no superblock and nothing else (no segment, no snapshot): a new data
  directory; the plan creates a superblock with a fresh identity;
* no superblock but segments or snapshots: a format version 1 directory
  (:class:`~.superblock.UnsupportedFormatError` naming the version) or a
  lost superblock (:class:`CorruptionError`): refused;
* a superblock that says segments were created, but no ``wal/``: refused.
"""

from __future__ import annotations

import attrs

from ..errors import CorruptionError, StorageError
from ..layout import SNAPSHOT_DIR, SUPERBLOCK_NAME, SUPERBLOCK_TEMP_NAME, WAL_DIR
from ..storage import Directory
from .decision import REFUSALS, Case, JournalEvidence, decide
from .record import SEGMENT_HEADER_SIZE, HeaderStatus, decode_segment_header
from .restart import is_restart_evidence, leftover_segments, restarted_scan
from .scan import AnchorSource, Observer, OnRecord, Replay, ScanResult, list_segments, scan_wal
from .superblock import Superblock, UnsupportedFormatError, new_directory_id, read_superblock

__all__ = ["JournalPlan", "evidence_of", "plan_open"]

_SNAPSHOT_SUFFIX = ".snapshot"


@attrs.frozen
class JournalPlan:
    """What opening the journal will do, and what it will find.

    ``superblock`` is the directory's (read, or new when ``write_superblock``).
    ``create_wal``: ``wal/`` is missing and may be created. ``remove_temp``:
    a leftover ``superblock.tmp`` to delete. ``scan``: the journal's state
    once ``scan.torn_tail`` (if any) is applied. ``remove_leftovers``: segments
    of a journal that was restarted after an installed snapshot (the
    superblock holds the restart evidence, see :mod:`.restart`), deleted.
    """

    superblock: Superblock
    write_superblock: bool
    create_wal: bool
    remove_temp: bool
    scan: ScanResult
    remove_leftovers: tuple[str, ...] = ()


def evidence_of(block: Superblock) -> JournalEvidence:
    """The part of the superblock that judges the journal."""
    return JournalEvidence(
        directory_id=block.directory_id,
        first_op=block.wal_first_op,
        first_parent=block.wal_first_parent,
        head_op=block.wal_head_op,
    )


def _version_1_hint(data: Directory) -> int | None:
    """The format version of the first segment, when it can be read (for the refusal)."""
    if not data.is_dir(WAL_DIR):
        return None
    wal = data.subdir(WAL_DIR)
    segments = list_segments(wal)
    if not segments:
        return None
    storage = wal.open(segments[0][1])
    try:
        status, header = decode_segment_header(storage.read_at(0, SEGMENT_HEADER_SIZE))
    finally:
        storage.close()
    if status is HeaderStatus.UNKNOWN_VERSION and header is not None:
        return header.version
    return None


def _used_without_superblock(data: Directory) -> str | None:
    """What shows ``data`` was used, when it has no superblock (None: nothing)."""
    if data.is_dir(WAL_DIR) and list_segments(data.subdir(WAL_DIR)):
        return "journal segments"
    if data.is_dir(SNAPSHOT_DIR) and any(
        name.endswith(_SNAPSHOT_SUFFIX) for name in data.subdir(SNAPSHOT_DIR).listdir()
    ):
        return "snapshots"
    return None


def _head_after_cut(block: Superblock, scan: ScanResult) -> Superblock | None:
    """The superblock after ``scan.torn_tail`` is applied, when it must change.

    A cut that removes a segment the superblock names (a cut before the
    newest segment: never one the decision table makes, whose cuts stay
    inside the last segment or remove a segment the superblock never named)
    moves the journal-end evidence back to the newest segment left, so the
    journal after the cut opens again. Written before the cut, like at a
    roll: segments beyond the evidence are allowed, fewer are not.
    """
    torn = scan.torn_tail
    if torn is None or not (torn.later or torn.action == "remove_segment"):
        return None
    head = scan.segments[-1].first_op if scan.segments else 0
    if block.wal_head_op <= head:
        return None
    if not scan.segments:
        return block.next(wal_head_op=0, wal_first_op=0)
    return block.next(wal_head_op=head)


def plan_open(
    data: Directory,
    *,
    create: bool,
    on_record: OnRecord | None = None,
    observe: Observer | None = None,
    anchor: AnchorSource | None = None,
    replay: Replay | None = None,
) -> JournalPlan:
    """Decide everything opening the journal in ``data`` does; never writes. Blocking.

    ``create``: a new directory (or a missing ``wal/`` of a superblock that
    names no segment yet) may be set up. Raises :class:`CorruptionError` (or
    a subclass) for anything the decision table refuses, and
    :class:`~trio_replica.errors.StorageError` when the journal is missing
    and ``create`` is false. ``anchor``: see :func:`~.scan.scan_wal`
    (damage the newest valid snapshot covers); ``replay``: see
    :class:`~.scan.Replay` (bodies for recovery, from the same pass).
    """
    block = read_superblock(data)
    write = False
    if block is None:
        used = _used_without_superblock(data)
        if used is not None:
            version = _version_1_hint(data)
            if version is not None:
                raise UnsupportedFormatError(
                    f"data directory {data.path} was written in on-disk format version "
                    f"{version}; this trio-replica reads version 2 and does not convert "
                    "older directories: open it with the release that wrote it, or start "
                    "a new directory",
                    version=version,
                    path=data.path,
                )
            raise CorruptionError(
                f"the data directory has {used} but no superblock: it was lost or deleted, "
                "so neither the directory's identity nor where its journal ends can be checked",
                path=data.path_of(SUPERBLOCK_NAME),
            )
        block = Superblock(directory_id=new_directory_id(data))
        write = True
    has_wal = data.is_dir(WAL_DIR)
    if not has_wal and block.wal_head_op:
        case = Case.WAL_MISSING
        if observe is not None:
            observe(case, data.path_of(WAL_DIR), 0)
    if not has_wal and block.wal_head_op and decide(Case.WAL_MISSING) in REFUSALS:
        raise CorruptionError(
            f"the superblock says segments up to one starting at op {block.wal_head_op} were "
            "created, but the journal directory is missing",
            path=data.path_of(WAL_DIR),
        )
    if not has_wal and not create:
        raise StorageError(
            f"no journal directory {data.path_of(WAL_DIR)}",
            path=data.path_of(WAL_DIR),
            stage="open",
        )
    evidence = evidence_of(block)
    leftovers: tuple[str, ...] = ()
    if is_restart_evidence(evidence):
        # Restarted after an installed snapshot: whatever segments are on
        # disk belong to the old journal and are deleted (journal/restart.py).
        if has_wal:
            leftovers = leftover_segments(data.subdir(WAL_DIR))
        scan = restarted_scan(evidence)
    elif has_wal:
        scan = scan_wal(
            data.subdir(WAL_DIR),
            evidence=evidence,
            on_record=on_record,
            observe=observe,
            anchor=anchor,
            replay=replay,
        )
    else:
        scan = ScanResult(
            segments=[],
            first_op=1,
            last_op=0,
            records=0,
            torn_tail=None,
            chain_tip=block.wal_first_parent,
            root_parent=block.wal_first_parent,
            last_batch_first=0,
        )
    cut_head = _head_after_cut(block, scan)
    if cut_head is not None:
        block, write = cut_head, True
    return JournalPlan(
        superblock=block,
        write_superblock=write,
        create_wal=not has_wal,
        remove_temp=data.exists(SUPERBLOCK_TEMP_NAME),
        scan=scan,
        remove_leftovers=leftovers,
    )
