"""What the consensus core is stepped with (events) and what it asks for (actions).

The core never does I/O: whoever owns it (a Trio task, or the simulator)
turns actions into sends, journal writes and applies, and reports back with
events. Actions are returned in the order they must take effect: a view
state persist comes before any send that advertises its view (the core even
holds such sends back until :class:`ViewStateDurable` arrives).
"""

from __future__ import annotations

from typing import Any

import attrs

from .checkpoint import Checkpoint
from .header import PrepareHeader
from .messages import ClientMessage, Message
from .view_state import ViewState

__all__ = [
    "Action",
    "Applied",
    "CheckpointChunkRead",
    "CheckpointInstalled",
    "CheckpointRejected",
    "CheckpointTaken",
    "InstallCheckpoint",
    "PinCheckpoint",
    "ReadCheckpointChunk",
    "RestartJournal",
    "RestoreCheckpoint",
    "StoreCheckpointChunk",
    "TRANSFER_ACTIONS",
    "Commit",
    "Compact",
    "Event",
    "HeadersRead",
    "JournalDurable",
    "PersistViewState",
    "PrepareRead",
    "ReadHeaders",
    "ReadPrepare",
    "Received",
    "Send",
    "SendClient",
    "TakeCheckpoint",
    "Tick",
    "ViewStateDurable",
    "WriteJournal",
]


# --- events (into the core) ---------------------------------------------------


@attrs.frozen
class Tick:
    """One unit of time passed (timeouts, heartbeats, repair are counted in ticks)."""


@attrs.frozen
class Received:
    """A message from a peer or a client arrived."""

    message: Message


@attrs.frozen
class JournalDurable:
    """The journal is durable up to ``op`` (every write handed over up to it is fsynced)."""

    op: int


@attrs.frozen
class ViewStateDurable:
    """``state`` (handed over by :class:`PersistViewState`) is durable."""

    state: ViewState


@attrs.frozen
class Applied:
    """The applier applied the committed ``op``: ``result`` or the rejection reason."""

    op: int
    result: Any
    rejected: str | None = None


@attrs.frozen
class PrepareRead:
    """Answer to :class:`ReadPrepare`: the (header, body) the journal holds at
    that op if its header has that checksum and it is readable, else None."""

    prepare: tuple[PrepareHeader, bytes] | None
    destination: int


@attrs.frozen
class HeadersRead:
    """Answer to :class:`ReadHeaders`: the headers the journal holds in the range."""

    headers: tuple[PrepareHeader, ...]
    destination: int


@attrs.frozen
class CheckpointTaken:
    """The checkpoint asked for by :class:`TakeCheckpoint` at ``op`` is durable
    (its snapshot file written, fsynced and renamed into place); ``digest``
    is its state digest (:func:`~.checkpoint.state_digest`)."""

    op: int
    digest: bytes


@attrs.frozen
class CheckpointChunkRead:
    """The answer to :class:`ReadCheckpointChunk`: ``data`` from ``offset`` of
    the snapshot file of checkpoint ``op`` (``total`` bytes long), or None
    when this replica no longer has it."""

    op: int
    checksum: bytes
    offset: int
    total: int
    data: bytes | None
    destination: int


@attrs.frozen
class CheckpointInstalled:
    """The fetched snapshot of ``checkpoint`` is verified (its own checksum,
    and it holds the prepare a quorum vouched for) and durable."""

    checkpoint: Checkpoint


@attrs.frozen
class CheckpointRejected:
    """The fetched snapshot of checkpoint ``op`` did not verify; nothing was installed."""

    op: int


Event = (
    Tick
    | Received
    | JournalDurable
    | ViewStateDurable
    | Applied
    | PrepareRead
    | HeadersRead
    | CheckpointTaken
    | CheckpointChunkRead
    | CheckpointInstalled
    | CheckpointRejected
)


# --- actions (out of the core) ---------------------------------------------------


@attrs.frozen
class Send:
    """Send ``message`` to replica ``to`` (best effort: may be lost)."""

    to: int
    message: Message


@attrs.frozen
class SendClient:
    """Send ``message`` to the client ``client``."""

    client: int
    message: ClientMessage


