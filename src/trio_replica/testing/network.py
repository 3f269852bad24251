"""SimNetwork: a seeded, in-process packet network with faults.

Nodes are addressed by integers (replicas ``0..n-1``; clients use any other
integers). Time is in ticks: :meth:`SimNetwork.send` queues a packet,
:meth:`SimNetwork.deliver` returns the packets due at a tick. Every random
choice comes from one ``random.Random(seed)``, so a run is reproduced
exactly by its seed and the sequence of calls (modelled on TigerBeetle's
packet simulator).

Faults (:class:`NetworkFaults`), per packet or per path:

* delay: ``delay_min`` plus an exponential with mean ``delay_mean`` ticks;
* loss, duplication (the copy gets its own delay), reordering (an extra
  delay up to ``reorder_delay`` ticks);
* partitions among the replicas ``partitionable``: symmetric (no packet
  crosses between the sides) or asymmetric (only one direction is cut),
  held for at least ``partition_stability`` ticks, then healed with
  ``unpartition_probability`` per tick, and kept healed for at least
  ``partition_stability`` ticks too;
* clogged paths: a path delays every packet until its clog ends;
* bounded path capacity: a path with ``path_capacity`` packets in flight
  drops new ones;
* filters by message kind: packets whose class name is in ``drop_kinds``
  are dropped with ``drop_kind_probability`` (drop only prepares, say).
"""

from __future__ import annotations

import heapq
import random
from typing import Any

import attrs

__all__ = ["NetworkFaults", "Packet", "SimNetwork"]


def _probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability, got {value}")


@attrs.frozen
class NetworkFaults:
    """The faults a :class:`SimNetwork` injects (all off by default except delay)."""

    delay_min: int = 1
    """Ticks every packet takes at least (>= 1)."""
    delay_mean: float = 1.0
    """Mean of the exponential extra delay, in ticks."""
    loss: float = attrs.field(default=0.0, validator=_probability)
    duplication: float = attrs.field(default=0.0, validator=_probability)
    reorder: float = attrs.field(default=0.0, validator=_probability)
    """Probability a packet gets an extra uniform delay up to ``reorder_delay``."""
    reorder_delay: int = 10
    partition_probability: float = attrs.field(default=0.0, validator=_probability)
    """Per tick, while healed (after the stability window): start a partition."""
    unpartition_probability: float = attrs.field(default=0.0, validator=_probability)
    """Per tick, while partitioned (after the stability window): heal it."""
    partition_stability: int = 50
    asymmetric: float = attrs.field(default=0.0, validator=_probability)
    """Probability a new partition cuts only one direction."""
    clog_probability: float = attrs.field(default=0.0, validator=_probability)
    """Per tick: clog one random path for ``clog_duration`` ticks."""
    clog_duration: int = 20
    path_capacity: int = 256
    drop_kinds: frozenset[str] = frozenset()
    """Message class names the filter applies to (e.g. ``{"Prepare"}``)."""
    drop_kind_probability: float = attrs.field(default=0.0, validator=_probability)

    def healed(self) -> NetworkFaults:
        """The same delays with every fault off (for a liveness phase)."""
        return NetworkFaults(delay_min=self.delay_min, delay_mean=self.delay_mean)


@attrs.frozen
class Packet:
    """A delivered packet."""

    source: int
    destination: int
    message: Any


