"""Protocol-aware recovery of a cluster replica's journal: damage is repaired, not refused.

A single replica refuses to open a journal with a bad record anywhere but in
its last batch: nobody could give the data back. A cluster replica can get
it back from its peers (a committed op is durable on a quorum), so for the
cases of :data:`~trio_replica.journal.decision.REPAIRED_FROM_PEERS` (the
``REPAIR_FROM_PEERS`` action of the decision table's cluster column) its
open goes on, when the damage is above the replica's checkpoint (below it
the open refuses, as a single replica's does):

1. the damage is judged exactly as a single replica's open judges it (the
   same scan, the same table, its cluster column); anything outside that
   set still refuses, unchanged;
2. the bytes from the damage on are read for evidence of what was durable
   here: every valid record header (its op) and, inside each, the prepare
   header that starts the record's body, which verifies by its own
   checksum even when the body does not;
3. the superblock's ``lost_to`` is raised to the highest op seen (atomic
   replace, before anything is cut), every file about to change is copied
   to ``<name>.broken`` (durably), and the journal is cut at the damage
   (``repair_journal`` with ``force``: the superblock's journal-end evidence
   first, then later segments newest first, then the damaged one);
4. the replica starts with the journal up to the damage and reports ops
   from there to the highest op seen as *lost*
   (:attr:`~.core.RecoveredJournal.lost_to`, with the prepare headers read):
   it fetches them from its peers, and until it holds them durably again a
   view change never counts them as a nack (they may have been acked).

A torn tail (the decision table's ``TRUNCATE``) is cut by the open itself
as for any replica, but first :func:`_record_torn_tail` raises ``lost_to``
over the ops the cut bytes show: a single copy cannot tell a torn, never
acknowledged batch from the last acknowledged batch rotting, so a cluster
replica never nacks either until it holds them again.

A cut is crash-safe at every step: a crash before it leaves the damage (the
next open judges it again), and after it a valid, shorter journal whose
superblock still says which ops were lost (``lost_to``, durable before the
cut), so a second crash before the repair never turns them into nacks. The
superblock's ``lost_to`` goes back to 0 once the journal holds ops up to it
again (:func:`clear_lost`). The prepare headers read from the cut bytes are
not kept across a second crash: an op lost without a known header makes the
replica sit out view changes until repair or a start_view supplies it.
"""

from __future__ import annotations

import logging
from functools import partial

import attrs

from ..errors import CorruptionError
from ..journal import Journal
from ..journal.decision import Action, Case, Replication, decide
from ..journal.record import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE
from ..journal.repair import forced_cut_refusal, repair_journal
from ..journal.scan import TornTail, list_segments, open_wal_dir, scan_journal
from ..journal.segment import probe_headers
from ..journal.superblock import read_superblock, write_superblock
from ..layout import LOCK_NAME
from ..storage import Directory, DirectoryLike, open_directory, run_io
from .header import HEADER_SIZE, PrepareHeader, decode_header

__all__ = ["Salvage", "clear_lost", "open_cluster_journal"]

logger = logging.getLogger("trio_replica.cluster")

BROKEN_SUFFIX = ".broken"


@attrs.frozen
class Salvage:
    """What protocol-aware recovery cut from a cluster replica's journal.

    ``case``/``reason``/``path``/``offset``/``op``: the damage, as the scan
    judged it (``op`` the first op cut). ``lost_to``: the highest op seen in
    the bytes cut (at least ``op``). ``headers``: the prepare headers read
    from them, each verified by its own checksum. ``broken_copies``: the
    evidence kept.
    """

    case: Case
    reason: str
    path: str
    offset: int | None
    op: int
    lost_to: int
    headers: tuple[PrepareHeader, ...]
    broken_copies: tuple[str, ...]

    def describe(self) -> str:
        """One sentence for the log."""
        if not self.broken_copies:
            return (
                f"a torn tail at op {self.op} ({self.path}, offset {self.offset}) was cut: "
                f"{self.reason}. It may be damage to the last acknowledged batch, so ops "
                f"{self.op}..{self.lost_to} are repaired from the other replicas and never "
                "counted as a nack meanwhile"
            )
        return (
            f"journal damage at op {self.op} ({self.path}, offset {self.offset}): "
            f"{self.reason}. The journal was cut there, the damaged files kept as "
            f"{', '.join(self.broken_copies)}; ops {self.op}..{self.lost_to} are repaired "
            "from the other replicas and never counted as a nack meanwhile"
        )


async def open_cluster_journal(
    directory: DirectoryLike, *, replica_count: int, **options: object
) -> tuple[Journal, Salvage | None]:
    """Open a cluster replica's journal, repairing damage from peers where the table says so.

    ``options`` go to :meth:`Journal.open`. Returns the journal and what was
    cut (None: nothing). A cluster of one has no peers: its journal refuses
    damage as a single replica's does. Raises what :meth:`Journal.open`
    raises for anything the cluster column does not repair.
    """
    if replica_count < 2:
        return await Journal.open(directory, **options), None  # type: ignore[arg-type]
    torn: list[Salvage] = []
    try:
        journal = await Journal.open(
            directory,
            before_cut=partial(_record_torn_tail, found=torn),
            **options,  # type: ignore[arg-type]
        )
    except CorruptionError as exc:
        damage = exc
    else:
        if torn:
            logger.warning("cluster journal recovery: %s", torn[0].describe())
        return journal, torn[0] if torn else None
    data = await open_directory(directory, create=False)
    salvage = await run_io(data, partial(_judge_and_cut, data, damage))
    logger.warning("cluster journal recovery: %s", salvage.describe())
    journal = await Journal.open(directory, **options)  # type: ignore[arg-type]
    return journal, salvage