@attrs.frozen
class WriteJournal:
    """Truncate the journal after op ``truncate_after`` (None: no truncation),
    then write ``entries`` (header, body) at consecutive ops right after it,
    or in place where the same header is already there but unreadable.
    Report durability with :class:`JournalDurable`."""

    truncate_after: int | None
    entries: tuple[tuple[PrepareHeader, bytes], ...]


@attrs.frozen
class PersistViewState:
    """Write ``state`` durably (atomically); report with :class:`ViewStateDurable`."""

    state: ViewState


@attrs.frozen
class Commit:
    """Op ``header.op`` is committed: apply it (``apply``) or skip it as a
    no-op, then report :class:`Applied`. Committed ops come in op order."""

    header: PrepareHeader
    apply: bool


@attrs.frozen
class ReadPrepare:
    """Read the prepare at ``op`` whose header checksum is ``checksum`` from the
    journal and report :class:`PrepareRead` (to answer a peer's repair
    request; the core may no longer keep that op's header)."""

    op: int
    checksum: bytes
    destination: int


@attrs.frozen
class ReadHeaders:
    """Read the headers of ops ``op_min..op_max`` the journal holds and report
    :class:`HeadersRead` (a peer's header repair below what the core keeps)."""

    op_min: int
    op_max: int
    destination: int


@attrs.frozen
class TakeCheckpoint:
    """Every op up to ``header.op`` is applied and no later one is: snapshot
    the state machine now (after the :class:`Commit` actions before this one,
    before any after it), store it with ``header`` and ``clients`` (the client
    table at that op, :meth:`~.client_table.ClientTable.canonical`) durably as
    the checkpoint of ``header.op``, then report :class:`CheckpointTaken`."""

    header: PrepareHeader
    clients: list[list[Any]]


@attrs.frozen
class Compact:
    """The durable view state names a checkpoint: the journal may delete ops
    up to ``through`` (whole segments only; it keeps the rest)."""

    through: int


@attrs.frozen
class ReadCheckpointChunk:
    """Serve state transfer: read ``length`` bytes from ``offset`` of the
    snapshot file of checkpoint ``op`` (prepare checksum ``checksum``),
    report :class:`CheckpointChunkRead` for ``destination``."""

    op: int
    checksum: bytes
    offset: int
    length: int
    destination: int


@attrs.frozen
class PinCheckpoint:
    """Keep (``pin``) or stop keeping the snapshot of checkpoint ``op`` beyond
    the store's retention: a peer is fetching it."""

    op: int
    pin: bool


@attrs.frozen
class StoreCheckpointChunk:
    """Write ``data`` at ``offset`` of the fetched snapshot of checkpoint
    ``op`` (a temp file; the file is ``total`` bytes; ``source`` sent it)."""

    op: int
    checksum: bytes
    offset: int
    total: int
    data: bytes
    source: int


@attrs.frozen
class InstallCheckpoint:
    """Every chunk of checkpoint ``op`` is stored: fsync the temp file,
    verify it whole (its own checksum, and that it holds the prepare whose
    checksum is ``checksum``), rename it into place, fsync the directory;
    report :class:`CheckpointInstalled` or :class:`CheckpointRejected`."""

    op: int
    checksum: bytes


@attrs.frozen
class RestoreCheckpoint:
    """The applier replaces the state machine's state by ``checkpoint``'s
    (state transfer); later commits apply on top of it."""

    checkpoint: Checkpoint


@attrs.frozen
class RestartJournal:
    """The durable view state names the installed checkpoint at ``op``: drop
    the whole journal and restart it at ``op + 1``
    (``Journal.restart_after``)."""

    op: int


Action = (
    Send
    | SendClient
    | WriteJournal
    | PersistViewState
    | Commit
    | ReadPrepare
    | ReadHeaders
    | TakeCheckpoint
    | Compact
    | ReadCheckpointChunk
    | PinCheckpoint
    | StoreCheckpointChunk
    | InstallCheckpoint
    | RestoreCheckpoint
    | RestartJournal
)

TRANSFER_ACTIONS = (
    ReadCheckpointChunk,
    PinCheckpoint,
    StoreCheckpointChunk,
    InstallCheckpoint,
    RestoreCheckpoint,
    RestartJournal,
)
"""The actions of state transfer (an owner that does not carry them out
starts its core without ``state_transfer``)."""
