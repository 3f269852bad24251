"""A small hand-driven cluster for unit tests of the consensus core.

Unlike the simulator, nothing is random: messages wait in ``inbox`` until a
test delivers them, journal writes and view state writes wait in
``pending_journal`` / ``pending_view`` until a test makes them durable. So a
test can stop a cluster exactly between two steps and look.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import cbor2

from trio_replica.cluster import ClusterConfig, Consensus, Operation, Rules, Timing
from trio_replica.cluster.config import CORRECT_RULES, DEFAULT_TIMING
from trio_replica.cluster.events import (
    Action,
    Applied,
    Commit,
    Event,
    HeadersRead,
    JournalDurable,
    PersistViewState,
    PrepareRead,
    ReadHeaders,
    ReadPrepare,
    Received,
    Send,
    SendClient,
    Tick,
    ViewStateDurable,
    WriteJournal,
)
from trio_replica.cluster.messages import Message, Request
from trio_replica.cluster.view_state import ViewState
from trio_replica.testing.cluster_storage import SimReplicaStorage


@attrs.define
class Node:
    core: Consensus | None
    storage: SimReplicaStorage = attrs.field(factory=SimReplicaStorage)
    total: int = 0
    commits: list[tuple[int, bytes, bool]] = attrs.field(factory=list)
    journal_pending: int = 0


class Driver:
    """``n`` cores; messages and durability are delivered only when asked."""

    def __init__(self, n: int, *, rules: Rules = CORRECT_RULES, timing: Timing = DEFAULT_TIMING):
        self.config = ClusterConfig(cluster_id=1, replica_count=n)
        self.rules = rules
        self.timing = timing
        self.nodes = [
            Node(Consensus.start(self.config, r, timing=timing, rules=rules)[0]) for r in range(n)
        ]
        self.inbox: list[tuple[int, int, Message]] = []  # (from, to, message)
        self.client_inbox: list[tuple[int, object]] = []
        self.auto_durable = True
        self.down: set[int] = set()
        self.sent: list[tuple[int, int, Message]] = []
        self.lives = 0

    def core(self, r: int) -> Consensus:
        core = self.nodes[r].core
        assert core is not None
        return core

    def step(self, r: int, event: Event) -> None:
        if r in self.down or self.nodes[r].core is None:
            return
        self.execute(r, self.core(r).step(event))

    def execute(self, r: int, actions: Iterable[Action]) -> None:
        work = list(actions)
        node = self.nodes[r]
        while work:
            action = work.pop(0)
            core = self.core(r)
            if isinstance(action, Send):
                self.sent.append((r, action.to, action.message))
                self.inbox.append((r, action.to, action.message))
            elif isinstance(action, SendClient):
                self.client_inbox.append((action.client, action.message))
            elif isinstance(action, WriteJournal):
                node.storage.write(action.truncate_after, action.entries)
                node.journal_pending += 1
            elif isinstance(action, PersistViewState):
                node.storage.persist(action.state)
            elif isinstance(action, ReadPrepare):
                found = node.storage.read_prepare(action.op, action.checksum)
                work = core.step(PrepareRead(found, action.destination)) + work
            elif isinstance(action, ReadHeaders):
                headers = node.storage.headers(action.op_min, action.op_max)
                work = core.step(HeadersRead(headers, action.destination)) + work
            elif isinstance(action, Commit):
                node.commits.append((action.header.op, action.header.checksum, action.apply))
                if action.apply:
                    _, body = node.storage.body_at(action.header.op)
                    node.total += cbor2.loads(body)["add"]
                    work = core.step(Applied(action.header.op, node.total)) + work
        if self.auto_durable:
            self.make_durable(r)

    def make_durable(self, r: int) -> None:
        """Complete every pending view state write and journal fsync of ``r``."""
        node = self.nodes[r]
        while node.storage.view_state_pending:
            state = node.storage.view_state_synced()
            self.execute_no_durable(r, ViewStateDurable(state))
        if node.journal_pending:
            node.journal_pending = 0
            self.execute_no_durable(r, JournalDurable(node.storage.sync()))

    def execute_no_durable(self, r: int, event: Event) -> None:
        auto, self.auto_durable = self.auto_durable, False
        try:
            self.step(r, event)
        finally:
            self.auto_durable = auto
        if auto:
            self.make_durable(r)

    def deliver(self, *, rounds: int = 50, drop: set[int] | None = None) -> None:
        """Deliver messages until none are left (``drop``: replicas cut off)."""
        for _ in range(rounds):
            if not self.inbox:
                return
            batch, self.inbox = self.inbox, []
            for source, to, message in batch:
                if drop and (source in drop or to in drop):
                    continue
                if to in self.down:
                    continue
                self.step(to, Received(message))

    def tick(self, count: int = 1, *, drop: set[int] | None = None) -> None:
        for _ in range(count):
            for r in range(len(self.nodes)):
                self.step(r, Tick())
            self.deliver(drop=drop)

    def request(self, to: int, client: int, session: int, number: int, add: int) -> None:
        body = cbor2.dumps({"add": add})
        self.step(to, Received(Request(client, session, number, Operation.REQUEST, body)))

    def register(self, to: int, client: int) -> None:
        self.step(to, Received(Request(client, 0, 0, Operation.REGISTER, b"")))

    def crash(self, r: int, *, power_loss: bool = False) -> None:
        import random

        self.nodes[r].storage.crash(random.Random(0), power_loss=power_loss, torn_probability=0)
        self.nodes[r].core = None
        self.down.add(r)

    def lose_disk(self, r: int) -> None:
        """The crashed replica's data directory is replaced by a blank one
        formatted to rejoin (``format --recover``)."""
        assert r in self.down
        self.nodes[r].storage = SimReplicaStorage()
        self.nodes[r].storage.view_state = ViewState(rejoining=True)

    def restart(self, r: int, *, head_uncertain: bool = False) -> None:
        node = self.nodes[r]
        self.lives += 1
        core, actions = Consensus.start(
            self.config,
            r,
            state=node.storage.view_state,
            journal=node.storage.recovered(head_uncertain),
            timing=self.timing,
            rules=self.rules,
            nonce=self.lives,
        )
        node.core = core
        node.total = 0
        node.commits = []
        self.down.discard(r)
        self.execute(r, actions)

    def view_state(self, r: int) -> ViewState:
        return self.nodes[r].storage.view_state
