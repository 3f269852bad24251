"""The messages replicas and clients exchange (frozen attrs classes).

Every message between replicas names its sender (``replica``) and the view
it was sent in (``view``). A message that advertises a view is only sent
once that view is durable on the sender (the core holds it back until
then). Messages are values: the transport may drop, duplicate, delay or
reorder them, and the protocol tolerates all of that.

Names follow Viewstamped Replication Revisited (Liskov and Cowling, 2012)
and TigerBeetle's VSR: prepare, prepare_ok, commit, start_view_change,
do_view_change, start_view, request_start_view, request_headers,
request_prepare.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .header import Operation, PrepareHeader

__all__ = [
    "ADVERTISES_NORMAL",
    "ADVERTISES_VIEW",
    "CheckpointChunk",
    "CheckpointDigest",
    "ClientMessage",
    "Commit",
    "DoViewChange",
    "EntryState",
    "Eviction",
    "Headers",
    "Message",
    "Prepare",
    "PrepareOk",
    "Redirect",
    "RepairPrepare",
    "Reply",
    "Request",
    "RequestHeaders",
    "RequestPrepare",
    "RequestStartView",
    "RequestCheckpoint",
    "Retained",
    "StartView",
    "StartViewChange",
    "SuffixEntry",
]


# --- client <-> replica ---------------------------------------------------


@attrs.frozen
class Request:
    """A client's request. ``session`` is 0 for a register (``request`` 0),
    afterwards the op number that registered the client. ``body`` is the
    CBOR-encoded command."""

    client: int
    session: int
    request: int
    operation: Operation
    body: bytes


@attrs.frozen
class Reply:
    """The primary's answer to ``request`` of ``client``: it committed as
    ``op`` (or, for a duplicate, earlier) and ``result`` is what the state
    machine returned (for a register: the session number). ``rejected``
    carries the reason when the machine refused the command."""

    view: int
    replica: int
    client: int
    request: int
    op: int
    result: Any
    rejected: str | None = None


@attrs.frozen
class Eviction:
    """The client's session is not in the client table (never registered,
    or evicted to make room): the client must register again, and the
    outcome of its request in flight is unknown."""

    view: int
    replica: int
    client: int
    session: int


@attrs.frozen
class Redirect:
    """Sent by a replica that is not the primary: ``primary`` is the primary
    of the newest view it knows, a hint the client follows."""

    view: int
    replica: int
    client: int
    primary: int


ClientMessage = Reply | Eviction | Redirect
"""Everything a replica sends to a client."""


# --- normal operation ------------------------------------------------------


@attrs.frozen
class Prepare:
    """The primary of ``view`` asks backups to journal ``header``/``body``;
    ``commit`` piggybacks the primary's commit number."""

    view: int
    replica: int
    commit: int
    header: PrepareHeader
    body: bytes


@attrs.frozen
class PrepareOk:
    """Cumulative: the sender holds, durably, the log of ``view`` up to
    ``op``, whose header checksum is ``checksum``."""

    view: int
    replica: int
    op: int
    checksum: bytes


@attrs.frozen
class Commit:
    """The primary's heartbeat: ops up to ``commit`` are committed."""

    view: int
    replica: int
    commit: int


# --- view change -------------------------------------------------------------


@attrs.frozen
class StartViewChange:
    """The sender gave up on the views before ``view``."""

    view: int
    replica: int


class EntryState(enum.Enum):
    """What a do_view_change sender holds for one op of its suffix."""

    HELD = "held"
    """The prepare is durable and readable: the sender may have acked it."""
    FAULTY = "faulty"
    """Durably written, but its body cannot be read now: the sender may have
    acked it, so this is never a nack."""
    MISSING = "missing"
    """Only the header is known (the body never became durable here): the
    sender never acked it, a nack."""


@attrs.frozen
class SuffixEntry:
    """One op of a do_view_change suffix."""

    header: PrepareHeader
    state: EntryState


@attrs.frozen
class DoViewChange:
    """Sent to the primary of ``view``: the sender's log above its
    ``commit`` (a commit number it knows is committed), the view in which
    that log was last normal (``log_view``) and its head ``op``. An op above
    ``op``, or one with a different header, is a nack: the sender never
    acked it."""

    view: int
    replica: int
    log_view: int
    op: int
    commit: int
    suffix: tuple[SuffixEntry, ...]