class SimNetwork:
    """The simulated network (see the module docstring).

    ``partitionable``: the nodes partitions are drawn over (the replicas);
    other nodes (clients) are never partitioned but see every other fault.
    """

    def __init__(
        self, seed: int, faults: NetworkFaults = NetworkFaults(), *, partitionable: int = 0
    ):
        if faults.delay_min < 1:
            raise ValueError("delay_min must be at least 1 tick")
        self.random = random.Random(seed)
        self.faults = faults
        self.nodes = list(range(partitionable))
        self._queue: list[tuple[int, int, Packet]] = []
        self._seq = 0
        self._in_flight: dict[tuple[int, int], int] = {}
        self._cut: set[tuple[int, int]] = set()
        self._partition_since = 0
        self._clogged: dict[tuple[int, int], int] = {}
        self.stats = {"sent": 0, "delivered": 0, "lost": 0, "duplicated": 0, "filtered": 0}

    @property
    def partitioned(self) -> bool:
        """Whether a partition is in force."""
        return bool(self._cut)

    def heal(self) -> None:
        """End partitions and clogs and turn every fault off (delays stay)."""
        self.faults = self.faults.healed()
        self._cut.clear()
        self._clogged.clear()

    def clog(self, source: int, destination: int, until: int) -> None:
        """Delay every packet from ``source`` to ``destination`` until tick
        ``until`` (as a TCP peer reconnecting with backoff would)."""
        path = (source, destination)
        self._clogged[path] = max(self._clogged.get(path, 0), until)

    def tick(self, now: int) -> None:
        """Advance partitions and clogs to tick ``now``."""
        f = self.faults
        r = self.random
        stable = now - self._partition_since >= f.partition_stability
        if len(self.nodes) >= 2 and stable:
            if not self._cut and f.partition_probability and r.random() < f.partition_probability:
                self._partition(now)
            elif self._cut and f.unpartition_probability and r.random() < f.unpartition_probability:
                self._cut.clear()
                self._partition_since = now
        if len(self.nodes) >= 2 and f.clog_probability and r.random() < f.clog_probability:
            a, b = r.sample(self.nodes, 2)
            self._clogged[(a, b)] = now + f.clog_duration
        for path in [p for p, until in self._clogged.items() if until <= now]:
            del self._clogged[path]

    def _partition(self, now: int) -> None:
        r = self.random
        nodes = list(self.nodes)
        r.shuffle(nodes)
        cut = r.randint(1, len(nodes) - 1)
        left, right = nodes[:cut], nodes[cut:]
        one_way = r.random() < self.faults.asymmetric
        for a in left:
            for b in right:
                self._cut.add((a, b))
                if not one_way:
                    self._cut.add((b, a))
        self._partition_since = now

    def send(self, source: int, destination: int, message: Any, now: int) -> None:
        """Queue ``message``; it may be lost, duplicated, delayed, reordered."""
        f = self.faults
        r = self.random
        self.stats["sent"] += 1
        if (source, destination) in self._cut:
            self.stats["lost"] += 1
            return
        if (
            f.drop_kinds
            and type(message).__name__ in f.drop_kinds
            and r.random() < f.drop_kind_probability
        ):
            self.stats["filtered"] += 1
            return
        if f.loss and r.random() < f.loss:
            self.stats["lost"] += 1
            return
        copies = 1
        if f.duplication and r.random() < f.duplication:
            copies = 2
            self.stats["duplicated"] += 1
        for _ in range(copies):
            path = (source, destination)
            if self._in_flight.get(path, 0) >= f.path_capacity:
                self.stats["lost"] += 1
                continue
            delay = f.delay_min
            if f.delay_mean:
                delay += int(r.expovariate(1.0 / f.delay_mean))
            if f.reorder and r.random() < f.reorder:
                delay += r.randint(1, max(1, f.reorder_delay))
            due = max(now + delay, self._clogged.get(path, 0))
            self._in_flight[path] = self._in_flight.get(path, 0) + 1
            self._seq += 1
            heapq.heappush(self._queue, (due, self._seq, Packet(source, destination, message)))

    def deliver(self, now: int) -> list[Packet]:
        """The packets due at or before ``now``, in (due, send order)."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            _, _, packet = heapq.heappop(self._queue)
            path = (packet.source, packet.destination)
            self._in_flight[path] -= 1
            if path in self._cut:
                self.stats["lost"] += 1
                continue
            self.stats["delivered"] += 1
            out.append(packet)
        return out

    def pending(self) -> int:
        """Packets in flight."""
        return len(self._queue)
