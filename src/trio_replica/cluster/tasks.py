"""The Trio tasks of a cluster replica: consensus, bus, journal writer, applier.

Each task owns one thing and talks to the others over memory channels only
(topology in ``docs/architecture.md``, "Cluster replica")::

    transport <-> [bus] --Received--> [consensus] --WriteJournal/PersistViewState/
                    ^                   |   ^        ReadPrepare/ReadHeaders--> [writer]
                    +----Send/SendClient+   +--JournalDurable/ViewStateDurable/...--+
                                        +--Commit batches--> [applier] --Applied--+

* consensus owns the :class:`~.core.Consensus` core (the sequencer on the
  primary and the commit gate everywhere). It never blocks on a downstream
  channel: sends to the bus use ``send_nowait`` and drop when the bus is
  behind (the protocol resends); work for the writer and the applier waits
  in its own outboxes, flushed with ``send_nowait`` after every event, so
  a slow disk or a slow ``apply()`` never delays heartbeats or view changes.
  Time comes from its own tick deadline (``tick_seconds``).
* bus owns the transport endpoint: inbound messages go to consensus with
  ``send_nowait`` (a full inbox drops, like a lossy network); outbound ones
  come from consensus.
* writer owns the journal (and the superblock in it): it appends what
  consensus hands it, already numbered, coalescing everything queued into ONE
  append (one fsync), then reports ``JournalDurable``; a view state is
  written (atomically, in the superblock) before anything queued after it,
  and reported with ``ViewStateDurable``; the core sends no prepare_ok before
  the fsync that covers its op and nothing advertising a view before it is
  durable.
* applier owns the state machine and the snapshot store: it applies
  committed ops only, in op order, reading each body back from the journal
  and checking it is exactly the committed prepare, and reports ``Applied``.
  With ``apply_in_thread`` each committed batch runs in a worker thread, so a
  slow ``apply()`` does not stall the Trio loop (and the protocol's timers).
  At a ``TakeCheckpoint`` (queued right after the checkpoint op's commit) it
  snapshots the machine, writes the checkpoint durably and reports
  ``CheckpointTaken`` with its state digest.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import attrs
import cbor2
import trio

from ..coordinator import SnapshotStore
from ..errors import InvalidCommand, StateMachineError
from ..journal import Journal
from ..stm.protocol import StateMachine
from .checkpoint import Checkpoint, switch_version
from .checkpoint_store import persist_checkpoint
from .core import Consensus, ReplicaStatus
from .errors import ClusterError
from .events import (
    TRANSFER_ACTIONS,
    Action,
    Applied,
    CheckpointTaken,
    Commit,
    Compact,
    Event,
    HeadersRead,
    JournalDurable,
    PersistViewState,
    PrepareRead,
    ReadHeaders,
    ReadPrepare,
    Send,
    SendClient,
    TakeCheckpoint,
    Tick,
    ViewStateDurable,
    WriteJournal,
)
from .header import Operation, decode_version
from .salvage import clear_lost
from .storage import decode_envelope, entries_of, persist_view_state
from .transport import Endpoint, client_address

__all__ = [
    "Applier",
    "Bus",
    "ConsensusTask",
    "JournalWriter",
    "Outbound",
    "Watermark",
    "WriterMessage",
]


@attrs.frozen
class Outbound:
    """A message for the bus to send to ``destination``."""

    destination: int
    message: Any


@attrs.frozen
class Watermark:
    """Ops up to ``op`` are applied: the journal may forget their ring slots
    (what may be deleted is decided by :class:`~.events.Compact` alone)."""

    op: int


WriterMessage = WriteJournal | PersistViewState | ReadPrepare | ReadHeaders | Watermark | Compact
CommitBatch = tuple[tuple[Commit, bytes | None], ...]
"""Committed ops in op order, each with its body when consensus still has it
(handed to the writer in this process life and perhaps not written yet);
None: the applier reads it from the journal (it was journaled before)."""
ApplierMessage = CommitBatch | TakeCheckpoint
"""What the applier receives, in order: commit batches, and a checkpoint to
take after the batch that ends with its op."""


class ConsensusTask:
    """Owns the core; turns its actions into channel messages (see the module docstring)."""

    def __init__(
        self,
        core: Consensus,
        first_actions: list[Action],
        *,
        tick_seconds: float,
        inbox: trio.MemoryReceiveChannel[Event],
        bus: trio.MemorySendChannel[Outbound],
        writer: trio.MemorySendChannel[WriterMessage],
        applier: trio.MemorySendChannel[ApplierMessage],
    ):
        self.core = core
        self.status: ReplicaStatus = core.status_snapshot()
        self.dropped = 0
        """Outbound messages dropped because the bus was behind."""
        self.max_tick_lag = 0.0
        """The latest a tick ever fired after its deadline, in seconds: how far
        the protocol's timers fell behind (a stalled Trio loop shows here)."""
        self._tick_seconds = tick_seconds
        self._inbox = inbox
        self._bus = bus
        self._writer = writer
        self._applier = applier
        self._to_writer: deque[WriterMessage] = deque()
        self._to_applier: deque[ApplierMessage] = deque()
        self._watermark = 0
        self._first = first_actions
        # Bodies handed to the writer and not yet committed: a committed op
        # may be applied before this replica's own write of it is done.
        self._bodies: dict[int, bytes] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Step the core with every event and a tick every ``tick_seconds``."""
        self._carry_out(self._first)
        task_status.started()
        deadline = trio.current_time() + self._tick_seconds
        while True:
            with trio.move_on_at(deadline):
                event = await self._inbox.receive()
                self._step(event)
            now = trio.current_time()
            if now >= deadline:
                self.max_tick_lag = max(self.max_tick_lag, now - deadline)
                # One tick per deadline passed, never a burst: a loop stalled
                # for a while must not fire many timeouts at once.
                deadline = max(deadline + self._tick_seconds, now)
                self._step(Tick())

    def _step(self, event: Event) -> None:
        self._carry_out(self.core.step(event))

    def _carry_out(self, actions: list[Action]) -> None:
        commits: list[tuple[Commit, bytes | None]] = []
        bodies = self._bodies
        for action in actions:
            if isinstance(action, Send):
                self._send(action.to, action.message)
            elif isinstance(action, SendClient):
                self._send(client_address(action.client), action.message)
            elif isinstance(action, Commit):
                commits.append((action, bodies.pop(action.header.op, None)))
            elif isinstance(action, TakeCheckpoint):
                # In order: after the commits before it, before any after it.
                if commits:
                    self._to_applier.append(tuple(commits))
                    commits = []
                self._to_applier.append(action)
            elif isinstance(action, Compact):
                self._to_writer.append(action)
            elif isinstance(action, TRANSFER_ACTIONS):
                # The core emits these only when started with state_transfer=True.
                raise ClusterError(f"state transfer is not wired into this replica: {action!r}")
            else:
                if isinstance(action, WriteJournal):
                    if action.truncate_after is not None:
                        for op in [k for k in bodies if k > action.truncate_after]:
                            del bodies[op]
                    for header, body in action.entries:
                        bodies[header.op] = body
                self._to_writer.append(action)
        if commits:
            self._to_applier.append(tuple(commits))
        core = self.core
        if core.commit_min > self._watermark:
            self._watermark = core.commit_min
            self._to_writer.append(Watermark(core.commit_min))
        self.status = core.status_snapshot()
        self._flush()

    def _send(self, destination: int, message: Any) -> None:
        try:
            self._bus.send_nowait(Outbound(destination, message))
        except trio.WouldBlock:
            self.dropped += 1  # the protocol resends what matters

    def _flush(self) -> None:
        """Hand queued work on as far as the channels have room (never blocks)."""
        for queue, channel in ((self._to_writer, self._writer), (self._to_applier, self._applier)):
            while queue:
                try:
                    channel.send_nowait(queue[0])  # type: ignore[arg-type]
                except trio.WouldBlock:
                    break
                queue.popleft()


class Bus:
    """Owns the transport endpoint (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        inbox: trio.MemorySendChannel[Event],
        outbound: trio.MemoryReceiveChannel[Outbound],
    ):
        self.endpoint = endpoint
        self.dropped = 0
        """Inbound messages dropped because consensus was behind."""
        self._inbox = inbox
        self._outbound = outbound

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Move messages between the endpoint and consensus until cancelled."""
        from .events import Received

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop)
            task_status.started()
            while True:
                _, message = await self.endpoint.receive()
                try:
                    self._inbox.send_nowait(Received(message))
                except trio.WouldBlock:
                    self.dropped += 1

    async def _send_loop(self) -> None:
        async for item in self._outbound:
            self.endpoint.send(item.destination, item.message)


class JournalWriter:
    """Owns the journal (see the module docstring)."""

    def __init__(
        self,
        journal: Journal,
        *,
        inbox: trio.MemorySendChannel[Event],
        work: trio.MemoryReceiveChannel[WriterMessage],
    ):
        self.journal = journal
        self.fsyncs = 0
        self._inbox = inbox
        self._work = work

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Carry out journal work until cancelled."""
        task_status.started()
        while True:
            batch = [await self._work.receive()]
            while True:
                try:
                    batch.append(self._work.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._carry_out(batch)

    async def _carry_out(self, batch: list[WriterMessage]) -> None:
        journal = self.journal
        pending: list[tuple[Any, bytes]] = []
        appended = False

        async def flush() -> None:
            nonlocal appended
            if pending:
                await journal.append(entries_of(pending))
                self.fsyncs += 1
                pending.clear()
                appended = True

        for message in batch:
            if isinstance(message, WriteJournal):
                if message.truncate_after is not None:
                    await flush()
                    await journal.truncate_after(message.truncate_after)
                    appended = True
                for header, body in message.entries:
                    expected = journal.last_op + len(pending) + 1
                    if header.op != expected:
                        # The journal never reports an op faulty (it refuses
                        # corruption at open), so the core never asks for an
                        # in-place rewrite: anything else is a gap or a bug.
                        raise ClusterError(
                            f"journal write of op {header.op}, expected op {expected}"
                        )
                    pending.append((header, body))
            elif isinstance(message, PersistViewState):
                await flush()
                await persist_view_state(journal, message.state)
                await self._inbox.send(ViewStateDurable(message.state))
            elif isinstance(message, Watermark):
                op = min(message.op, journal.last_op + len(pending))
                if op > journal.watermark and op <= journal.last_op:
                    journal.set_watermark(op)
            elif isinstance(message, Compact):
                # The ring watermark (applied ops) is at or above the checkpoint;
                # segments go only up to ``through`` (the retention window stays).
                await flush()
                await journal.compact(through=message.through)
            elif isinstance(message, ReadPrepare):
                await flush()
                found = None
                if journal.first_op <= message.op <= journal.last_op:
                    entry = await journal.read(message.op)
                    header, body = decode_envelope(entry.body, op=entry.op, path=journal.path)
                    if header.checksum == message.checksum:
                        found = (header, body)
                await self._inbox.send(PrepareRead(found, message.destination))
            else:
                await flush()
                headers = []
                low = max(journal.first_op, message.op_min)
                for op in range(low, min(message.op_max, journal.last_op) + 1):
                    entry = await journal.read(op)
                    headers.append(decode_envelope(entry.body, op=op, path=journal.path)[0])
                await self._inbox.send(HeadersRead(tuple(headers), message.destination))
        await flush()
        if appended:
            await clear_lost(journal)
            await self._inbox.send(JournalDurable(journal.last_op))


class Applier:
    """Owns the state machine (see the module docstring)."""

    def __init__(
        self,
        machine: StateMachine,
        journal: Journal,
        *,
        apply_in_thread: bool,
        inbox: trio.MemorySendChannel[Event],
        commits: trio.MemoryReceiveChannel[ApplierMessage],
        store: SnapshotStore,
        applied_op: int = 0,
        machine_version: int | None = None,
    ):
        self.machine = machine
        self.applied_op = applied_op
        self.machine_version = machine_version
        """The version the cluster switched its state machine to, as of
        ``applied_op`` (replicated state; None: no switch yet)."""
        """The last op handed to the applier and done (applied or skipped)."""
        self.checkpoints = 0
        """Checkpoints taken since open."""
        self._store = store
        self._journal = journal
        self._in_thread = apply_in_thread
        self._inbox = inbox
        self._commits = commits

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply committed ops, in order, until cancelled."""
        task_status.started()
        async for batch in self._commits:
            if isinstance(batch, TakeCheckpoint):
                await self._take_checkpoint(batch)
                continue
            work: list[tuple[int, Any, bool]] = []
            last = self.applied_op
            stored_bodies = await self._read_bodies(
                [
                    c.header.op
                    for c, b in batch
                    if c.apply and (b is None or not c.header.valid_body(b))
                ]
            )
            for commit, body in batch:
                header = commit.header
                if header.op != last + 1:
                    raise ClusterError(f"committed op {header.op} out of order (applied {last})")
                last = header.op
                if not commit.apply:
                    continue
                if body is None or not header.valid_body(body):
                    path = self._journal.path
                    record = stored_bodies.pop(header.op, None)
                    if record is None:
                        raise ClusterError(f"committed op {header.op} is not in the journal")
                    stored, body = decode_envelope(record, op=header.op, path=path)
                else:
                    stored = header
                if stored != header:
                    raise ClusterError(
                        f"the journal holds another prepare at committed op {header.op}"
                    )
                switch = header.operation == Operation.SWITCH_VERSION
                work.append(
                    (header.op, decode_version(body) if switch else cbor2.loads(body), switch)
                )
            outcomes: list[Applied] = []
            if work and self._in_thread:
                outcomes = await trio.to_thread.run_sync(self._apply_all, work)
            elif work:
                outcomes = self._apply_all(work)
            # Only now: ``applied_op`` never runs ahead of the machine.
            self.applied_op = last
            for outcome in outcomes:
                await self._inbox.send(outcome)

    async def _read_bodies(self, ops: list[int]) -> dict[int, bytes]:
        """The journaled records of ``ops`` (ascending), by op.

        One op is one read; more (a replica applying a long committed log
        after a restart) are streamed a chunk at a time from the first to the
        last, instead of one read (and one worker-thread trip) per op, which
        made applying after a restart crawl.
        """
        if len(ops) == 1:
            return {ops[0]: (await self._journal.read(ops[0])).body}
        found: dict[int, bytes] = {}
        if not ops:
            return found
        wanted = set(ops)
        stream = self._journal.entries(after=ops[0] - 1)
        try:
            async for entry in stream:
                if entry.op in wanted:
                    found[entry.op] = entry.body
                if entry.op >= ops[-1]:
                    break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return found

    async def _take_checkpoint(self, action: TakeCheckpoint) -> None:
        op = action.header.op
        if op != self.applied_op:
            raise ClusterError(f"checkpoint of op {op} asked with op {self.applied_op} applied")

        def take() -> tuple[Checkpoint, bytes]:
            try:
                state = self.machine.snapshot()
            except Exception as error:
                raise StateMachineError(f"snapshot() at op {op} raised {error!r}", op=op) from error
            checkpoint = Checkpoint(action.header, state, action.clients, self.machine_version)
            return checkpoint, checkpoint.digest()

        if self._in_thread:
            checkpoint, digest = await trio.to_thread.run_sync(take)
        else:
            checkpoint, digest = take()
        await persist_checkpoint(self._store, checkpoint, path=self._journal.path)
        self.checkpoints += 1
        await self._inbox.send(CheckpointTaken(op, digest))

    def _apply_all(self, work: list[tuple[int, Any, bool]]) -> list[Applied]:
        machine = self.machine
        out = []
        for op, command, switch in work:
            if switch and command is None:
                # Deterministic on every replica (the primary refuses these).
                out.append(Applied(op, None, "a version switch needs a non-negative integer"))
                continue
            if switch:
                switch_version(machine, op, command)
                self.machine_version = command
                out.append(Applied(op, command))
                continue
            try:
                result = machine.apply(op, command)
            except InvalidCommand as error:
                out.append(Applied(op, None, error.reason))
            except Exception as error:
                raise StateMachineError(f"apply() of op {op} raised {error!r}", op=op) from error
            else:
                out.append(Applied(op, result))
        return out


def channel_size(pipeline_max: int) -> int:
    """The size of the channels out of consensus: a pipeline's worth of work
    with room for a view change's repair (the outboxes absorb the rest)."""
    return max(4, 2 * pipeline_max)


UNBOUNDED = math.inf