@attrs.frozen
class StartView:
    """The new primary's log for ``view``: headers up to ``op`` (the ops
    above ``commit`` and a few below, to stitch to the receiver's log).
    ``nonce``: the one of the request_start_view this answers (0 when the
    new primary broadcasts it at the end of a view change)."""

    view: int
    replica: int
    op: int
    commit: int
    headers: tuple[PrepareHeader, ...]
    nonce: int = 0


@attrs.frozen
class RequestStartView:
    """A replica that saw a newer view asks its primary for the start_view.
    ``nonce`` is new in each process life of the sender, so an answer that
    echoes it was built after the sender restarted (a rejoining replica
    relies on that: see ``cluster/restart.py``)."""

    view: int
    replica: int
    nonce: int = 0


# --- repair ---------------------------------------------------------------------


@attrs.frozen
class RequestHeaders:
    """Asks for the headers of ops ``op_min..op_max`` (inclusive)."""

    view: int
    replica: int
    op_min: int
    op_max: int


@attrs.frozen
class Headers:
    """The headers the sender holds in the requested range (possibly none)."""

    view: int
    replica: int
    headers: tuple[PrepareHeader, ...]


@attrs.frozen
class RequestPrepare:
    """Asks for the prepare of ``op`` whose header checksum is ``checksum``."""

    view: int
    replica: int
    op: int
    checksum: bytes


@attrs.frozen
class RepairPrepare:
    """Answer to :class:`RequestPrepare`, sent only if the sender holds that
    exact prepare; accepted only if it equals the header expected there."""

    view: int
    replica: int
    header: PrepareHeader
    body: bytes


@attrs.frozen
class Retained:
    """The honest answer to a repair request reaching below what the sender
    retains: its journal keeps ops ``op_min`` and up (anything lower was
    compacted, or never held), and its newest durable checkpoint is
    ``checkpoint_op``, whose prepare checksum is ``checkpoint_checksum``. A
    replica that needs ops below every peer's ``op_min`` needs a checkpoint
    from a peer (state transfer)."""

    view: int
    replica: int
    op_min: int
    checkpoint_op: int
    checkpoint_checksum: bytes


# --- checkpoints -------------------------------------------------------------


@attrs.frozen
class RequestCheckpoint:
    """State transfer (pull, one chunk in flight): send ``length`` bytes from
    ``offset`` of the snapshot file of checkpoint ``op``, whose prepare
    checksum is ``checksum`` (the checkpoint a quorum vouched for)."""

    view: int
    replica: int
    op: int
    checksum: bytes
    offset: int
    length: int


@attrs.frozen
class CheckpointChunk:
    """``data`` of the snapshot file of checkpoint ``op`` (prepare checksum
    ``checksum``) from ``offset``; the file is ``total`` bytes;
    ``data_checksum`` guards the chunk in transit."""

    view: int
    replica: int
    op: int
    checksum: bytes
    offset: int
    total: int
    data: bytes
    data_checksum: bytes


@attrs.frozen
class CheckpointDigest:
    """The sender's state digest at its checkpoint ``op`` (whose prepare
    checksum is ``checksum``): replicas compare them to catch a
    non-deterministic ``apply()``."""

    view: int
    replica: int
    op: int
    checksum: bytes
    digest: bytes


Message = (
    Request
    | Prepare
    | PrepareOk
    | Commit
    | StartViewChange
    | DoViewChange
    | StartView
    | RequestStartView
    | RequestHeaders
    | Headers
    | RequestPrepare
    | RepairPrepare
    | Retained
    | CheckpointDigest
    | RequestCheckpoint
    | CheckpointChunk
)
"""Everything a replica receives (from peers, and requests from clients)."""


ADVERTISES_VIEW = (StartViewChange, DoViewChange, StartView, Prepare, PrepareOk, Commit)
"""Messages that tell the receiver the sender is in their ``view``: each leaves
only once that view is durable on the sender. Requests for a start_view and
repair traffic name a view without claiming to be in it."""

ADVERTISES_NORMAL = (StartView, Prepare, PrepareOk, Commit)
"""Messages that also claim the sender's log is normal in ``view`` (log_view)."""
