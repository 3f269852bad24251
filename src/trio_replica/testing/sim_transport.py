"""A Trio transport over :class:`~.network.SimNetwork`, for in-process clusters.

:func:`open_sim_transport` runs one pump task that converts Trio time into
network ticks (``tick_seconds`` each): every tick it advances the network's
partitions and clogs and hands the packets due to their endpoints. Under
Trio's ``MockClock`` (``autojump_threshold=0``) a run is driven entirely by
virtual time, so network delays, client timeouts and the replicas' protocol
timers all advance together and a test runs in milliseconds.

An endpoint's inbox is bounded (``inbox_size``); a packet arriving at a full
inbox is dropped, as a real network drops under overload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .network import NetworkFaults, SimNetwork

__all__ = ["SimEndpoint", "SimTransport", "open_sim_transport"]


class SimEndpoint:
    """One address on a :class:`SimTransport` (the cluster's ``Endpoint`` protocol)."""

    def __init__(self, transport: SimTransport, address: int, inbox_size: int):
        self.address = address
        self._transport = transport
        self._send, self._receive = trio.open_memory_channel[tuple[int, Any]](inbox_size)

    def send(self, destination: int, message: Any) -> None:
        """Queue ``message`` on the simulated network (never blocks)."""
        self._transport.network.send(self.address, destination, message, self._transport.now)

    async def receive(self) -> tuple[int, Any]:
        """The next (source, message) delivered here."""
        return await self._receive.receive()

    def _deliver(self, source: int, message: Any) -> bool:
        try:
            self._send.send_nowait((source, message))
        except trio.WouldBlock:
            return False
        return True


class SimTransport:
    """The transport (see the module docstring); build with :func:`open_sim_transport`."""

    def __init__(self, network: SimNetwork, *, tick_seconds: float, inbox_size: int):
        self.network = network
        self.tick_seconds = tick_seconds
        self.now = 0
        self.dropped = 0
        """Packets dropped at a full endpoint inbox."""
        self._inbox_size = inbox_size
        self._endpoints: dict[int, SimEndpoint] = {}
        self._next_client = 0

    def endpoint(self, address: int) -> SimEndpoint:
        """A fresh endpoint for ``address`` (replacing any earlier one: a
        restarted replica gets a new inbox; packets for the old one are gone)."""
        endpoint = SimEndpoint(self, address, self._inbox_size)
        self._endpoints[address] = endpoint
        return endpoint

    def new_client_id(self) -> int:
        """Client ids 1, 2, 3, ... in the order asked for (deterministic)."""
        self._next_client += 1
        return self._next_client

    async def _pump(self) -> None:
        start = trio.current_time()
        while True:
            self.now += 1
            await trio.sleep_until(start + self.now * self.tick_seconds)
            self.network.tick(self.now)
            for packet in self.network.deliver(self.now):
                endpoint = self._endpoints.get(packet.destination)
                if endpoint is None or not endpoint._deliver(packet.source, packet.message):
                    self.dropped += 1


@asynccontextmanager
async def open_sim_transport(
    network: SimNetwork | None = None,
    *,
    seed: int = 0,
    faults: NetworkFaults | None = None,
    partitionable: int = 0,
    tick_seconds: float = 0.001,
    inbox_size: int = 256,
) -> AsyncIterator[SimTransport]:
    """Run a :class:`SimTransport` over ``network`` (or a new
    ``SimNetwork(seed, faults, partitionable=...)``) for the block."""
    if network is None:
        network = SimNetwork(seed, faults or NetworkFaults(), partitionable=partitionable)
    transport = SimTransport(network, tick_seconds=tick_seconds, inbox_size=inbox_size)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport._pump)
        yield transport
        nursery.cancel_scope.cancel()
