"""Repair: the explicit, evidence-keeping act of cutting a journal back to what verifies.

Recovery on open cuts only a provable torn tail. Anything else stops the
journal with a :class:`CorruptionError` until an operator decides. This
module is that decision: :func:`repair_journal` copies every file it is
about to change to ``<name>.broken`` (never overwriting an older copy),
then cuts at the first bad record. Without ``force`` it does only what
``Journal.open`` would do anyway (cut a torn tail, and leave damage the
newest valid snapshot covers where it is, reported); with ``force`` it cuts
at the first bad record wherever it is, dropping everything after it.
"""

from __future__ import annotations

import attrs

from ..errors import CorruptionError
from ..layout import LOCK_NAME
from ..storage import Directory
from .plan import evidence_of, plan_open
from .record import SEGMENT_HEADER_SIZE
from .scan import AnchorSource, JournalDamage, TornTail, list_segments, open_wal_dir, scan_wal
from .segment import CHUNK_BYTES, probe_headers
from .superblock import Superblock, read_superblock, write_superblock

__all__ = ["RepairReport", "apply_torn_tail", "forced_cut_refusal", "repair_journal"]


@attrs.frozen
class RepairReport:
    """What :func:`repair_journal` did.

    ``path``/``offset``: the segment cut and where (None: nothing to
    repair). ``bytes_cut``: bytes removed, whole deleted segments included.
    ``ops_cut``: records with a valid header checksum in the removed bytes
    (what was lost that still looked like a record). ``broken_copies``: the
    ``.broken`` copies written before anything was changed. ``damage``:
    damage below the newest valid snapshot that it covers, which repair
    leaves as it is, as opening does (None: none).
    """

    path: str | None
    offset: int | None
    bytes_cut: int
    ops_cut: int
    broken_copies: list[str]
    reason: str | None = None
    damage: JournalDamage | None = None


def apply_torn_tail(wal: Directory, torn: TornTail) -> None:
    """Cut (or remove) a segment as a scan planned it, durably.

    Segments after the cut (:attr:`TornTail.later`) are deleted first,
    newest first, each deletion made durable before the next, so a crash in
    the middle leaves a contiguous prefix of the journal.
    """
    for name in reversed(torn.later):
        wal.unlink(name)
        wal.sync()
    if torn.action == "truncate":
        storage = wal.open(torn.name)
        try:
            storage.truncate(torn.offset)
            storage.sync()
        finally:
            storage.close()
    else:
        wal.unlink(torn.name)
        wal.sync()


def _copy_broken(wal: Directory, name: str) -> str:
    target = f"{name}.broken"
    n = 1
    while wal.exists(target):
        target = f"{name}.{n}.broken"
        n += 1
    src = wal.open(name)
    try:
        dst = wal.open(target, create=True)
        try:
            size = src.size()
            offset = 0
            while offset < size:
                chunk = src.read_at(offset, min(CHUNK_BYTES, size - offset))
                if not chunk:
                    break
                dst.write_at(offset, chunk)
                offset += len(chunk)
            dst.sync()
        finally:
            dst.close()
    finally:
        src.close()
    wal.sync()
    return wal.path_of(target)


def _valid_headers(wal: Directory, name: str, start: int) -> tuple[int, int]:
    """(records with a valid header from ``start`` on, bytes from ``start`` on)."""
    storage = wal.open(name)
    try:
        size = storage.size()
        count = sum(1 for _ in probe_headers(storage, max(start, SEGMENT_HEADER_SIZE), size))
        return count, max(0, size - start)
    finally:
        storage.close()


