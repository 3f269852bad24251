"""The recovery scan: verify a WAL directory and decide what recovery must do.

:func:`scan_wal` is the one implementation of the recovery decision. It
reads every segment in op order, streaming, verifies segment headers,
record checksums, op continuity and the hash chain (across segments too),
classifies what it finds into a :class:`~.decision.Case`, and acts on the
:class:`~.decision.Action` the decision table gives: accept, raise, or
*plan* a truncation or removal. It never writes: :meth:`Journal.open`
applies the plan, :func:`scan_journal` (the CLI's ``verify``) only reports
it.

:func:`iter_records` lists records one by one for inspection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs

from ..errors import CorruptionError, ForeignDataError, FormatError, StorageError
from ..layout import LOCK_NAME, WAL_DIR
from ..storage import Directory, Storage
from .decision import (
    COVERED_BY_SNAPSHOT,
    REFUSALS,
    Action,
    Case,
    JournalEvidence,
    SegmentObservation,
    SnapshotAnchor,
    classify_probe,
    classify_segment_header,
    classify_segment_set,
    decide,
)
from .record import (
    GENESIS_PARENT,
    SEGMENT_HEADER_SIZE,
    HeaderStatus,
    SegmentHeader,
    decode_segment_header,
)
from .segment import (
    SEGMENT_SUFFIX,
    BodySink,
    CheckKind,
    SegmentReader,
    check_record,
    parse_segment_name,
    probe_headers,
    verify_run,
)
from .superblock import UnsupportedFormatError

__all__ = [
    "LOCK_NAME",
    "WAL_DIR",
    "AnchorSource",
    "JournalDamage",
    "Observer",
    "OnRecord",
    "RecordInfo",
    "Replay",
    "ScanResult",
    "SegmentInfo",
    "TornTail",
    "iter_records",
    "list_segments",
    "open_wal_dir",
    "scan_journal",
    "scan_wal",
]


OnRecord = Callable[[int, int, int, int, bytes], None]
"""Called for each accepted record: (segment first op, offset, op, body length, checksum)."""

Observer = Callable[[Case, str, int], None]
"""Called with every case the scan observes: (case, path, offset)."""

AnchorSource = Callable[[], SnapshotAnchor | None]
"""Asked (blocking, at most once, only when the scan meets damage that a
snapshot may cover) for the newest valid snapshot."""


@attrs.frozen
class Replay:
    """What recovery replays from the scan's own pass over the journal.

    ``apply(op, body)`` is called, in op order, with the body of every
    record the scan accepts whose op is above ``after``, right after that
    record was verified (checksums, op, chain) and from the very bytes that
    were verified; ``body`` is a view valid only during the call. It runs
    where the scan runs (the open's I/O thread). The scan may still refuse
    the journal after bodies were given (damage further on): the caller
    must then discard what it built. The records it accepts are never cut
    afterwards, so every body given belongs to the journal the open ends
    with. A
    :class:`CorruptionError` raised by ``apply`` without a path is raised
    again naming the record's file and offset.
    """

    after: int
    apply: BodySink


@attrs.frozen
class JournalDamage:
    """Damage below the newest valid snapshot, which the open does not refuse.

    ``path``, ``offset``, ``op``: where the first bad record is and the op
    expected there; ``case`` and ``reason``: what was wrong. The ops from
    ``op`` to ``snapshot_op`` cannot be read (a fallback to an older
    snapshot would need them). The journal goes on from ``resume_offset`` of
    the segment starting at ``resume_segment``, where op ``snapshot_op + 1``
    starts (or would start), chained to ``snapshot_chain``, the chain
    checksum the snapshot ``snapshot_path`` carries.
    """

    path: str
    offset: int
    op: int
    case: Case
    reason: str
    snapshot_op: int
    snapshot_path: str
    snapshot_chain: bytes
    resume_segment: int
    resume_offset: int

    def describe(self) -> str:
        """One sentence for logs, reports and ``verify``."""
        return (
            f"damage below the newest valid snapshot: file {self.path}, offset {self.offset}, "
            f"op {self.op}: {self.reason}. The snapshot at op {self.snapshot_op} (file "
            f"{self.snapshot_path}) covers it, and the journal after it chains to the "
            f"checksum that snapshot carries, so nothing acknowledged is lost; ops "
            f"{self.op}..{self.snapshot_op} cannot be read, so no older snapshot can be "
            "fallen back to"
        )


@attrs.frozen
class SegmentInfo:
    """One segment as the scan found it.

    ``size`` is the file's size now; ``valid_bytes`` where its last valid
    record ends (smaller only for the last segment when a torn tail is cut).
    ``last_op`` is ``first_op - 1`` for a segment without records.
    """

    path: str
    first_op: int
    last_op: int
    size: int
    records: int
    valid_bytes: int


@attrs.frozen
class TornTail:
    """Where recovery cuts the journal: the segment ``name`` at ``offset``
    (``action == "truncate"``) or the whole segment (``action ==
    "remove_segment"``), and every segment after it, ``later`` (file names,
    oldest first). ``bytes`` is how much goes, ``later`` included.

    The table cuts only the last segment (a provable torn tail, or a torn
    segment creation), so ``later`` is empty; a cut elsewhere, which the
    table does not make, is still well defined: the journal ends where the
    cut is, whatever followed it goes.
    """

    path: str
    offset: int
    bytes: int
    reason: str
    action: str
    case: Case
    name: str
    later: tuple[str, ...] = ()


@attrs.frozen
class ScanResult:
    """What a scan found, and the state recovery ends in once ``torn_tail`` is applied.

    ``segments`` excludes a segment that ``torn_tail`` removes. ``chain_tip``
    is the checksum the next record must name as its parent.
    """

    segments: list[SegmentInfo]
    first_op: int
    last_op: int
    records: int
    torn_tail: TornTail | None
    chain_tip: bytes
    last_batch_first: int
    root_parent: bytes = GENESIS_PARENT
    """The parent named by the oldest segment's header: the chain checksum at
    ``first_op - 1``."""
    damage: JournalDamage | None = None
    """Damage the newest valid snapshot covers (None: none)."""


@attrs.frozen
class RecordInfo:
    """One record as :func:`iter_records` sees it.

    ``status`` is ``"ok"`` or why the record is not valid (then ``body`` is
    None and the fields come from the header when it was readable, else are
    zero/empty, and ``op`` is the op expected there).
    """

    path: str
    offset: int
    op: int
    batch_first: int
    body_size: int
    checksum: str
    status: str
    body: bytes | None


def open_wal_dir(data_dir: Directory) -> Directory:
    """The existing ``wal`` subdirectory of ``data_dir`` (never created here)."""
    try:
        return data_dir.subdir(WAL_DIR)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise StorageError(
            f"no journal directory {data_dir.path_of(WAL_DIR)}",
            path=data_dir.path_of(WAL_DIR),
            stage="open",
        ) from exc


def _raise(
    case: Case,
    reason: str,
    *,
    path: str,
    offset: int | None,
    op: int | None,
    version: int | None = None,
) -> None:
    action = decide(case)
    if action not in REFUSALS:
        raise AssertionError(f"{case} maps to {action}, which is not a refusal")
    if case is Case.SEGMENT_UNKNOWN_VERSION and version is not None:
        raise UnsupportedFormatError(reason, version=version, path=path)
    if action is Action.RAISE_FORMAT:
        raise FormatError(reason, path=path, offset=offset, op=op)
    if action is Action.RAISE_FOREIGN:
        raise ForeignDataError(reason, path=path, offset=offset, op=op)
    assert action is Action.RAISE_CORRUPTION, (case, action)
    raise CorruptionError(reason, path=path, offset=offset, op=op)


def list_segments(wal: Directory, observe: Observer | None = None) -> list[tuple[int, str]]:
    """``(first op, name)`` of every segment file, in op order.

    Other files (``*.broken`` copies, for example) are ignored, but a
    ``*.wal`` file whose name does not parse is refused: it may be a
    segment that was renamed by hand.
    """
    segments: list[tuple[int, str]] = []
    for name in wal.listdir():
        if not name.endswith(SEGMENT_SUFFIX):
            continue
        first_op = parse_segment_name(name)
        if first_op is None:
            if observe is not None:
                observe(Case.SEGMENT_NAME_INVALID, wal.path_of(name), 0)
            if decide(Case.SEGMENT_NAME_INVALID) in REFUSALS:
                _raise(
                    Case.SEGMENT_NAME_INVALID,
                    f"segment file name {name!r} is not <20 digit first op>{SEGMENT_SUFFIX}",
                    path=wal.path_of(name),
                    offset=None,
                    op=None,
                )
            continue  # a table that does not refuse it: not a segment
        segments.append((first_op, name))
    segments.sort()
    return segments


@attrs.frozen
class _ChainEnd:
    last_op: int
    tip: bytes
    batch_first: int


@attrs.frozen
class _Start:
    """Where a scan resumes inside a segment (after damage a snapshot covers)."""

    pos: int
    expected: int
    tip: bytes
    batch_first: int | None


@attrs.frozen
class _Skippable:
    """A refusal a snapshot may cover: what it is and where a search may start."""

    case: Case
    reason: str
    offset: int
    op: int
    probe_from: int


@attrs.frozen
class _SegmentOutcome:
    info: SegmentInfo | None  # None: the segment is to be removed
    end: _ChainEnd | None
    torn: TornTail | None
    parent: bytes | None = None  # the segment header's parent
    skippable: _Skippable | None = None


def _scan_segment(
    storage: Storage,
    name: str,
    path: str,
    first_op: int,
    prev: _ChainEnd | None,
    is_last: bool,
    evidence: JournalEvidence,
    on_record: OnRecord | None,
    observe: Observer | None,
    *,
    start: _Start | None = None,
    may_skip: bool = False,
    header_covered: bool = False,
    replay: Replay | None = None,
) -> _SegmentOutcome:
    size = storage.size()
    reader = SegmentReader(storage, size)
    head = storage.read_at(0, SEGMENT_HEADER_SIZE)
    status, header = decode_segment_header(head)
    hit = None
    if status is HeaderStatus.INVALID and is_last:
        hit = next(iter(probe_headers(storage, SEGMENT_HEADER_SIZE, size)), None)
    case, reason = classify_segment_header(
        SegmentObservation(
            status=status,
            header=header,
            first_op=first_op,
            size=size,
            is_last=is_last,
            prev_last_op=prev.last_op if prev is not None else None,
            prev_tip=prev.tip if prev is not None else None,
            evidence=evidence,
            probe_hit=hit,
        )
    )
    if observe is not None:
        observe(case, path, 0)
    action = decide(case)
    if action is Action.REMOVE_SEGMENT:
        removal = TornTail(path, 0, size, reason, action.value, case, name)
        return _SegmentOutcome(None, None, removal)
    if case in COVERED_BY_SNAPSHOT and action in REFUSALS:
        if header_covered and start is not None:
            # Resuming inside this segment after its damaged header was found
            # covered: the records from ``start`` on are proven by the chain
            # to the snapshot, not by the header.
            action = Action.ACCEPT
        elif may_skip:
            # A damaged header is damage at the segment's first op; the caller
            # decides, knowing the newest snapshot (invariant 3).
            skippable = _Skippable(case, reason, 0, first_op, SEGMENT_HEADER_SIZE)
            info = SegmentInfo(path, first_op, first_op - 1, size, 0, 0)
            return _SegmentOutcome(info, None, None, None, skippable)
    if action is Action.TRUNCATE:
        # A cut at this segment's header: the journal ends before it.
        cut = TornTail(path, 0, size, reason, Action.REMOVE_SEGMENT.value, case, name)
        return _SegmentOutcome(None, None, cut)
    if action is not Action.ACCEPT:
        version = header.version if header is not None else None
        _raise(case, reason, path=path, offset=0, op=first_op, version=version)

    pos = SEGMENT_HEADER_SIZE
    expected = first_op
    if header is not None:
        tip = header.parent
    elif prev is not None:
        # An unreadable header accepted (covered, or a table that accepts
        # it): the records are checked against the chain before them.
        tip = prev.tip
    else:
        tip = GENESIS_PARENT if first_op == 1 else evidence.first_parent
    batch_first = prev.batch_first if prev is not None else 0
    prev_batch_first: int | None = None  # of the previous record in THIS segment
    if start is not None:
        pos, expected, tip = start.pos, start.expected, start.tip
        prev_batch_first = start.batch_first
        batch_first = start.batch_first or 0
    records = 0
    torn: TornTail | None = None
    body_after = replay.after if replay is not None else 0
    on_body = replay.apply if replay is not None else None
    while True:
        if observe is None:
            # The hot path: every valid record verified once, without objects;
            # it stops where check_record must classify what it found.
            run = verify_run(
                reader,
                pos,
                expected,
                tip,
                segment_first_op=first_op,
                path=path,
                on_record=on_record,
                body_after=body_after,
                on_body=on_body,
            )
            if run.batch_first is not None:  # it verified at least one
                pos, expected, tip = run.offset, run.expected_op, run.tip
                batch_first = prev_batch_first = run.batch_first
                records += run.records
        check = check_record(reader, pos, expected, tip)
        kind = check.kind
        if kind is CheckKind.OK:
            rec = check.header
            assert rec is not None and check.body is not None
            if observe is not None:
                observe(Case.RECORD_VALID, path, pos)
            if on_record is not None:
                on_record(first_op, pos, expected, rec.body_len, rec.checksum)
            if on_body is not None and expected > body_after:
                try:
                    on_body(expected, check.body)
                except CorruptionError as exc:
                    if exc.path is not None:
                        raise
                    raise CorruptionError(exc.reason, path=path, offset=pos, op=expected) from exc
            tip = rec.checksum
            batch_first = prev_batch_first = rec.batch_first
            expected += 1
            records += 1
            pos = check.end
            continue
        if kind is CheckKind.END:
            break
        detail = check.reason
        if kind is CheckKind.UNSUPPORTED:
            case = Case.RECORD_UNSUPPORTED
        elif kind is CheckKind.OP_GAP:
            case = Case.RECORD_OP_GAP
        elif kind is CheckKind.CHAIN_BREAK:
            case = Case.RECORD_CHAIN_BREAK
        elif not is_last:
            case = Case.BAD_RECORD_IN_SEALED_SEGMENT
            detail += "; the segment is sealed, so this cannot be a torn write"
        else:
            # A batch never spans segments, so the torn batch either started
            # at the expected op or continues the batch of the record before.
            firsts = {expected} if prev_batch_first is None else {expected, prev_batch_first}
            case, hit = classify_probe(
                probe_headers(storage, check.probe_from, size),
                expected_op=expected,
                torn_batch_firsts=frozenset(firsts),
            )
            if hit is None:
                detail += "; nothing valid after it"
            else:
                detail += (
                    f"; a valid record follows at offset {hit.offset} "
                    f"(op {hit.op}, batch_first {hit.batch_first})"
                )
                if case is Case.BAD_RECORD_LATER_BATCH_AFTER:
                    detail += ": a later batch was written, so this record was durable"
                elif case is Case.BAD_RECORD_STALE_AFTER:
                    detail += ", which cannot belong after it"
                else:
                    detail += " of the same, never acknowledged, batch"
        if observe is not None:
            observe(case, path, pos)
        action = decide(case)
        if may_skip and case in COVERED_BY_SNAPSHOT and action in REFUSALS:
            # The caller decides, knowing the newest snapshot (invariant 3).
            probe_from = check.probe_from if kind is CheckKind.BAD else pos + 8
            skippable = _Skippable(case, detail, pos, expected, probe_from)
            info = SegmentInfo(path, first_op, expected - 1, size, records, pos)
            return _SegmentOutcome(info, None, None, tip_of(header), skippable)
        if action is Action.TRUNCATE:
            torn = TornTail(path, pos, size - pos, f"torn tail: {detail}", action.value, case, name)
            break
        _raise(case, detail, path=path, offset=pos, op=expected)
        raise AssertionError(f"unhandled action {action} for {case}")  # pragma: no cover

    info = SegmentInfo(
        path=path,
        first_op=first_op,
        last_op=expected - 1,
        size=size,
        records=records,
        valid_bytes=pos,
    )
    return _SegmentOutcome(info, _ChainEnd(expected - 1, tip, batch_first), torn, tip_of(header))


def tip_of(header: SegmentHeader | None) -> bytes | None:
    """The parent a segment header names (None: the header was damaged)."""
    return None if header is None else header.parent


def _seek_anchor(
    wal: Directory,
    segments: list[tuple[int, str]],
    index: int,
    probe_from: int,
    anchor: SnapshotAnchor,
) -> tuple[int, _Start] | None:
    """Where the journal after damage joins the snapshot ``anchor``; None: nowhere.

    Looks, from ``probe_from`` in segment ``index`` on, for the first of:
    the record of op ``anchor.op`` whose checksum is ``anchor.chain`` (resume
    right after it), the record of op ``anchor.op + 1`` whose parent is
    ``anchor.chain`` (resume at it), or a segment starting at op
    ``anchor.op + 1`` whose header names ``anchor.chain`` (resume after the
    header). Only the segments that can hold those ops are read. Returns the
    segment index and the start.
    """
    after = anchor.op + 1
    for j in range(index, len(segments)):
        first_op, name = segments[j]
        if first_op > after:
            return None
        next_first = segments[j + 1][0] if j + 1 < len(segments) else None
        if next_first is not None and next_first <= anchor.op:
            continue  # neither op can be in this segment
        storage = wal.open(name)
        try:
            if j > index and first_op == after:
                status, header = decode_segment_header(storage.read_at(0, SEGMENT_HEADER_SIZE))
                if (
                    status is HeaderStatus.VALID
                    and header is not None
                    and header.parent == anchor.chain
                ):
                    return j, _Start(SEGMENT_HEADER_SIZE, after, anchor.chain, None)
                return None
            begin = probe_from if j == index else SEGMENT_HEADER_SIZE
            for hit in probe_headers(storage, begin, storage.size()):
                if hit.op == anchor.op and hit.checksum == anchor.chain:
                    return j, _Start(hit.offset + hit.size, after, anchor.chain, hit.batch_first)
                if hit.op == after and hit.parent == anchor.chain:
                    return j, _Start(hit.offset, after, anchor.chain, None)
        finally:
            storage.close()
    return None


def scan_wal(
    wal: Directory,
    *,
    evidence: JournalEvidence,
    on_record: OnRecord | None = None,
    observe: Observer | None = None,
    anchor: AnchorSource | None = None,
    replay: Replay | None = None,
) -> ScanResult:
    """Scan the WAL directory ``wal`` and decide recovery; never writes.

    ``evidence`` is what the superblock says (identity, where the journal
    starts and ends). Raises :class:`CorruptionError` (and its subclasses)
    where the decision table says so. ``on_record`` is called for every
    record that recovery keeps (the journal builds its ring index from it);
    ``observe`` sees every :class:`Case` (for tests and diagnostics).

    ``anchor``, when given, is asked for the newest valid snapshot the first
    time a record-level refusal in :data:`~.decision.COVERED_BY_SNAPSHOT` is
    met. Damage at an op at or below that snapshot's op, followed by a
    journal that chains to the snapshot's checksum, is not refused: the scan
    resumes there and reports it in :attr:`ScanResult.damage`. Anything else
    is refused exactly as without ``anchor``.

    ``replay``, when given, receives the verified bodies above its op in
    the same pass (see :class:`Replay`).
    """
    segments = list_segments(wal, observe)
    misfit = classify_segment_set(tuple(first for first, _ in segments), evidence)
    if misfit is not None:
        case, reason = misfit
        if observe is not None:
            observe(case, wal.path, 0)
        if decide(case) in REFUSALS:
            _raise(case, reason, path=wal.path, offset=None, op=None)
        # A table that does not refuse it goes on with the segments there are.
    infos: list[SegmentInfo] = []
    torn: TornTail | None = None
    end: _ChainEnd | None = None
    root: bytes | None = None
    damage: JournalDamage | None = None
    start: _Start | None = None
    header_covered = False  # resuming in a segment whose damaged header is covered
    carried = 0  # records before the damage, when the scan resumes in the same segment
    i = 0
    while i < len(segments):
        first_op, name = segments[i]
        is_last = i == len(segments) - 1
        path = wal.path_of(name)
        storage = wal.open(name)
        try:
            if is_last:
                # Judge only what the disk holds: pages a failed fsync left
                # cached (clean, never written) are dropped before reading.
                storage.drop_cache()
            outcome = _scan_segment(
                storage,
                name,
                path,
                first_op,
                None if start is not None else end,
                is_last,
                evidence,
                on_record,
                observe,
                start=start,
                may_skip=anchor is not None and damage is None,
                header_covered=header_covered,
                replay=replay,
            )
        finally:
            storage.close()
        start = None
        header_covered = False
        torn = outcome.torn
        if torn is not None and not is_last:
            # The journal ends at the cut: every later segment goes with it.
            torn = _with_later(wal, torn, [n for _, n in segments[i + 1 :]])
        if outcome.info is None:
            break
        if root is None:
            # A covered damaged header names no parent: the oldest segment's
            # is then the one the superblock recorded (or genesis).
            root = outcome.parent
            if root is None:
                root = GENESIS_PARENT if first_op == 1 else evidence.first_parent
        skip = outcome.skippable
        if skip is not None:
            assert anchor is not None
            damage, at, start = _cover(wal, segments, i, path, skip, anchor())
            # Segments passed over are still the journal's (compaction and
            # reads need their first ops); their ops from the damage up to the
            # snapshot are covered by it and not read.
            for k in range(i, at):
                skipped_first, skipped_name = segments[k]
                infos.append(
                    SegmentInfo(
                        wal.path_of(skipped_name),
                        skipped_first,
                        segments[k + 1][0] - 1,
                        outcome.info.size if k == i else 0,
                        outcome.info.records if k == i else 0,
                        0,
                    )
                )
            carried = outcome.info.records if at == i else 0
            header_covered = at == i and skip.offset == 0
            i = at
            continue
        info = outcome.info
        if carried:
            info = attrs.evolve(info, records=info.records + carried)
            carried = 0
        infos.append(info)
        end = outcome.end
        if torn is not None:
            break  # the journal ends at the cut
        i += 1
    return ScanResult(
        segments=infos,
        first_op=infos[0].first_op if infos else 1,
        last_op=end.last_op if end is not None else 0,
        records=sum(info.records for info in infos),
        torn_tail=torn,
        chain_tip=end.tip if end is not None else GENESIS_PARENT,
        last_batch_first=end.batch_first if end is not None else 0,
        root_parent=root if root is not None else GENESIS_PARENT,
        damage=damage,
    )


def _with_later(wal: Directory, torn: TornTail, later: list[str]) -> TornTail:
    """``torn`` extended to the segments after it (their sizes count as cut)."""
    sizes = 0
    for name in later:
        storage = wal.open(name)
        try:
            sizes += storage.size()
        finally:
            storage.close()
    return attrs.evolve(torn, later=tuple(later), bytes=torn.bytes + sizes)


def _cover(
    wal: Directory,
    segments: list[tuple[int, str]],
    index: int,
    path: str,
    skip: _Skippable,
    anchor: SnapshotAnchor | None,
) -> tuple[JournalDamage, int, _Start]:
    """Judge damage a snapshot may cover: where to resume, or raise as the table says."""
    if anchor is None or skip.op > anchor.op:
        # No snapshot, or the damage is above the newest one: refused as always.
        _raise(skip.case, skip.reason, path=path, offset=skip.offset, op=skip.op)
        raise AssertionError("unreachable")  # pragma: no cover
    found = _seek_anchor(wal, segments, index, skip.probe_from, anchor)
    if found is None:
        _raise(
            skip.case,
            f"{skip.reason}; the newest valid snapshot (op {anchor.op}, file {anchor.path}) "
            "would cover it, but the journal after the damage does not chain to the "
            "checksum that snapshot carries",
            path=path,
            offset=skip.offset,
            op=skip.op,
        )
        raise AssertionError("unreachable")  # pragma: no cover
    at, start = found
    damage = JournalDamage(
        path=path,
        offset=skip.offset,
        op=skip.op,
        case=skip.case,
        reason=skip.reason,
        snapshot_op=anchor.op,
        snapshot_path=anchor.path,
        snapshot_chain=anchor.chain,
        resume_segment=segments[at][0],
        resume_offset=start.pos,
    )
    return damage, at, start


def scan_journal(
    data_dir: Directory,
    *,
    observe: Observer | None = None,
    on_record: OnRecord | None = None,
    anchor: AnchorSource | None = None,
) -> ScanResult:
    """Verify the journal in data directory ``data_dir`` without changing anything.

    Synchronous and blocking (call it from a thread under Trio); constant
    memory. Uses the same decision table as :meth:`Journal.open`, so it
    raises :class:`CorruptionError` / :class:`FormatError` exactly where
    ``open`` would, and reports in ``torn_tail`` what ``open`` would cut.
    """
    from .plan import plan_open  # plan builds on this module

    return plan_open(
        data_dir, create=False, observe=observe, on_record=on_record, anchor=anchor
    ).scan


def iter_records(
    data_dir: Directory,
    *,
    from_op: int | None = None,
    to_op: int | None = None,
    resume: JournalDamage | None = None,
    past_damage: bool = False,
) -> Iterator[RecordInfo]:
    """Every record of the journal in ``data_dir`` with op in ``[from_op, to_op]``.

    Read-only, streaming. Each segment is read up to its first invalid
    record, which is reported with its ``status`` reason; listing then
    continues with the next segment. With ``past_damage`` (for a person
    looking at damage), reading goes on in the same segment at the next
    valid record header after the invalid record (its link to the records
    before cannot be checked across the damage). A segment whose header is invalid is
    reported as one entry at offset 0. Segments outside the range are not
    read. This lists; :func:`scan_journal` decides. With ``resume`` (the
    damage a scan found below the newest snapshot), the segment where that
    scan resumed is read from its resume point, as recovery reads it.
    """
    wal = open_wal_dir(data_dir)
    segments = list_segments(wal)
    for i, (first_op, name) in enumerate(segments):
        next_first = segments[i + 1][0] if i + 1 < len(segments) else None
        if to_op is not None and first_op > to_op:
            return
        if from_op is not None and next_first is not None and next_first <= from_op:
            continue
        storage = wal.open(name)
        try:
            start = None
            if resume is not None and resume.resume_segment == first_op:
                start = (resume.resume_offset, resume.snapshot_op + 1)
            yield from _iter_segment(
                storage, wal.path_of(name), first_op, from_op, to_op, start, past_damage
            )
        finally:
            storage.close()


def _iter_segment(
    storage: Storage,
    path: str,
    first_op: int,
    from_op: int | None,
    to_op: int | None,
    start: tuple[int, int] | None = None,
    past_damage: bool = False,
) -> Iterator[RecordInfo]:
    size = storage.size()
    reader = SegmentReader(storage, size)
    if start is not None:
        # Resume where the scan did (after damage, the header's included, that
        # the snapshot covers): the chain is checked from there on.
        pos, expected = start
        tip: bytes | None = None
    else:
        status, header = decode_segment_header(storage.read_at(0, SEGMENT_HEADER_SIZE))
        if header is None or header.first_op != first_op:
            reason = f"segment header {status.value}"
            if header is not None:
                reason = f"segment header says first op {header.first_op}"
            yield RecordInfo(path, 0, first_op, 0, 0, "", reason, None)
            return
        pos = SEGMENT_HEADER_SIZE
        expected = first_op
        tip = header.parent
    while True:
        check = check_record(reader, pos, expected, tip)
        rec = check.header
        if check.kind is CheckKind.END:
            return
        if check.kind is not CheckKind.OK or rec is None:
            bad_op = rec.op if rec is not None else expected
            in_range = (from_op is None or bad_op >= from_op) and (to_op is None or bad_op <= to_op)
            if in_range or not past_damage:  # without past_damage: it is where listing stops
                yield RecordInfo(
                    path,
                    pos,
                    bad_op,
                    rec.batch_first if rec is not None else 0,
                    rec.body_len if rec is not None else 0,
                    rec.checksum.hex() if rec is not None else "",
                    check.reason,
                    None,
                )
            if not past_damage:
                return
            # The next record after the damage (a readable bad header names
            # its op; an unreadable one was the op expected there).
            least = bad_op + 1 if rec is not None else bad_op
            hit = next((h for h in probe_headers(storage, pos + 8, size) if h.op >= least), None)
            if hit is None:
                return
            pos, expected, tip = hit.offset, hit.op, None
            continue
        if to_op is not None and expected > to_op:
            return
        if from_op is None or expected >= from_op:
            assert check.body is not None
            yield RecordInfo(
                path,
                pos,
                expected,
                rec.batch_first,
                rec.body_len,
                rec.checksum.hex(),
                "ok",
                bytes(check.body),
            )
        tip = rec.checksum
        expected += 1
        pos = check.end