def _judge_and_cut(data: Directory, damage: CorruptionError) -> Salvage:
    held = data.lock(LOCK_NAME)
    try:
        seen: list[Case] = []
        try:
            scan_journal(data, observe=lambda case, path, offset: seen.append(case))
        except CorruptionError as exc:
            damage = exc
        else:
            raise damage  # judged fine now: nothing to cut; report the first refusal
        case = seen[-1] if seen else None
        if case is None or decide(case, Replication.CLUSTER) is not Action.REPAIR_FROM_PEERS:
            raise damage
        wal = open_wal_dir(data)
        block = read_superblock(data)
        assert block is not None  # the scan refused anything without one
        # A cut at or below the checkpoint would delete ops the replica
        # restarts from (the checkpoint's own op binds its snapshot).
        keep_after = block.checkpoint_op or None
        refusal = forced_cut_refusal(wal, damage, keep_after)
        if refusal is not None:
            raise CorruptionError(
                f"{damage.reason}; {refusal}, so it is not repaired from the peers "
                "(nothing was changed)",
                path=damage.path,
                offset=damage.offset,
                op=damage.op,
            ) from damage
        seen_to, headers = _evidence_after(wal, damage)
        first_cut = damage.op if damage.op is not None else 1
        lost_to = max(seen_to, first_cut)
        if lost_to > block.lost_to:
            # Durable before the cut: a crash after it must not forget which
            # ops this replica held and may have acked.
            write_superblock(data, block.next(lost_to=lost_to))
        report = repair_journal(data, force=True, lock=False, keep_after=keep_after)
        return Salvage(
            case=case,
            reason=damage.reason,
            path=damage.path or wal.path,
            offset=damage.offset,
            op=first_cut,
            lost_to=lost_to,
            headers=tuple(sorted(headers.values(), key=lambda h: h.op)),
            broken_copies=tuple(report.broken_copies),
        )
    finally:
        held.release()


def _evidence_after(
    wal: Directory, damage: CorruptionError
) -> tuple[int, dict[int, PrepareHeader]]:
    """The highest op with a valid record header from the damage on, and the
    prepare headers that verify inside those records (blocking)."""
    names = [name for _, name in list_segments(wal)]
    start = next((i for i, name in enumerate(names) if wal.path_of(name) == damage.path), None)
    if start is None:
        return 0, {}
    lost_to = 0
    headers: dict[int, PrepareHeader] = {}
    for i in range(start, len(names)):
        storage = wal.open(names[i])
        try:
            size = storage.size()
            begin = SEGMENT_HEADER_SIZE
            if i == start and damage.offset is not None:
                begin = max(begin, damage.offset)
            for hit in probe_headers(storage, begin, size):
                lost_to = max(lost_to, hit.op)
                raw = storage.read_at(hit.offset + RECORD_HEADER_SIZE, HEADER_SIZE)
                header = decode_header(raw) if len(raw) == HEADER_SIZE else None
                if header is not None and header.op == hit.op:
                    headers[hit.op] = header
        finally:
            storage.close()
    return lost_to, headers


async def clear_lost(journal: Journal) -> None:
    """Set the superblock's ``lost_to`` back to 0 once the journal holds every
    op up to it again (durably: call after an append returned)."""
    lost_to = journal.superblock.lost_to
    if lost_to and journal.last_op >= lost_to:
        await journal.update_superblock(lost_to=0)


def _record_torn_tail(
    data: Directory, torn: TornTail, last_op: int, *, found: list[Salvage]
) -> None:
    """Before the journal cuts a torn tail: record the ops it may have held.

    A single copy cannot tell a torn, never acknowledged last batch from the
    last acknowledged batch rotting (``docs/format.md``, "Known limits"). A
    cluster replica need not tell: it raises the superblock's ``lost_to`` to
    the highest op the cut bytes show (at least the op at the cut), durably
    before the cut, so those ops are never nacked until it holds them again.
    Blocking; called by :meth:`Journal.open` holding the lock.
    """
    if torn.action != "truncate":
        return  # a torn segment creation: it held no record
    wal = open_wal_dir(data)
    storage = wal.open(torn.name)
    seen_to = 0
    headers: dict[int, PrepareHeader] = {}
    try:
        for hit in probe_headers(storage, torn.offset, storage.size()):
            seen_to = max(seen_to, hit.op)
            raw = storage.read_at(hit.offset + RECORD_HEADER_SIZE, HEADER_SIZE)
            header = decode_header(raw) if len(raw) == HEADER_SIZE else None
            if header is not None and header.op == hit.op:
                headers[hit.op] = header
    finally:
        storage.close()
    first_cut = last_op + 1
    lost_to = max(seen_to, first_cut)
    block = read_superblock(data)
    assert block is not None  # the journal was planned from it
    if lost_to > block.lost_to:
        write_superblock(data, block.next(lost_to=lost_to))
    found.append(
        Salvage(
            case=torn.case,
            reason=torn.reason,
            path=torn.path,
            offset=torn.offset,
            op=first_cut,
            lost_to=lost_to,
            headers=tuple(sorted(headers.values(), key=lambda h: h.op)),
            broken_copies=(),
        )
    )
