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

from .header import PrepareHeader
from .messages import ClientMessage, Message
from .view_state import ViewState

__all__ = [
    "Action",
    "Applied",
    "CheckpointTaken",
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


Event = (
    Tick
    | Received
    | JournalDurable
    | ViewStateDurable
    | Applied
    | PrepareRead
    | HeadersRead
    | CheckpointTaken
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
)