def repair_journal(
    data_dir: Directory,
    *,
    force: bool = False,
    lock: bool = True,
    keep_after: int | None = None,
    anchor: AnchorSource | None = None,
) -> RepairReport:
    """Cut the journal in ``data_dir`` back to its longest verifiable prefix.

    Synchronous and blocking. Takes ``<data>/LOCK`` unless ``lock`` is false
    (pass False when the caller already holds it). Without ``force`` only a
    provable torn tail is cut (what ``Journal.open`` would cut) and any
    other damage raises :class:`CorruptionError` unchanged; with ``force``
    the journal is cut at the first bad record wherever it is, and every
    later segment is deleted. Every file is copied to ``<name>.broken``
    (durably) before it is changed or deleted.

    ``keep_after`` (the op of the newest valid snapshot): a forced cut at or
    below it, which would delete ops after the snapshot that recovery needs,
    is refused with :class:`CorruptionError` before anything changes.

    ``anchor`` (the snapshot that may cover damage, as
    :func:`~trio_replica.coordinator.fit.covering_anchor` picks it): the
    journal is judged exactly as ``Journal.open`` judges it with the same
    anchor, so damage the snapshot covers is neither refused nor cut (with
    or without ``force``); it is returned in :attr:`RepairReport.damage`.
    """
    held = data_dir.lock(LOCK_NAME) if lock else None
    try:
        block = read_superblock(data_dir)
        if block is None:
            # Refused as open refuses it (a version 1 or a superblock-less
            # directory): repair does not guess an identity.
            plan_open(data_dir, create=False)
            raise CorruptionError("no superblock", path=data_dir.path)  # pragma: no cover
        wal = open_wal_dir(data_dir)
        try:
            scan = scan_wal(wal, evidence=evidence_of(block), anchor=anchor)
        except CorruptionError as exc:
            if not force:
                raise
            refusal = forced_cut_refusal(wal, exc, keep_after)
            if refusal is not None:
                raise CorruptionError(
                    f"{exc.reason}; {refusal}, so repair refuses; nothing was changed",
                    path=exc.path,
                    offset=exc.offset,
                    op=exc.op,
                ) from exc
            # The evidence shrinks first: a superblock naming fewer segments
            # than exist is fine, one naming a segment already deleted is a
            # lost journal end, so a crash mid-cut must find the new one.
            _shrink_evidence(data_dir, _names_after_cut(wal, exc), block)
            return _force_cut(wal, exc)
        torn = scan.torn_tail
        if torn is None:
            return RepairReport(None, None, 0, 0, [], damage=scan.damage)
        copies = [_copy_broken(wal, name) for name in (torn.name, *torn.later)]
        ops_cut, bytes_cut = _valid_headers(wal, torn.name, torn.offset)
        for name in torn.later:
            count, size = _valid_headers(wal, name, 0)
            ops_cut += count
            bytes_cut += size
        apply_torn_tail(wal, torn)
        if torn.later:
            _shrink_evidence(data_dir, list_segments(wal), block)
        return RepairReport(
            torn.path, torn.offset, bytes_cut, ops_cut, copies, torn.reason, damage=scan.damage
        )
    finally:
        if held is not None:
            held.release()


def _names_after_cut(wal: Directory, exc: CorruptionError) -> list[tuple[int, str]]:
    """The segments a forced cut at the damage ``exc`` reports leaves."""
    segments = list_segments(wal)
    _, index = _damaged_segment(wal, exc)
    assert index is not None  # forced_cut_refusal() was asked first
    offset = exc.offset if exc.offset is not None and exc.offset >= SEGMENT_HEADER_SIZE else 0
    return segments[: index + 1] if offset else segments[:index]


def _shrink_evidence(
    data_dir: Directory, segments: list[tuple[int, str]], block: Superblock
) -> None:
    """Make the superblock name the newest of ``segments`` (those a cut leaves)."""
    head = segments[-1][0] if segments else 0
    if head != block.wal_head_op:
        changes: dict[str, object] = {"wal_head_op": head}
        if not segments:
            changes["wal_first_op"] = 0
        write_superblock(data_dir, block.next(**changes))


def _damaged_segment(wal: Directory, exc: CorruptionError) -> tuple[list[str], int | None]:
    """The segment names in op order, and the index of the one ``exc`` names (or None)."""
    names = [name for _, name in list_segments(wal)]
    index = next((i for i, name in enumerate(names) if wal.path_of(name) == exc.path), None)
    return names, index


def forced_cut_refusal(wal: Directory, exc: CorruptionError, keep_after: int | None) -> str | None:
    """Why ``repair --force`` cannot cut at the damage ``exc`` reports, or None if it can.

    A forced cut needs the damage inside a journal segment (a lost, foreign
    or misplaced segment, or a superblock that does not fit, has no record
    to cut at), above ``keep_after``, the newest valid snapshot's op (cutting
    lower would delete ops recovery needs). Blocking; reads the segment list.
    """
    if _damaged_segment(wal, exc)[1] is None:
        return (
            "it is not damage inside a journal segment that a cut could remove "
            "(repair cannot fix it automatically)"
        )
    if keep_after is not None and (exc.op is None or exc.op <= keep_after):
        return (
            f"a forced cut here would delete ops after the newest valid snapshot "
            f"(op {keep_after}) that recovery needs"
        )
    return None


def _force_cut(wal: Directory, exc: CorruptionError) -> RepairReport:
    names, index = _damaged_segment(wal, exc)
    # forced_cut_refusal() was asked first: the damage is inside a segment.
    assert index is not None
    offset = exc.offset if exc.offset is not None and exc.offset >= SEGMENT_HEADER_SIZE else 0
    copies: list[str] = []
    ops_cut = 0
    bytes_cut = 0
    # Newest first, each unlink made durable before the next, so a crash in
    # the middle leaves a contiguous prefix of segments.
    for name in reversed(names[index + 1 :]):
        copies.append(_copy_broken(wal, name))
        count, size = _valid_headers(wal, name, 0)
        ops_cut += count
        bytes_cut += size
        wal.unlink(name)
        wal.sync()
    name = names[index]
    copies.append(_copy_broken(wal, name))
    count, size = _valid_headers(wal, name, offset)
    ops_cut += count
    bytes_cut += size
    if offset == 0:
        wal.unlink(name)
        wal.sync()
    else:
        storage = wal.open(name)
        try:
            storage.truncate(offset)
            storage.sync()
        finally:
            storage.close()
    copies.reverse()
    return RepairReport(
        wal.path_of(name), offset, bytes_cut, ops_cut, copies, f"forced: {exc.reason}"
    )
