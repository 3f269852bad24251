"""Replaying a cluster replica's journal from its data directory, for checkers.

A checker that stops a cluster and compares its replicas reads each
directory's journal as it is on disk: the prepare identities in op order,
and the state the journaled requests give when applied with the protocol's
de-duplication at commit (a request number a client already had applied is
a no-op, docs/invariants.md, 13).
"""

from __future__ import annotations

import contextlib

import cbor2

from ..cluster.header import Operation
from ..cluster.storage import decode_envelope
from ..errors import InvalidCommand
from ..journal import Journal
from ..stm.protocol import StateMachine
from ..storage import OsDirectory

__all__ = ["replay_cluster_journal"]


async def replay_cluster_journal(path: str, machine: StateMachine) -> list[tuple[int, bytes]]:
    """Apply every journaled request in the cluster directory ``path`` to ``machine``.

    Returns the ``(op, prepare checksum)`` of every journaled op, in op
    order. Requests are de-duplicated as at commit: a client's request
    number at or below the last one applied for it changes nothing; a
    rejected command (:class:`~trio_replica.errors.InvalidCommand`) changes
    nothing either. Opens the journal read-only in effect (no lock, never
    created); raises what :meth:`Journal.open` raises for a damaged one.
    """
    applied: dict[int, int] = {}
    chain: list[tuple[int, bytes]] = []
    async with await Journal.open(OsDirectory(path), lock=False, create=False) as journal:
        async for entry in journal.entries():
            header, body = decode_envelope(entry.body, op=entry.op, path=path)
            chain.append((header.op, header.checksum))
            if header.operation != Operation.REQUEST:
                continue
            if applied.get(header.client, 0) >= header.request:
                continue
            applied[header.client] = header.request
            with contextlib.suppress(InvalidCommand):
                machine.apply(header.op, cbor2.loads(body))
    return chain
