"""Client sessions: the replicated table that makes requests exactly-once.

A client registers (a committed op, whose op number becomes its session),
then sends one request at a time with increasing request numbers. The table
maps a client to its session, its newest committed request number and that
request's reply. It is replicated state: it changes only when an op
commits, identically on every replica, and it is part of the state digest.

Why de-duplicate at commit and not only when a request arrives: an
uncommitted prepare can survive a view change while its client retries at
the new primary, so the same request can be in the log twice. At commit, a
request whose number is not above the session's newest committed one is a
no-op that returns the cached reply (TigerBeetle's client_sessions and
VRR section 4 keep the same table).

The table is bounded: registering a new client when it is full evicts the
session whose newest commit is oldest (ties: smaller client id), so every
replica evicts the same one. An evicted client's next request is answered
with an eviction and it must register again.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .header import Operation, PrepareHeader

__all__ = ["ClientTable", "CommitKind", "CommitOutcome", "Session"]


@attrs.define
class Session:
    """One client's entry. ``request`` is its newest committed request number
    (0 right after registering), ``reply_op`` the op that request committed
    as, ``result``/``rejected`` its reply once applied (``applied``)."""

    session: int
    request: int
    reply_op: int
    last_op: int
    result: Any = None
    rejected: str | None = None
    applied: bool = False


class CommitKind(enum.Enum):
    """What committing one op does (the decision table of :meth:`ClientTable.commit`)."""

    APPLY = "apply"
    """A new request: the state machine applies it."""
    REGISTERED = "registered"
    """A new session: nothing to apply, the reply is the session number."""
    DUPLICATE = "duplicate"
    """Already committed before (or a register of a known client): a no-op;
    the cached reply is returned if it is this request's."""
    NO_SESSION = "no_session"
    """The client has no session (evicted meanwhile): a no-op, no reply."""


@attrs.frozen
class CommitOutcome:
    """The decision for one committed op, plus the client evicted by a register."""

    kind: CommitKind
    evicted: int | None = None


class ClientTable:
    """The client table (see the module docstring). ``capacity`` >= 1 sessions.

    ``dedup_at_commit`` and ``update_at_prepare`` exist so tests can build the
    two classic broken variants as real code paths; both default to correct.
    """

    def __init__(
        self, capacity: int, *, dedup_at_commit: bool = True, update_at_prepare: bool = False
    ):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.dedup_at_commit = dedup_at_commit
        self.update_at_prepare = update_at_prepare
        self._sessions: dict[int, Session] = {}

    def get(self, client: int) -> Session | None:
        """The client's session, or None."""
        return self._sessions.get(client)

    def __len__(self) -> int:
        return len(self._sessions)

    def prepared(self, header: PrepareHeader) -> None:
        """A prepare was accepted. Correct tables ignore it (the table changes at
        commit only); the broken ``update_at_prepare`` variant records it here."""
        if not self.update_at_prepare or header.operation != Operation.REQUEST:
            return
        entry = self._sessions.get(header.client)
        if entry is not None and header.request > entry.request:
            entry.request = header.request
            entry.reply_op = header.op
            entry.applied = False

    def commit(self, header: PrepareHeader) -> CommitOutcome:
        """Decide what committing ``header`` does, and update the table.

        | operation | session        | request vs newest     | outcome    |
        |-----------|----------------|-----------------------|------------|
        | REGISTER  | exists         | -                     | DUPLICATE  |
        | REGISTER  | none           | -                     | REGISTERED (may evict) |
        | REQUEST   | none           | -                     | NO_SESSION |
        | REQUEST   | exists         | not above             | DUPLICATE  |
        | REQUEST   | exists         | above                 | APPLY      |
        """
        entry = self._sessions.get(header.client)
        if header.operation == Operation.REGISTER:
            if entry is not None:
                return CommitOutcome(CommitKind.DUPLICATE)
            evicted = None
            if len(self._sessions) >= self.capacity:
                evicted = min(self._sessions, key=lambda c: (self._sessions[c].last_op, c))
                del self._sessions[evicted]
            self._sessions[header.client] = Session(
                session=header.op,
                request=0,
                reply_op=header.op,
                last_op=header.op,
                result=header.op,
                applied=True,
            )
            return CommitOutcome(CommitKind.REGISTERED, evicted)
        if entry is None:
            return CommitOutcome(CommitKind.NO_SESSION)
        newest = entry.request
        if self.update_at_prepare and entry.reply_op == header.op:
            # The broken variant already advanced ``request`` at prepare, so it
            # can only compare strictly: a retried duplicate at a later op slips.
            newest = header.request - 1
        if self.dedup_at_commit and header.request <= newest:
            return CommitOutcome(CommitKind.DUPLICATE)
        entry.request = header.request
        entry.reply_op = header.op
        entry.last_op = header.op
        entry.result = None
        entry.rejected = None
        entry.applied = False
        return CommitOutcome(CommitKind.APPLY)

    def applied(self, op: int, client: int, result: Any, rejected: str | None) -> None:
        """Record the reply of the op that committed as ``op`` for ``client``."""
        entry = self._sessions.get(client)
        if entry is not None and entry.reply_op == op:
            entry.result = result
            entry.rejected = rejected
            entry.applied = True

    def canonical(self) -> list[list[Any]]:
        """The table as a plain value in a canonical order (for state digests
        and checkpoints): one ``[client, session, request, reply_op, last_op,
        result, rejected, applied]`` per session, by client."""
        return [
            [c, s.session, s.request, s.reply_op, s.last_op, s.result, s.rejected, s.applied]
            for c, s in sorted(self._sessions.items())
        ]

    def restore(self, value: list[list[Any]]) -> None:
        """Replace the table with ``value`` (what :meth:`canonical` returned,
        perhaps after a CBOR round trip). Raises ``ValueError`` for a value
        that is not such a table."""
        sessions: dict[int, Session] = {}
        for row in value:
            if not isinstance(row, list) or len(row) != 8:
                raise ValueError(f"not a client table row: {row!r}")
            client, session, request, reply_op, last_op, result, rejected, applied = row
            if not all(type(x) is int for x in (client, session, request, reply_op, last_op)):
                raise ValueError(f"not a client table row: {row!r}")
            sessions[client] = Session(
                session, request, reply_op, last_op, result, rejected, bool(applied)
            )
        if len(sessions) > self.capacity:
            raise ValueError(f"{len(sessions)} sessions exceed the capacity {self.capacity}")
        self._sessions = sessions
