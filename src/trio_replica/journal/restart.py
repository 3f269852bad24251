"""Restarting the journal after an installed snapshot: the blocking steps, crash-safe.

A cluster replica that installs a snapshot fetched from a peer (state
transfer) holds the state up to the snapshot's op ``base`` but none of the
ops before it, and its own journal (if any survived) is behind, or holds ops
of an older view. The journal then restarts at ``base + 1``: every old
segment is dropped, and the next append starts a segment at ``base + 1``
whose header names ``parent`` (the chain checksum the installed snapshot
carries), so the snapshot fits the journal by the same rule as one taken
locally.

**Restart evidence.** The superblock says where the journal starts
(``wal_first_op``, ``wal_first_parent``) and the first op of the newest
segment ever created (``wal_head_op``). Ordinary journals never have
``wal_first_op > 0`` with ``wal_head_op == 0`` (the first segment sets
both). That combination is the restart evidence: "the journal restarted at
``wal_first_op`` from chain checksum ``wal_first_parent``, and no segment
was created since". Every segment on disk is then a leftover of the old
journal, deleted when the journal is opened.

The steps (:func:`restart_wal`):

1. the superblock is replaced (atomically: temp, fsync, rename, directory
   fsync) with the restart evidence; from here on the old journal is gone
   whatever survives on disk;
2. every old segment is unlinked and the ``wal`` directory fsynced.

What a crash leaves: before step 1's rename is durable, the old journal,
untouched; after it, the restarted journal (empty, starting at
``base + 1``), with any old segments still on disk deleted by the next open
(:func:`leftover_segments`, carried out by :meth:`Journal.open`). The
first append after the restart writes the new segment, then the superblock
naming it (``wal_head_op``), which ends the restart evidence; a crash in
between is the ordinary "segment newer than the evidence" case.
"""

from __future__ import annotations

from ..storage import Directory
from .decision import JournalEvidence
from .record import GENESIS_PARENT
from .scan import ScanResult, list_segments
from .superblock import Superblock, write_superblock

__all__ = [
    "is_restart_evidence",
    "leftover_segments",
    "restart_superblock",
    "restart_wal",
    "restarted_scan",
]


def is_restart_evidence(evidence: JournalEvidence) -> bool:
    """Whether the superblock says the journal restarted and has no segment since."""
    return evidence.first_op > 0 and evidence.head_op == 0


def restart_superblock(block: Superblock, base: int, parent: bytes) -> Superblock:
    """The superblock that records a restart at ``base + 1`` from ``parent``."""
    if type(base) is not int or base < 0:
        raise ValueError(f"base must be a non-negative int, got {base!r}")
    if len(parent) != len(GENESIS_PARENT):
        raise ValueError("parent must be a 16-byte chain checksum")
    return block.next(wal_first_op=base + 1, wal_first_parent=parent, wal_head_op=0)


def restarted_scan(evidence: JournalEvidence) -> ScanResult:
    """What a journal with restart evidence holds: no op, starting at ``first_op``."""
    return ScanResult(
        segments=[],
        first_op=evidence.first_op,
        last_op=evidence.first_op - 1,
        records=0,
        torn_tail=None,
        chain_tip=evidence.first_parent,
        last_batch_first=0,
        root_parent=evidence.first_parent,
    )


def leftover_segments(wal: Directory) -> tuple[str, ...]:
    """Names of the old journal's segments still on disk (deleted at open). Blocking."""
    return tuple(name for _, name in list_segments(wal))


def restart_wal(data: Directory, wal: Directory | None, block: Superblock) -> None:
    """Carry out a restart: write ``block`` (from :func:`restart_superblock`),
    then delete every segment and fsync ``wal``. Blocking; ``OSError``
    propagates (the caller treats it as fatal)."""
    write_superblock(data, block)
    if wal is None:
        return
    remove_leftovers(wal, leftover_segments(wal))


def remove_leftovers(wal: Directory, names: tuple[str, ...]) -> None:
    """Unlink ``names`` in ``wal`` and fsync it (nothing to do for none). Blocking."""
    for name in names:
        wal.unlink(name)
    if names:
        wal.sync()
