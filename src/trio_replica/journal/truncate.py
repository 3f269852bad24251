"""Truncating the journal's suffix: the blocking steps, in a crash-safe order.

A cluster replica must cut the uncommitted suffix of its journal when a view
change decides a different log (Viewstamped Replication's "install the
start_view log"), and then append the decided ops in its place. Nothing else
ever shortens a journal.

Cutting after op ``keep`` (:func:`truncate_wal`), with ``K`` the newest
segment that starts at or before ``keep + 1`` (it holds ``keep + 1``, or is
the segment holding ``keep`` when ``keep + 1`` starts no segment):

1. if segments newer than ``K`` exist, the superblock is replaced first with
   ``wal_head_op = K`` (the journal-end evidence must never name a segment
   that is about to disappear; a segment newer than the evidence is what a
   crash during a segment roll leaves, and recovery accepts it);
2. those newer segments are unlinked, newest first, then the directory is
   fsynced (a crash in between leaves a contiguous run of segments: the old
   journal cut at a segment boundary);
3. ``K`` is truncated to the offset of record ``keep + 1`` and fsynced.

What a crash at any step leaves, and recovery opens: ops ``1..m`` with
``keep <= m <= old last op``, every record exactly as it was (the hash
chain of the prefix is untouched, and segment headers still name their
parents). Once new ops are appended after ``keep``, a crash leaves either
such a prefix of the old journal or ``1..keep`` followed by a prefix of the
new ops. The cluster needs no more: its durable view state (written before
any truncation, see ``cluster/storage.py``) names the decided log, and
journaled ops from an older view above it are cut again at restart.
"""

from __future__ import annotations

import attrs

from ..storage import Directory
from .record import SEGMENT_HEADER_SIZE
from .segment import segment_name
from .superblock import Superblock, write_superblock

__all__ = ["TruncationPlan", "plan_truncation", "truncate_wal"]


@attrs.frozen
class TruncationPlan:
    """What cutting the journal after ``keep`` does (see the module docstring).

    ``segment``: the first op of ``K``, the segment that ends the journal
    afterwards; ``remove``: first ops of the segments deleted, newest first;
    ``superblock``: the superblock to write first (None when no segment is
    deleted).
    """

    keep: int
    segment: int
    remove: tuple[int, ...]
    superblock: Superblock | None


def plan_truncation(segments: tuple[int, ...], keep: int, block: Superblock) -> TruncationPlan:
    """Plan cutting after op ``keep`` for a journal whose segments start at
    ``segments`` (oldest first, at least one starting at or before ``keep + 1``).

    Raises ``ValueError`` when no segment starts at or before ``keep + 1``
    (the op was compacted away).
    """
    kept = [first for first in segments if first <= keep + 1]
    if not kept:
        raise ValueError(f"cannot truncate after op {keep}: it was compacted")
    segment = kept[-1]
    remove = tuple(sorted((first for first in segments if first > segment), reverse=True))
    new_block = block.next(wal_head_op=segment) if remove else None
    return TruncationPlan(keep=keep, segment=segment, remove=remove, superblock=new_block)


def truncate_wal(data: Directory, wal: Directory, plan: TruncationPlan, offset: int) -> None:
    """Carry out ``plan``: ``offset`` is where record ``keep + 1`` starts in
    segment ``plan.segment`` (its size when ``keep`` is that segment's last op).
    Blocking; ``OSError`` propagates and the caller treats it as fatal."""
    if offset < SEGMENT_HEADER_SIZE:
        raise ValueError(f"offset {offset} is inside the segment header")
    if plan.superblock is not None:
        write_superblock(data, plan.superblock)
    for first in plan.remove:
        wal.unlink(segment_name(first))
    if plan.remove:
        wal.sync()
    storage = wal.open(segment_name(plan.segment))
    try:
        if storage.size() > offset:
            storage.truncate(offset)
            storage.sync()
    finally:
        storage.close()
