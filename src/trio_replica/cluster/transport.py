"""What a cluster replica and a cluster client need from a network: endpoints.

A transport hands out one :class:`Endpoint` per address (replicas are
``0..n-1``; a client's address is :func:`client_address` of its id). Sending
is best effort and never blocks (a message may be lost, duplicated, delayed
or reordered: Viewstamped Replication tolerates all of that); receiving
waits for the next message addressed to the endpoint.
:class:`trio_replica.testing.SimTransport` is the in-process transport over
:class:`~trio_replica.testing.SimNetwork`; :mod:`.tcp` is the TCP transport.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CLIENT_ADDRESS_BASE", "Endpoint", "Transport", "client_address"]

CLIENT_ADDRESS_BASE = 1 << 20
"""Client addresses start here (replica indices stay far below)."""


def client_address(client: int) -> int:
    """The network address of the client with id ``client``."""
    return CLIENT_ADDRESS_BASE + client


class Endpoint(Protocol):
    """One address's view of the network."""

    address: int

    def send(self, destination: int, message: Any) -> None:
        """Queue ``message`` for ``destination``; never blocks, may drop it."""

    async def receive(self) -> tuple[int, Any]:
        """The next (source, message) addressed here."""
        ...


class Transport(Protocol):
    """Hands out endpoints."""

    def endpoint(self, address: int) -> Endpoint:
        """The endpoint of ``address`` (one per address at a time)."""
        ...

    def new_client_id(self) -> int:
        """A client id not handed out before on this transport (>= 1)."""
        ...
