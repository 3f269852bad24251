"""The :class:`Journal`: a durable, checksummed, hash-chained write-ahead log.

One writer appends batches (group commit: one write and one fsync per
batch); readers read single ops or stream ranges; a watermark set by the
snapshot side lets whole segments be compacted. Recovery on open is
:func:`~.scan.scan_wal` plus applying the torn-tail plan it returns.

All blocking I/O runs through :func:`~trio_replica.storage.run_io`, one call
per operation, so a batch pays one thread hop and cancellation can never
split it: an append either did nothing or completed.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from types import TracebackType

import attrs
import trio

from ..errors import (
    BodyTooLargeError,
    ClosedError,
    CorruptionError,
    FatalStorageError,
    InvalidAppendError,
    JournalFull,
    StorageError,
)
from ..layout import LOCK_NAME, WAL_DIR
from ..storage import Directory, DirectoryLike, DirectoryLock, open_directory, run_io
from .decision import Case, SnapshotAnchor
from .errors import CompactedError, InvalidWatermarkError, JournalBusyError, OpNotFoundError
from .plan import JournalPlan, plan_open
from .record import (
    GENESIS_PARENT,
    MAX_BODY_LEN,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    HeaderStatus,
    decode_record_header,
    decode_segment_header,
    encode_batch,
    record_size,
)
from .repair import apply_torn_tail
from .restart import remove_leftovers, restart_superblock, restart_wal
from .ring import RingIndex
from .scan import JournalDamage, Replay, ScanResult, TornTail
from .segment import CHUNK_BYTES, CheckKind, SegmentFile, SegmentReader, check_record, segment_name
from .superblock import Superblock, read_superblock, remove_temp, write_superblock
from .truncate import plan_truncation, truncate_wal

__all__ = ["Entry", "Journal", "JournalRecovery"]

logger = logging.getLogger("trio_replica.journal")


@attrs.frozen
class Entry:
    """One journal entry: its op number and its opaque body."""

    op: int
    body: bytes


@attrs.frozen
class JournalRecovery:
    """What :meth:`Journal.open` found and did.

    ``bytes_truncated`` counts the bytes of a cut torn tail (or of a removed
    last segment whose creation was torn, then ``truncated_offset`` is 0 and
    ``action`` is ``"remove_segment"``). ``reason`` says why.
    """

    segments: int
    records: int
    first_op: int
    last_op: int
    bytes_truncated: int
    truncated_path: str | None
    truncated_offset: int | None
    seconds: float
    action: str | None = None
    reason: str | None = None
    damage: JournalDamage | None = None
    """Damage below the newest valid snapshot that the open did not refuse
    (file, offset, op; see :class:`~.scan.JournalDamage`). None: none."""
    case: Case | None = None
    """The row of the decision table that made the cut (None: no cut)."""


@attrs.define
class JournalStats:
    """Counters of one open journal, since it was opened (read-only for others).

    Updated only by the task that appends, after each step succeeds.
    ``batches`` counts appends; each is ONE write and ONE fdatasync, so it is
    also the number of fdatasyncs of data (segment creation and compaction
    add directory fsyncs, counted in ``segments_created`` and
    ``segments_compacted`` instead). ``sync_seconds`` is the wall time of
    those writes and fdatasyncs in the I/O thread (on a real disk, almost all
    of it is the fdatasync).
    """

    batches: int = 0
    ops: int = 0
    sync_seconds: float = 0.0
    segments_created: int = 0
    segments_compacted: int = 0


class Journal:
    """The write-ahead journal of one data directory. Create it with :meth:`open`.

    Ops are numbered 1, 2, 3, ... without gaps. ``append`` is durable when it
    returns. A failed write or fsync is fatal: every later call raises
    :class:`FatalStorageError` (retrying an fsync can "succeed" after the
    kernel dropped the data).

    One task appends and compacts; two tasks doing so at once get
    :class:`JournalBusyError`. Reads may run alongside.
    """

    def __init__(
        self,
        *,
        data: Directory,
        wal: Directory,
        lock: DirectoryLock | None,
        ring: RingIndex,
        scan: ScanResult,
        current: SegmentFile | None,
        segment_bytes: int,
        max_body_bytes: int,
        recovery: JournalRecovery,
        superblock: Superblock,
    ) -> None:
        self._data = data
        self._superblock = superblock
        self._wal = wal
        self._lock = lock
        self._ring = ring
        self._segment_bytes = segment_bytes
        self._max_body_bytes = max_body_bytes
        self._segments = [info.first_op for info in scan.segments]
        self._current = current
        self._last_op = scan.last_op
        self._tip = scan.chain_tip
        self._watermark = self.first_op - 1
        self._recovery = recovery
        # Damage a snapshot covers: reads locate ops at or after the resume
        # point from there, never by walking over the damage.
        self._damage = scan.damage
        self.stats = JournalStats()
        """Counters since open (see :class:`JournalStats`)."""
        self._closed = False
        self._failure: BaseException | None = None
        self._busy: str | None = None

    # --- opening ------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: DirectoryLike,
        *,
        slot_count: int = 1024,
        segment_bytes: int = 64 * 2**20,
        max_body_bytes: int = 4 * 2**20,
        lock: bool = True,
        create: bool = True,
        snapshot_anchor: Callable[[Directory], SnapshotAnchor | None] | None = None,
        replay: Callable[[Directory], Replay | None] | None = None,
        before_cut: Callable[[Directory, TornTail, int], None] | None = None,
    ) -> Journal:
        """Open (and recover) the journal in data directory ``directory``.

        Takes ``<data>/LOCK`` when ``lock`` is true (another holder:
        :class:`~trio_replica.errors.DirectoryLockedError`). Creates
        ``<data>/wal`` when missing if ``create`` is true, else raises
        :class:`StorageError`. Scans every segment; cuts a provable torn tail
        (reported in :attr:`recovery` and logged as a warning); raises
        :class:`CorruptionError` / :class:`FormatError` for anything else.

        ``snapshot_anchor(data)`` (blocking; called only when the scan meets
        damage a snapshot may cover) returns the newest valid snapshot's op,
        chain checksum and file: damage at or below it, followed by a journal
        that chains to it, is not refused but reported in
        :attr:`JournalRecovery.damage` and logged as a warning (invariant 3,
        docs/invariants.md).

        ``replay(data)`` (blocking) is called once the lock is held and
        before the scan; the :class:`~.scan.Replay` it returns receives every
        verified body above its op during the scan, from the bytes the scan
        verified: recovery's one pass over the journal (each record read and
        verified once). It runs in the open's I/O thread, and the open may
        still refuse the journal after bodies were given.

        ``before_cut(data, torn, last_op)`` (blocking) is called, holding the
        lock, before a torn tail is cut (``last_op``: where the journal will
        end): a cluster replica records there what the cut bytes show it
        held (``trio_replica.cluster.salvage``).
        """
        if slot_count < 1:
            raise ValueError(f"slot_count must be at least 1, got {slot_count}")
        if not 0 <= max_body_bytes <= MAX_BODY_LEN:
            raise ValueError(f"max_body_bytes must be in [0, {MAX_BODY_LEN}]")
        if segment_bytes < SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE:
            raise ValueError(f"segment_bytes is too small: {segment_bytes}")
        started = time.perf_counter()
        data = await open_directory(directory, create=create)
        ring = RingIndex(slot_count)

        def recover() -> tuple[Directory, JournalPlan, SegmentFile | None, DirectoryLock | None]:
            held = data.lock(LOCK_NAME) if lock else None
            try:
                # Plan: everything is judged before a byte changes, so a
                # refused open leaves the directory exactly as it was.
                anchor = None if snapshot_anchor is None else partial(snapshot_anchor, data)
                bodies = None if replay is None else replay(data)
                plan = plan_open(
                    data, create=create, on_record=ring.record, anchor=anchor, replay=bodies
                )
                # Act. The superblock comes first: a wal/ never exists
                # without the identity its segments must carry.
                if plan.write_superblock:
                    write_superblock(data, plan.superblock)
                if plan.remove_temp:
                    remove_temp(data)
                wal = data.subdir(WAL_DIR, create=plan.create_wal)
                # Segments of a journal restarted after an installed snapshot.
                remove_leftovers(wal, plan.remove_leftovers)
                scan = plan.scan
                if scan.torn_tail is not None:
                    if before_cut is not None:
                        before_cut(data, scan.torn_tail, scan.last_op)
                        # It may have replaced the superblock (never its
                        # journal evidence): carry on from the new one.
                        plan = attrs.evolve(
                            plan, superblock=read_superblock(data) or plan.superblock
                        )
                    apply_torn_tail(wal, scan.torn_tail)
                current = None
                if scan.segments:
                    last = scan.segments[-1]
                    current = SegmentFile.open(wal, last.first_op, last.valid_bytes)
                    # The recovered tail was read from the disk (the scan
                    # dropped the cached pages first), but bytes a killed
                    # process wrote and never fsynced may still be only in
                    # the page cache: make them durable before anything new
                    # is acknowledged on top of them.
                    current.storage.sync()
                    wal.sync()
                return wal, plan, current, held
            except BaseException:
                if held is not None:
                    held.release()
                raise

        try:
            wal, plan, current, held = await run_io(data, recover)
        except OSError as exc:
            raise StorageError(
                f"cannot open the journal in {data.path}: {exc}",
                path=getattr(exc, "filename", None) or data.path,
                stage="open",
            ) from exc
        scan = plan.scan
        torn = scan.torn_tail
        recovery = JournalRecovery(
            segments=len(scan.segments),
            records=scan.records,
            first_op=scan.first_op,
            last_op=scan.last_op,
            bytes_truncated=torn.bytes if torn is not None else 0,
            truncated_path=torn.path if torn is not None else None,
            truncated_offset=torn.offset if torn is not None else None,
            seconds=time.perf_counter() - started,
            action=torn.action if torn is not None else None,
            reason=torn.reason if torn is not None else None,
            case=torn.case if torn is not None else None,
            damage=scan.damage,
        )
        if scan.damage is not None:
            logger.warning("journal recovery: %s", scan.damage.describe())
        if torn is not None:
            # Loud on purpose: this also covers the documented limit (damage to
            # the last batch after its ack looks exactly like a torn write).
            logger.warning(
                "journal recovery: %s %s at offset %d, %d bytes dropped (%s); "
                "the journal now ends at op %d",
                "removed" if torn.action == "remove_segment" else "truncated",
                torn.path,
                torn.offset,
                torn.bytes,
                torn.reason,
                scan.last_op,
            )
        return cls(
            data=data,
            wal=wal,
            lock=held,
            ring=ring,
            scan=scan,
            current=current,
            segment_bytes=segment_bytes,
            max_body_bytes=max_body_bytes,
            recovery=recovery,
            superblock=plan.superblock,
        )

    # --- state ----------------------------------------------------------------

    @property
    def last_op(self) -> int:
        """The last durable op (0 when the journal is empty)."""
        return self._last_op

    @property
    def first_op(self) -> int:
        """The lowest op still on disk (1 when nothing was compacted)."""
        return self._segments[0] if self._segments else self._last_op + 1

    @property
    def watermark(self) -> int:
        """The watermark: ops up to it are covered by a snapshot (initially ``first_op - 1``)."""
        return self._watermark

    @property
    def slot_count(self) -> int:
        """Size of the ring index: at most this many un-snapshotted ops."""
        return self._ring.slot_count

    @property
    def segment_bytes(self) -> int:
        """The size at which segments roll."""
        return self._segment_bytes

    @property
    def max_body_bytes(self) -> int:
        """The largest body ``append`` accepts."""
        return self._max_body_bytes

    @property
    def remaining_capacity(self) -> int:
        """How many ops can be appended before an un-snapshotted ring slot would be reused."""
        return max(0, self._ring.slot_count - (self._last_op - self._watermark))

    @property
    def recovery(self) -> JournalRecovery:
        """What :meth:`open` found and did."""
        return self._recovery

    @property
    def directory_id(self) -> bytes:
        """The data directory's 16-byte identity (from its superblock)."""
        return self._superblock.directory_id

    @property
    def superblock(self) -> Superblock:
        """The superblock as last written (identity and journal-end evidence)."""
        return self._superblock

    @property
    def segment_first_ops(self) -> tuple[int, ...]:
        """The first op of every segment on disk, oldest first."""
        return tuple(self._segments)

    @property
    def path(self) -> str:
        """The journal's ``wal`` directory."""
        return self._wal.path

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    @property
    def failed(self) -> bool:
        """Whether a write or fsync failed (the journal then refuses all use)."""
        return self._failure is not None

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise FatalStorageError(
                "the journal failed earlier (a write or fsync error) and refuses further use; "
                "reopen it to recover what is durable",
                path=self._wal.path,
                stage="failed",
            ) from self._failure
        if self._closed:
            raise ClosedError(f"the journal in {self._wal.path} is closed")

    @contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        if self._busy is not None:
            raise JournalBusyError(
                f"journal {what}() called while another task is in {self._busy}(); "
                "the journal has a single writer"
            )
        self._busy = what
        try:
            yield
        finally:
            self._busy = None

    def _fail(self, exc: OSError, stage: str, path: str) -> FatalStorageError:
        self._failure = exc
        return FatalStorageError(
            f"journal {stage} failed: {exc}; the journal refuses further use. The failed "
            "batch's outcome is unknown: none of its ops was acknowledged, and after a "
            "restart they may or may not be in the journal (the segment was cut back to "
            "its last durable size where that was possible)",
            path=path,
            stage=stage,
        )

    # --- writing ----------------------------------------------------------------

    def _validate(self, entries: Sequence[Entry]) -> list[bytes]:
        """Check a batch completely before anything is written; return its bodies."""
        if not isinstance(entries, Sequence) or isinstance(entries, (bytes, str)):
            raise InvalidAppendError(f"append() takes a sequence of Entry, got {type(entries)}")
        if not entries:
            raise InvalidAppendError("append() of an empty batch")
        expected = self._last_op + 1
        limit = self._max_body_bytes
        bodies: list[bytes] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Entry):
                raise InvalidAppendError(f"batch item {i} is a {type(entry).__name__}, not Entry")
            op, body = entry.op, entry.body
            if op != expected + i or type(op) is not int:
                raise InvalidAppendError(
                    f"batch item {i} has op {op!r}, expected {expected + i} "
                    f"(ops continue from last_op {self._last_op} without gaps)"
                )
            if type(body) is not bytes:
                raise InvalidAppendError(f"op {op}: body is a {type(body).__name__}, not bytes")
            if len(body) > limit:
                raise BodyTooLargeError(
                    f"op {op}: body of {len(body)} bytes exceeds max_body_bytes={limit}",
                    op=op,
                    size=len(body),
                    limit=limit,
                )
            bodies.append(body)
        self._check_capacity(len(entries))
        return bodies

    async def append(self, entries: Sequence[Entry]) -> None:
        """Append a batch durably: ONE write and ONE fdatasync for all of it.

        ``entries`` must continue from :attr:`last_op` without gaps. Bad input
        (:class:`InvalidAppendError`, :class:`BodyTooLargeError`,
        :class:`JournalFull`) changes nothing. When this returns, the batch
        is durable. If the current segment already holds records and the
        batch does not fit in ``segment_bytes``, a new segment is created
        (durably) first; a batch never spans segments, so one larger than
        ``segment_bytes`` makes its segment overshoot the limit.
        """
        self._check_usable()
        with self._exclusive("append"):
            await self._append(self._validate(entries))

    async def append_bodies(self, first_op: int, bodies: Sequence[bytes]) -> None:
        """:meth:`append` of ops ``first_op, first_op + 1, ...`` with these bodies.

        The same batch, checks and guarantees, without an :class:`Entry` per
        op: for a writer that holds its batch as a column of bodies (the
        replica's). ``first_op`` must be :attr:`last_op` ``+ 1``.
        """
        self._check_usable()
        with self._exclusive("append"):
            await self._append(self._validate_bodies(first_op, bodies))

    def _validate_bodies(self, first_op: int, bodies: Sequence[bytes]) -> Sequence[bytes]:
        """:meth:`_validate` for a column of bodies (whole-column checks)."""
        if not isinstance(bodies, Sequence) or isinstance(bodies, (bytes, str)):
            raise InvalidAppendError(f"append_bodies() takes a sequence of bytes, got {bodies!r}")
        if not bodies:
            raise InvalidAppendError("append() of an empty batch")
        if type(first_op) is not int or first_op != self._last_op + 1:
            raise InvalidAppendError(
                f"batch starts at op {first_op!r}, expected {self._last_op + 1} "
                f"(ops continue from last_op {self._last_op} without gaps)"
            )
        if not all(type(body) is bytes for body in bodies):
            i = next(i for i, body in enumerate(bodies) if type(body) is not bytes)
            raise InvalidAppendError(
                f"op {first_op + i}: body is a {type(bodies[i]).__name__}, not bytes"
            )
        limit = self._max_body_bytes
        if max(map(len, bodies)) > limit:
            i = next(i for i, body in enumerate(bodies) if len(body) > limit)
            raise BodyTooLargeError(
                f"op {first_op + i}: body of {len(bodies[i])} bytes exceeds max_body_bytes={limit}",
                op=first_op + i,
                size=len(bodies[i]),
                limit=limit,
            )
        self._check_capacity(len(bodies))
        return bodies

    def _check_capacity(self, count: int) -> None:
        if count > self.remaining_capacity:
            raise JournalFull(
                f"appending {count} ops would overwrite un-snapshotted ring slots "
                f"(last_op {self._last_op}, watermark {self._watermark}, "
                f"slot_count {self._ring.slot_count}, room for {self.remaining_capacity})",
                last_op=self._last_op,
                watermark=self._watermark,
                slot_count=self._ring.slot_count,
            )

    async def _append(self, bodies: Sequence[bytes]) -> None:
        """Write validated ``bodies`` as the next ops (the caller holds ``_exclusive``)."""
        first = self._last_op + 1
        parent = self._tip
        batch = encode_batch(first, parent, bodies)
        current = self._current
        roll = current is None or (
            current.size > SEGMENT_HEADER_SIZE
            and current.size + len(batch.data) > self._segment_bytes
        )
        wal = self._wal
        data = self._data
        block = self._superblock
        new_block = None
        if roll:
            # Journal-end evidence: the superblock names the newest segment,
            # written after the segment itself is durable (so a segment it
            # names always has a whole header).
            new_block = block.next(
                wal_head_op=first,
                wal_first_op=block.wal_first_op or first,
                wal_first_parent=block.wal_first_parent if block.wal_first_op else parent,
            )

        timing: list[float] = []

        def write() -> tuple[SegmentFile, int]:
            segment = current
            if segment is None or roll:
                segment = SegmentFile.create(wal, first, parent, block.directory_id)
            try:
                if new_block is not None:
                    write_superblock(data, new_block)
                began = time.perf_counter()
                offset = segment.write_batch(batch.data)
                timing.append(time.perf_counter() - began)
            except BaseException:
                if segment is not current:
                    segment.close()
                raise
            if segment is not current and current is not None:
                current.close()  # sealed: later reads open their own handle
            return segment, offset

        try:
            segment, offset = await run_io(wal, write)
        except OSError as exc:
            path = current.path if current is not None and not roll else wal.path
            raise self._fail(exc, "append", path) from exc
        # Only now, after the fsync returned, does in-memory state move.
        if new_block is not None:
            self._superblock = new_block
        if segment is not current:
            self._segments.append(segment.first_op)
            self._current = segment
            self.stats.segments_created += 1
            logger.debug("new segment %s from op %d", segment.path, segment.first_op)
        self.stats.batches += 1
        self.stats.ops += len(bodies)
        self.stats.sync_seconds += sum(timing)
        offsets = batch.offsets if offset == 0 else [offset + rel for rel in batch.offsets]
        self._ring.put_batch(first, segment.first_op, offsets, batch.body_lens)
        self._last_op = first + len(bodies) - 1
        self._tip = batch.tip

    async def truncate_after(self, keep: int) -> None:
        """Cut every op after ``keep`` (a cluster replica replacing its
        uncommitted suffix; the next :meth:`append` continues at ``keep + 1``).

        ``keep`` must be in [:attr:`watermark`, :attr:`last_op`]
        (:class:`InvalidAppendError` otherwise; nothing changes). The steps and
        what a crash at each leaves are in :mod:`.truncate`. A failed write
        or fsync is fatal like in :meth:`append`.
        """
        self._check_usable()
        if type(keep) is not int or not self._watermark <= keep <= self._last_op:
            raise InvalidAppendError(
                f"truncate_after({keep!r}): must be in [watermark {self._watermark}, "
                f"last_op {self._last_op}]"
            )
        if keep == self._last_op:
            return
        tip = await self.checksum_at(keep)
        with self._exclusive("truncate_after"):
            plan = plan_truncation(tuple(self._segments), keep, self._superblock)
            slot = self._ring.get(keep + 1)
            current = self._current
            wal, data = self._wal, self._data

            def cut() -> SegmentFile:
                if plan.segment == keep + 1:
                    offset = SEGMENT_HEADER_SIZE
                elif slot is not None and slot[0] == plan.segment:
                    offset = slot[1]
                else:
                    reader, path = self._open_segment(plan.segment, keep + 1)
                    try:
                        offset = self._locate(reader, path, plan.segment, keep + 1)
                    finally:
                        reader.storage.close()
                if current is not None:
                    current.close()
                truncate_wal(data, wal, plan, offset)
                return SegmentFile.open(wal, plan.segment, offset)

            self._current = None
            try:
                segment = await run_io(wal, cut)
            except OSError as exc:
                raise self._fail(exc, "truncate", wal.path) from exc
            if plan.superblock is not None:
                self._superblock = plan.superblock
            self._segments = [first for first in self._segments if first <= plan.segment]
            self._current = segment
            self._last_op = keep
            self._tip = tip

    async def restart_after(self, base: int, parent: bytes) -> None:
        """Drop every op and restart the journal at ``base + 1``, continuing the
        hash chain from ``parent`` (a cluster replica that installed a snapshot
        at ``base`` fetched from a peer; ``parent`` is the chain checksum that
        snapshot carries, so it fits this journal like a local one).

        Afterwards :attr:`first_op` is ``base + 1``, :attr:`last_op` and
        :attr:`watermark` are ``base``, and the next :meth:`append` starts at
        ``base + 1``. ``base`` must be at least 1 and :attr:`first_op` ``- 1`` (a
        restart never goes back before what the journal already dropped;
        :class:`InvalidAppendError` otherwise, nothing changes). The steps and
        what a crash at each leaves are in :mod:`.restart`: the old journal
        whole, or the restarted one, never a mix. A failed write or fsync is
        fatal like in :meth:`append`.
        """
        self._check_usable()
        if type(base) is not int or base < max(1, self.first_op - 1):
            raise InvalidAppendError(
                f"restart_after({base!r}): must be at least 1 and first_op - 1 "
                f"({self.first_op - 1})"
            )
        if type(parent) is not bytes or len(parent) != len(GENESIS_PARENT):
            raise InvalidAppendError("restart_after: parent must be a 16-byte chain checksum")
        with self._exclusive("restart_after"):
            block = restart_superblock(self._superblock, base, parent)
            current = self._current
            wal, data = self._wal, self._data

            def restart() -> None:
                if current is not None:
                    current.close()
                restart_wal(data, wal, block)

            self._current = None
            try:
                await run_io(wal, restart)
            except OSError as exc:
                raise self._fail(exc, "restart", wal.path) from exc
            self._superblock = block
            self._segments = []
            self._ring = RingIndex(self._ring.slot_count)
            self._last_op = base
            self._watermark = base
            self._tip = parent
            self._damage = None
            logger.info(
                "journal restarted at op %d (a snapshot at op %d was installed)", base + 1, base
            )

    async def update_superblock(self, **changes: object) -> Superblock:
        """Replace the superblock with ``changes`` applied (fields of
        :class:`~.superblock.Superblock`: a cluster replica's identity and
        durable view state), atomically and durably; return it. Serialized
        with appends (segment rolls write the superblock too). A failure is
        fatal like in :meth:`append`."""
        self._check_usable()
        with self._exclusive("update_superblock"):
            block = self._superblock.next(**changes)
            data = self._data
            try:
                await run_io(data, lambda: write_superblock(data, block))
            except OSError as exc:
                raise self._fail(exc, "superblock", data.path) from exc
            self._superblock = block
            return block

    def set_watermark(self, op: int) -> None:
        """Move the watermark: ops up to ``op`` are covered by a durable snapshot.

        It only moves forward and never beyond :attr:`last_op`
        (:class:`InvalidWatermarkError`). Frees ring capacity; lets
        :meth:`compact` delete the segments it covers.
        """
        self._check_usable()
        if type(op) is not int or op < self._watermark or op > self._last_op:
            raise InvalidWatermarkError(
                f"snapshot op {op!r} must be in [{self._watermark}, last_op {self._last_op}]",
                op=op,
                watermark=self._watermark,
                last_op=self._last_op,
            )
        self._watermark = op

    async def compact(self, through: int | None = None) -> int:
        """Delete, oldest first, every whole segment the watermark covers
        (and, with ``through``, whose ops are all at most ``through``: a
        cluster replica keeps a retention window below its checkpoint).

        The last segment is never deleted. The wal directory is fsynced after
        each unlink, so a crash at any point leaves a contiguous suffix of
        segments (never a hole). Returns how many segments were deleted.
        """
        self._check_usable()
        bound = self._watermark if through is None else min(through, self._watermark)
        with self._exclusive("compact"):
            covered: list[int] = []
            for i in range(len(self._segments) - 1):
                if self._segments[i + 1] - 1 > bound:
                    break
                covered.append(self._segments[i])
            if not covered:
                return 0
            wal = self._wal
            data = self._data
            new_first = self._segments[len(covered)]
            block = self._superblock
            written: list[Superblock] = []
            done = 0

            def delete() -> None:
                nonlocal done
                # The superblock moves the journal's start first: a crash
                # before the unlinks leaves extra old segments (harmless), and
                # after it a lost leading segment is detected.
                storage = wal.open(segment_name(new_first))
                try:
                    head = storage.read_at(0, SEGMENT_HEADER_SIZE)
                finally:
                    storage.close()
                status, header = decode_segment_header(head)
                if header is None or status is not HeaderStatus.VALID:
                    raise OSError(f"segment {segment_name(new_first)} header became unreadable")
                new_block = block.next(wal_first_op=new_first, wal_first_parent=header.parent)
                write_superblock(data, new_block)
                written.append(new_block)
                for first_op in covered:
                    wal.unlink(segment_name(first_op))
                    wal.sync()
                    done += 1

            try:
                await run_io(wal, delete)
            except OSError as exc:
                if written:
                    self._superblock = written[0]
                del self._segments[:done]
                raise self._fail(exc, "compact", wal.path_of(segment_name(covered[done]))) from exc
            self._superblock = written[0]
            del self._segments[: len(covered)]
            self.stats.segments_compacted += len(covered)
            logger.info(
                "compacted %d segment(s): ops up to %d are covered by snapshots; "
                "the journal now starts at op %d",
                len(covered),
                bound,
                self._segments[0],
            )
            return len(covered)

    # --- reading ------------------------------------------------------------------

    def _check_op(self, op: int) -> None:
        if type(op) is not int:
            raise TypeError(f"op must be an int, got {type(op).__name__}")
        if op < self.first_op and op >= 1:
            raise CompactedError(
                f"op {op} was compacted (the journal starts at op {self.first_op}); "
                "it is covered by a snapshot",
                op=op,
                first_op=self.first_op,
                last_op=self._last_op,
            )
        if op < 1 or op > self._last_op:
            raise OpNotFoundError(
                f"op {op} is not in the journal (ops {self.first_op}..{self._last_op})",
                op=op,
                first_op=self.first_op,
                last_op=self._last_op,
            )

    def _segment_of(self, op: int) -> int:
        index = bisect_right(self._segments, op) - 1
        if index < 0:
            raise CompactedError(
                f"op {op} was compacted (the journal starts at op {self.first_op})",
                op=op,
                first_op=self.first_op,
                last_op=self._last_op,
            )
        return self._segments[index]

    def _open_segment(self, first_op: int, op: int) -> tuple[SegmentReader, str]:
        name = segment_name(first_op)
        try:
            storage = self._wal.open(name)
        except FileNotFoundError:
            raise CompactedError(
                f"op {op} was compacted while being read",
                op=op,
                first_op=self.first_op,
                last_op=self._last_op,
            ) from None
        return SegmentReader(storage, storage.size()), self._wal.path_of(name)

    def _locate(self, reader: SegmentReader, path: str, first_op: int, op: int) -> int:
        """The offset of ``op`` in a segment, walking the (checksummed) headers.

        In the segment where the scan resumed after damage a snapshot covers,
        ops from the resume point on are found from there.
        """
        pos = SEGMENT_HEADER_SIZE
        expected = first_op
        damage = self._damage
        if damage is not None and damage.resume_segment == first_op and op > damage.snapshot_op:
            pos, expected = damage.resume_offset, damage.snapshot_op + 1
        while expected < op:
            view = reader.get(pos, RECORD_HEADER_SIZE)
            header = decode_record_header(view) if view is not None else None
            if header is None or header.op != expected:
                raise CorruptionError(
                    f"cannot locate op {op}: no valid record for op {expected}",
                    path=path,
                    offset=pos,
                    op=expected,
                )
            pos += header.size
            expected += 1
        return pos

    async def read(self, op: int) -> Entry:
        """The entry of ``op``, verified against its checksums.

        Recent ops (the last ``slot_count``) are found through the ring index;
        older ones by scanning their segment. An op below :attr:`first_op`
        raises :class:`CompactedError`; one not yet written
        :class:`OpNotFoundError`.
        """
        self._check_usable()
        self._check_op(op)
        seg_first = self._segment_of(op)
        slot = self._ring.get(op)

        def read() -> Entry:
            reader, path = self._open_segment(seg_first, op)
            try:
                if slot is not None and slot[0] == seg_first:
                    offset = slot[1]
                    # One read of exactly the record.
                    reader = SegmentReader(reader.storage, reader.size, record_size(slot[2]))
                else:
                    offset = self._locate(reader, path, seg_first, op)
                check = check_record(reader, offset, op, None)
                if check.kind is not CheckKind.OK or check.body is None:
                    raise CorruptionError(
                        f"reading op {op}: {check.reason or check.kind.value}",
                        path=path,
                        offset=offset,
                        op=op,
                    )
                return Entry(op, bytes(check.body))
            finally:
                reader.storage.close()

        try:
            return await run_io(self._wal, read)
        except OSError as exc:
            raise StorageError(
                f"reading op {op} failed: {exc}", path=self._wal.path, stage="read"
            ) from exc

    async def location_of(self, op: int) -> tuple[str, int]:
        """The file and the offset of ``op``'s record (for messages that name them).

        Raises like :meth:`read` for an op that is not in the journal.
        """
        self._check_usable()
        self._check_op(op)
        seg_first = self._segment_of(op)
        slot = self._ring.get(op)

        def find() -> tuple[str, int]:
            reader, path = self._open_segment(seg_first, op)
            try:
                if slot is not None and slot[0] == seg_first:
                    return path, slot[1]
                return path, self._locate(reader, path, seg_first, op)
            finally:
                reader.storage.close()

        return await run_io(self._wal, find)

    async def checksum_at(self, op: int) -> bytes:
        """The chain checksum at ``op``: the checksum of record ``op``.

        For ``op == 0`` the chain's root (``GENESIS_PARENT``); for
        ``first_op - 1`` the parent named by the oldest segment's header
        (the chain checksum the compacted journal starts from). This is what
        a snapshot at ``op`` carries, binding it to this journal. Raises
        :class:`CompactedError` below that and :class:`OpNotFoundError`
        beyond :attr:`last_op`.
        """
        self._check_usable()
        if op == 0 and self.first_op == 1:
            return GENESIS_PARENT
        if not self._segments and op == self._last_op:
            # Empty (restarted, or nothing appended yet): the chain's tip.
            return self._tip
        damage = self._damage
        if damage is not None and op == damage.snapshot_op:
            # The scan proved the journal after the damage chains to it.
            return damage.snapshot_chain
        if op == self.first_op - 1:
            seg_first = self._segments[0]

            def read_parent() -> bytes:
                reader, path = self._open_segment(seg_first, op + 1)
                try:
                    status, header = decode_segment_header(
                        reader.storage.read_at(0, SEGMENT_HEADER_SIZE)
                    )
                finally:
                    reader.storage.close()
                if header is None or status is not HeaderStatus.VALID:
                    raise CorruptionError(
                        "segment header became unreadable", path=path, offset=0, op=op + 1
                    )
                return header.parent

            return await run_io(self._wal, read_parent)
        self._check_op(op)
        seg_first = self._segment_of(op)
        slot = self._ring.get(op)

        def read_header() -> bytes:
            reader, path = self._open_segment(seg_first, op)
            try:
                if slot is not None and slot[0] == seg_first:
                    offset = slot[1]
                    # One read of exactly the header, not a chunk.
                    reader = SegmentReader(reader.storage, reader.size, RECORD_HEADER_SIZE)
                else:
                    offset = self._locate(reader, path, seg_first, op)
                view = reader.get(offset, RECORD_HEADER_SIZE)
                header = decode_record_header(view) if view is not None else None
                if header is None or header.op != op:
                    raise CorruptionError(
                        f"no valid record header for op {op}", path=path, offset=offset, op=op
                    )
                return header.checksum
            finally:
                reader.storage.close()

        try:
            return await run_io(self._wal, read_header)
        except OSError as exc:
            raise StorageError(
                f"reading the header of op {op} failed: {exc}", path=self._wal.path, stage="read"
            ) from exc

    def _read_chunk(
        self, seg_first: int, pos: int | None, op: int, tip: bytes | None, limit: int
    ) -> tuple[list[Entry], int, bytes | None, bool]:
        """Decode about ``CHUNK_BYTES`` of entries from ``op`` on (runs in ``run_io``).

        Returns the entries, where the next one starts, the chain tip and
        whether the segment's end was reached.
        """
        reader, path = self._open_segment(seg_first, op)
        try:
            start = pos if pos is not None else self._locate(reader, path, seg_first, op)
            at, expected, parent = start, op, tip
            out: list[Entry] = []
            while expected <= limit and at - start < CHUNK_BYTES:
                check = check_record(reader, at, expected, parent)
                if check.kind is CheckKind.END:
                    if not out:
                        raise CorruptionError(
                            f"op {expected} is missing from its segment",
                            path=path,
                            offset=at,
                            op=expected,
                        )
                    return out, at, parent, True
                if check.kind is not CheckKind.OK:
                    raise CorruptionError(
                        f"reading op {expected}: {check.reason}", path=path, offset=at, op=expected
                    )
                assert check.header is not None and check.body is not None
                out.append(Entry(expected, bytes(check.body)))
                parent = check.header.checksum
                expected += 1
                at = check.end
            return out, at, parent, at >= reader.size
        finally:
            reader.storage.close()

    async def entries(self, after: int = 0) -> AsyncIterator[Entry]:
        """Every entry with op greater than ``after``, in order (``async for``).

        Streams from disk about ``CHUNK_BYTES`` at a time, verifying checksums
        and the chain, so memory is flat however long the journal is. Entries
        appended while iterating are included. ``after`` below
        ``first_op - 1`` raises :class:`CompactedError`.
        """
        self._check_usable()
        if type(after) is not int or after < 0:
            raise ValueError(f"after must be a non-negative int, got {after!r}")
        if after < self.first_op - 1:
            raise CompactedError(
                f"entries after op {after} were compacted (the journal starts at op "
                f"{self.first_op})",
                op=after + 1,
                first_op=self.first_op,
                last_op=self._last_op,
            )
        op = after + 1
        seg_first: int | None = None
        pos: int | None = None
        tip: bytes | None = None
        while True:
            self._check_usable()
            # Every record up to ``limit`` was fully written and synced before
            # last_op moved, so reading past it (a concurrent append) is never
            # mistaken for a torn record.
            limit = self._last_op
            if op > limit:
                return
            if seg_first is None:
                seg_first = self._segment_of(op)
                slot = self._ring.get(op)
                pos = slot[1] if slot is not None and slot[0] == seg_first else None
            try:
                out, pos, tip, segment_done = await run_io(
                    self._wal, partial(self._read_chunk, seg_first, pos, op, tip, limit)
                )
            except OSError as exc:
                raise StorageError(
                    f"reading entries from op {op} failed: {exc}",
                    path=self._wal.path,
                    stage="read",
                ) from exc
            for entry in out:
                yield entry
            op += len(out)
            if segment_done:
                seg_first = None

    # --- closing ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the segment file and release the lock. Idempotent.

        Works after a fatal error too (to release the lock); raises
        :class:`JournalBusyError` while another task is appending.
        """
        if self._closed:
            return
        if self._busy is not None:
            raise JournalBusyError(f"journal aclose() while another task is in {self._busy}()")
        self._closed = True
        current, held = self._current, self._lock
        self._current = None
        self._lock = None

        def close() -> None:
            try:
                if current is not None:
                    current.close()
            finally:
                if held is not None:
                    held.release()

        # Shielded: a cancelled close must still release the lock and the file.
        with trio.CancelScope(shield=True):
            await run_io(self._data, close)

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "failed" if self.failed else "closed" if self._closed else "open"
        return (
            f"<Journal {self._wal.path} ops {self.first_op}..{self._last_op} "
            f"watermark {self._watermark} {state}>"
        )
