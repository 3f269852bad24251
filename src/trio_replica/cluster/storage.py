"""A cluster replica's durable state in its data directory: journal entries and view state.

Two things, both in the single-replica format (``docs/format.md``):

* Each op is one journal record whose body is the op's 96-byte prepare
  header followed by the command body (the "prepare envelope"). The prepare
  header travels verbatim, so every replica journals the same identity for
  the same op; the journal's own record header (view 0, client 0, its local
  ``batch_first``) still guards the bytes with its checksum. Making the two
  headers one is recorded as open work in ``docs/decisions.md``.
* The durable view state lives in the superblock's reserved fields
  (``view``, ``log_view``, ``commit_max``, ``checkpoint_op``,
  ``checkpoint_checksum`` and the suffix headers), each suffix header
  stored as its 96 bytes followed by 32 zero bytes in a 128-byte slot. The
  superblock is replaced atomically (temp file, fsync, rename, directory
  fsync) and checksummed: a superblock that does not verify refuses to
  open, it is never taken as "fresh".

The superblock also carries the replica's identity (``cluster_id``,
``replica``, ``replica_count``), set when the directory is first opened as a
cluster replica and checked at every later open.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ..errors import CorruptionError
from ..journal import Entry, Journal
from ..journal.record import RECORD_HEADER_SIZE
from ..journal.superblock import FLAG_REJOINING
from .core import RecoveredJournal
from .errors import ClusterError
from .header import HEADER_SIZE, PrepareHeader, decode_header, encode_header
from .view_state import NO_CHECKPOINT, ViewState

__all__ = [
    "ClusterIdentityError",
    "Recovered",
    "decode_envelope",
    "encode_envelope",
    "entries_of",
    "persist_view_state",
    "recover_cluster_storage",
    "view_state_fields",
]

_SLOT_PAD = bytes(RECORD_HEADER_SIZE - HEADER_SIZE)


class ClusterIdentityError(ClusterError):
    """The data directory belongs to another cluster, another replica index or
    another cluster size (``path`` names it); nothing was changed."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


def encode_envelope(header: PrepareHeader, body: bytes) -> bytes:
    """The journal body of one op: its prepare header, then the command body."""
    return encode_header(header) + body


def decode_envelope(data: bytes, *, op: int, path: str) -> tuple[PrepareHeader, bytes]:
    """The (header, body) in a journal body of op ``op``.

    Raises :class:`CorruptionError` when the header does not verify, is for
    another op, or does not match the body (the record checksum passed, so
    this is a bug or foreign data, never a torn write).
    """
    header = decode_header(data[:HEADER_SIZE])
    body = data[HEADER_SIZE:]
    if header is None or header.op != op or not header.valid_body(body):
        raise CorruptionError(
            f"journal record of op {op} does not hold a valid prepare", path=path, op=op
        )
    return header, body


def entries_of(prepares: Iterable[tuple[PrepareHeader, bytes]]) -> list[Entry]:
    """Journal entries for ``prepares`` (their ops as numbered by the protocol)."""
    return [Entry(header.op, encode_envelope(header, body)) for header, body in prepares]


def view_state_fields(state: ViewState) -> dict[str, object]:
    """The superblock fields that hold ``state``."""
    return {
        "view": state.view,
        "log_view": state.log_view,
        "commit_max": state.commit_max,
        "checkpoint_op": state.checkpoint_op,
        "checkpoint_checksum": state.checkpoint_checksum,
        "suffix_headers": tuple(encode_header(h) + _SLOT_PAD for h in state.headers),
        "flags": FLAG_REJOINING if state.rejoining else 0,
    }


async def persist_view_state(journal: Journal, state: ViewState) -> None:
    """Write ``state`` durably into the superblock (atomic replace)."""
    await journal.update_superblock(**view_state_fields(state))


@attrs.frozen
class Recovered:
    """What a cluster replica found in its directory: ``state`` None means a
    freshly formatted replica (no view state was ever written)."""

    state: ViewState | None
    journal: RecoveredJournal


async def recover_cluster_storage(
    journal: Journal,
    *,
    cluster_id: int,
    replica: int,
    replica_count: int,
    rejoining: bool = False,
    lost: tuple[PrepareHeader, ...] = (),
) -> Recovered:
    """Check (or, on a new directory, set) the replica's identity, and read back
    its durable view state and journal headers.

    ``rejoining`` (for a new directory only: ``format --recover``) marks the
    replica as replacing a lost data directory: its view state says so
    until it has caught up with its cluster (``cluster/restart.py``).
    ``lost``: prepare headers read from what protocol-aware recovery cut
    (:mod:`.salvage`); the ops it cut are the superblock's ``lost_to``.

    Raises :class:`ClusterIdentityError` for a directory of another cluster
    member and :class:`CorruptionError` for a view state or journal entry that
    does not verify.
    """
    block = journal.superblock
    path = journal.path
    ident = cluster_id.to_bytes(16, "little")
    blank = block.cluster_id == bytes(16) and block.replica_count == 1 and block.replica == 0
    if blank:
        if journal.last_op or block.view or block.suffix_headers:
            raise ClusterIdentityError(
                "the data directory was written by a single replica; a cluster replica "
                "needs a new directory",
                path=path,
            )
        await journal.update_superblock(
            cluster_id=ident,
            replica=replica,
            replica_count=replica_count,
            flags=FLAG_REJOINING if rejoining else 0,
        )
        state = ViewState(rejoining=True) if rejoining else None
        return Recovered(state=state, journal=RecoveredJournal())
    if (block.cluster_id, block.replica, block.replica_count) != (ident, replica, replica_count):
        raise ClusterIdentityError(
            f"the data directory belongs to replica {block.replica} of "
            f"{block.replica_count} in cluster {int.from_bytes(block.cluster_id, 'little')}, "
            f"not replica {replica} of {replica_count} in cluster {cluster_id}",
            path=path,
        )
    headers = []
    for slot in block.suffix_headers:
        header = decode_header(slot[:HEADER_SIZE])
        if header is None or slot[HEADER_SIZE:] != _SLOT_PAD:
            raise CorruptionError("a view state suffix header does not verify", path=path)
        headers.append(header)
    state = ViewState(
        view=block.view,
        log_view=block.log_view,
        commit_max=block.commit_max,
        checkpoint_op=block.checkpoint_op,
        headers=tuple(headers),
        checkpoint_checksum=block.checkpoint_checksum if block.checkpoint_op else NO_CHECKPOINT,
        rejoining=bool(block.flags & FLAG_REJOINING),
    )
    journaled = []
    # Ops below the journal's first were compacted: a checkpoint covers them.
    async for entry in journal.entries(after=journal.first_op - 1):
        header, _ = decode_envelope(entry.body, op=entry.op, path=path)
        journaled.append(header)
    return Recovered(
        state=state,
        journal=RecoveredJournal(
            headers=tuple(journaled),
            head_uncertain=journal.recovery.bytes_truncated > 0,
            first_op=journal.first_op,
            lost=lost,
            lost_to=block.lost_to,
        ),
    )
