"""The Viewstamped Replication core: a plain object stepped with events.

:class:`Consensus` holds one replica's protocol state and does no I/O: its
owner feeds it events (:mod:`.events`) and carries out the actions it returns,
in order. It is the sequencer on the primary and the commit gate everywhere:
an op reaches the applier (a :class:`~.events.Commit` action) only once it
is committed, in op order.

Sources: VR Revisited (Liskov and Cowling, MIT-CSAIL-TR-2012-021) for the
protocol; TigerBeetle's VSR for the prepare header hash chain, nacks in the
view change, faulty-vs-blank, repair by header chain and the client table.

What the core knows about its journal (the owner keeps the bytes):

* ``journal``: the headers it handed to the journal, ops 1..journal_op
  without gaps (the journal is append-only with a suffix truncation);
  ``faulty`` ops are there but unreadable; ``durable_op`` is the journal's
  report of what is fsynced. ``lost_to``: ops up to it that were durable
  here once but were cut from the journal at recovery because of damage
  (protocol-aware recovery): like faulty ops they may have been acked, so
  they are never a nack until the journal holds them durably again.
* ``log``: the headers of the view's log as far as it knows them. In normal
  status the log is authoritative (from the start_view or the primary's
  prepares); headers below are trusted only if they link to it by ``parent``
  checksums (the "linked" region, see :meth:`Consensus._stitch`).

Rules kept here, each next to its code:

* A prepare_ok covers only ops that are durable and linked (no ack before fsync).
* Nothing that advertises a view leaves before that view is durable
  (sends are held until :class:`~.events.ViewStateDurable`).
* The journal is truncated only to install a log decided by a
  do_view_change quorum (start_view, or the new primary's own choice), and
  only above the first op whose journaled header is proven wrong.
* Prepares ahead of the journal's next op are held, at most
  ``Timing.hold_max`` of them (the lowest ops win); the rest are dropped and
  repaired later. Repair is driven by ticks and rotates peers.
"""

from __future__ import annotations

import attrs

from .checkpoint import Checkpoint, StateDivergenceError, is_checkpoint_op
from .client_table import ClientTable, CommitKind
from .config import CORRECT_RULES, DEFAULT_TIMING, ClusterConfig, Rules, Timing
from .errors import ProtocolInvariantError
from .events import (
    Action,
    Applied,
    CheckpointChunkRead,
    CheckpointInstalled,
    CheckpointRejected,
    CheckpointTaken,
    Commit,
    Compact,
    Event,
    HeadersRead,
    InstallCheckpoint,
    JournalDurable,
    PersistViewState,
    PinCheckpoint,
    PrepareRead,
    ReadCheckpointChunk,
    ReadHeaders,
    ReadPrepare,
    Received,
    RestartJournal,
    RestoreCheckpoint,
    Send,
    SendClient,
    StoreCheckpointChunk,
    TakeCheckpoint,
    Tick,
    ViewStateDurable,
    WriteJournal,
)
from .header import ROOT, Operation, PrepareHeader, checksum, decode_version, make_header
from .messages import (
    ADVERTISES_NORMAL,
    ADVERTISES_VIEW,
    CheckpointChunk,
    CheckpointDigest,
    ClientMessage,
    DoViewChange,
    EntryState,
    Eviction,
    Headers,
    Message,
    Prepare,
    PrepareOk,
    Redirect,
    RepairPrepare,
    Reply,
    Request,
    RequestCheckpoint,
    RequestHeaders,
    RequestPrepare,
    RequestStartView,
    Retained,
    StartView,
    StartViewChange,
    SuffixEntry,
)
from .messages import (
    Commit as CommitMessage,
)
from .restart import Status, restart_decision
from .view_change import choose_log
from .view_state import NO_CHECKPOINT, ViewState

__all__ = ["Consensus", "RecoveredJournal", "ReplicaStatus"]


@attrs.define
class _Transfer:
    """A state transfer in progress: checkpoint ``op`` (prepare ``checksum``),
    vouched for by ``sources`` (who are asked, in turn), ``offset`` bytes
    stored of ``total``."""

    op: int
    checksum: bytes
    sources: tuple[int, ...]
    offset: int = 0
    total: int | None = None
    turn: int = 0
    asked: int = 0
    complete: bool = False


@attrs.frozen
class RecoveredJournal:
    """What journal recovery found: ``headers`` of ops 1..n without gaps (all
    durable), the ``faulty`` ops among them (header known, body unreadable),
    and whether the head is uncertain (a torn tail was cut). ``first_op``:
    the op the journal starts at (ops below were compacted, or dropped by a
    restart after an installed checkpoint); 0 when not known.

    ``lost_to`` and ``lost``: damage made recovery cut the journal after op
    n, and ops n+1..``lost_to`` were durable here before (their records, or
    later ones, were seen in the bytes cut); ``lost`` holds the prepare
    headers that could still be read from them (each verified by its own
    checksum; some may be unknown). Those ops are repaired from peers and
    never nacked meanwhile (``docs/decisions.md``, protocol-aware recovery).
    """

    headers: tuple[PrepareHeader, ...] = ()
    faulty: frozenset[int] = frozenset()
    head_uncertain: bool = False
    first_op: int = 0
    lost: tuple[PrepareHeader, ...] = ()
    lost_to: int = 0


@attrs.frozen
class ReplicaStatus:
    """A snapshot of the core's state, for status displays and checkers."""

    replica: int
    status: Status
    view: int
    log_view: int
    primary: bool
    op: int
    commit_min: int
    commit_max: int
    journal_op: int
    durable_op: int
    checkpoint_op: int = 0
    """The newest checkpoint whose snapshot is durable (0: none)."""
    rejoining: bool = False


class Consensus:
    """One replica's VSR state machine. Build with :meth:`start` (fresh or after
    a restart), then call :meth:`step` with each event; it returns the actions
    to carry out, in order.

    Raises :class:`~.errors.ProtocolInvariantError` from :meth:`step` if its own
    state contradicts the protocol (never under correct rules).
    """

    def __init__(
        self,
        config: ClusterConfig,
        replica: int,
        *,
        timing: Timing = DEFAULT_TIMING,
        rules: Rules = CORRECT_RULES,
        machine_version: int | None = None,
    ):
        if not 0 <= replica < config.replica_count:
            raise ValueError(f"replica {replica} not in a cluster of {config.replica_count}")
        self.config = config
        self.replica = replica
        self.timing = timing
        self.rules = rules
        self.machine_version = machine_version
        """The version of the state machine code this replica runs (None:
        unknown): as primary it refuses a switch to a version above it."""
        self.status = Status.NORMAL
        self.view = 0
        self.log_view = 0
        self.op = 0
        self.commit_min = 0
        self.commit_max = 0
        self.log: dict[int, PrepareHeader] = {0: ROOT}
        self.journal: dict[int, PrepareHeader] = {0: ROOT}
        self.journal_op = 0
        self.durable_op = 0
        self.faulty: set[int] = set()
        # A replica that lost its data neither votes nor nacks until it holds
        # every op up to a start_view built after it restarted (restart.py, row 6).
        self.rejoining = False
        self.nonce = 0
        self._rejoin_target: int | None = None
        # state transfer (see "state transfer" below)
        self.state_transfer = False
        self._transfer: _Transfer | None = None
        self._installing: PrepareHeader | None = None
        self._pins: dict[int, int] = {}
        self.lost_to = 0
        self.client_table = ClientTable(
            config.clients_max,
            dedup_at_commit=rules.dedup_at_commit,
            update_at_prepare=not rules.client_table_at_commit,
        )
        self.now = 0
        self._out: list[Action] = []
        # durable view state and the sends waiting for it
        self._durable = ViewState()
        self._pending: list[ViewState] = []
        self._held_sends: list[Send] = []
        # linked region of the log: ops >= _linked_low link up to ``op``
        self._linked_low = 1
        self._expected: dict[int, bytes] = {}
        # bodies waiting for their turn to be journaled (ahead of a gap, or repairs)
        self._held: dict[int, tuple[PrepareHeader, bytes]] = {}
        # primary
        self._pipeline: dict[int, tuple[PrepareHeader, bytes, int]] = {}
        self._acks: dict[int, int] = {}
        self._queue: list[Request] = []
        self._progress_tick = 0
        self._heartbeat_tick = 0
        # backup
        self._primary_tick = 0
        self._acked_sent = -1
        # view change
        self._svc_from: set[int] = set()
        self._dvcs: dict[int, DoViewChange] = {}
        self._dvc_sent = False
        self._vc_tick = 0
        self._vc_wait = timing.view_change_timeout
        """Ticks the current view change waits before moving on to the next view."""
        self._resend_tick = 0
        self._recovering_for = 0
        # repair
        self._repair_peer = (replica + 1) % config.replica_count
        self._repair_tick = 0
        self._repair_more = False
        # op -> (tick asked, attempt) of the bodies asked for (repair_window at most)
        self._repair_sent: dict[int, tuple[int, int]] = {}
        # peer -> the tick it last answered a body repair
        self._repair_answered: dict[int, int] = {}
        # headers of ops up to this one were forgotten (see _trim)
        self._trimmed = 0
        # replies waiting for Applied
        self._awaiting_apply: dict[int, PrepareHeader] = {}
        # checkpoints (see _maybe_take_checkpoint): the newest durable one,
        # the one committed and waiting for its applies, the one being taken
        self.checkpoint: PrepareHeader | None = None
        """The prepare of the newest checkpoint whose snapshot is durable."""
        self.retained_from = 1
        """The lowest op this replica still answers repair for: lower ones may
        be compacted (or were never held), and asking gets ``Retained``."""
        self.peer_retained: dict[int, Retained] = {}
        """The newest ``Retained`` answer from each peer (what it keeps)."""
        self.divergent_peers: list[tuple[int, int]] = []
        """(op, replica) of each peer whose state digest at a checkpoint differs
        from the quorum's that this replica holds too (the peer stops itself)."""
        self._checkpoint_due: PrepareHeader | None = None
        self._checkpoint_taking: PrepareHeader | None = None
        self._compacted = 0
        self._digests: dict[int, dict[int, bytes]] = {}
        self._digest_tick = 0

    # --- construction -------------------------------------------------------

    @classmethod
    def start(
        cls,
        config: ClusterConfig,
        replica: int,
        *,
        state: ViewState | None = None,
        journal: RecoveredJournal | None = None,
        timing: Timing = DEFAULT_TIMING,
        rules: Rules = CORRECT_RULES,
        checkpoint: Checkpoint | None = None,
        nonce: int = 0,
        machine_version: int | None = None,
        state_transfer: bool = False,
    ) -> tuple[Consensus, list[Action]]:
        """A core for a freshly formatted replica (``state`` None) or one restarting
        from its durable view state and recovered journal (the restart decision
        table in :mod:`.restart`). Returns the core and its first actions.

        ``checkpoint`` is the checkpoint the view state names
        (``state.checkpoint_op``, ``state.checkpoint_checksum``), loaded from its
        snapshot; the owner restores the state machine from the same
        checkpoint. The core then starts committed up to its op, with its
        client table, and the recovered journal's headers may start anywhere
        from op 1 up to the op after the checkpoint (ops below were compacted).
        Raises ``ValueError`` when the checkpoint is not the one the view
        state names, or the journal does not reach it.

        ``state_transfer``: the owner carries out the state transfer actions
        (:data:`~.events.TRANSFER_ACTIONS`); without it the core neither
        fetches nor serves checkpoints.

        ``nonce`` must be new in every process life (random, never 0) for a
        replica whose view state says it is rejoining (``ValueError``
        otherwise): it tells the start_view answering this life's request
        from a stale one.
        """
        core = cls(config, replica, timing=timing, rules=rules, machine_version=machine_version)
        core.nonce = nonce
        core.state_transfer = state_transfer
        if state is None:
            # Freshly formatted: view 0 is normal, its primary is replica 0.
            return core, []
        journal = journal or RecoveredJournal()
        if state.rejoining and config.replica_count > 1:
            if rules.rejoining_does_not_vote:
                if nonce == 0:
                    raise ValueError("a rejoining replica needs a nonzero nonce")
                core.rejoining = True
            else:
                # Broken on purpose (tests only): it acts as a freshly formatted replica.
                state = attrs.evolve(state, rejoining=False)
        core._durable = state
        base = 0
        if checkpoint is not None:
            mark = checkpoint.header
            if (mark.op, mark.checksum) != (state.checkpoint_op, state.checkpoint_checksum):
                raise ValueError(
                    f"checkpoint op {mark.op} is not the one the view state names "
                    f"(op {state.checkpoint_op})"
                )
            base = mark.op
        elif state.checkpoint_op:
            raise ValueError(f"the view state names checkpoint op {state.checkpoint_op}")
        first = journal.headers[0].op if journal.headers else journal.first_op or base + 1
        if not 1 <= first <= base + 1:
            # Also a journal restarted after a checkpoint the view state does
            # not name: recovery accepts a checkpoint newer than the journal
            # only when the view state vouches for it, never the other way.
            raise ValueError(
                f"the recovered journal starts at op {first}: ops {base + 1}..{first - 1} "
                f"after checkpoint op {base} are missing"
            )
        for at, header in enumerate(journal.headers, start=first):
            if header.op != at:
                raise ValueError("recovered journal headers must be consecutive ops")
            core.journal[at] = header
            core.log[at] = header
        core.journal_op = core.durable_op = max(base, first + len(journal.headers) - 1)
        core.faulty = {op for op in journal.faulty if op > base}
        core.retained_from = first
        core._trimmed = first - 1
        if checkpoint is not None:
            mark = checkpoint.header
            if core.journal.get(mark.op, mark) != mark:
                raise ValueError(f"the journal holds another prepare at checkpoint op {mark.op}")
            core.journal[mark.op] = core.log[mark.op] = mark
            core.client_table.restore(checkpoint.clients)
            core.commit_min = mark.op
            core.checkpoint = mark
            core._compacted = max(0, mark.op - timing.checkpoint_retain)
            core._digests[mark.op] = {replica: checkpoint.digest()}
        # Ops cut at recovery because of damage: their salvaged headers join
        # the log like journaled ones (the stitch and the view state's suffix
        # below judge them the same way), and none of them is ever a nack.
        remember = rules.lost_is_not_nack and journal.lost_to > core.journal_op
        core.lost_to = journal.lost_to if remember else 0
        for header in journal.lost:
            if core.journal_op < header.op <= core.lost_to and header.valid():
                core.log[header.op] = header
        core.commit_max = max(state.commit_max, base)
        core.view = state.view
        core.log_view = state.log_view
        # The durable suffix headers are the log as of log_view: they override
        # journal entries they contradict, and journal entries above them from
        # an older view are stale (a crash came between persisting the view
        # state and truncating the journal).
        if state.headers:
            top = state.headers[-1].op
            for header in state.headers:
                if header.op > base:
                    core.log[header.op] = header
            for at in [k for k in core.log if k > top and core.log[k].view < state.log_view]:
                del core.log[at]
        core.op = max(core.log)
        decision = restart_decision(
            replica_count=config.replica_count,
            replica=replica,
            state=state,
            head_uncertain=journal.head_uncertain,
            recovers=rules.restart_recovers,
        )
        core.status = decision.status
        core._stitch()
        if decision.status == Status.RECOVERING:
            # Ask before acting: the cluster may be healthy, in this view or a
            # later one (the restart table in .restart).
            core._recovering_for = 0
            core._broadcast(RequestStartView(core.view, core.replica, core.nonce))
        elif decision.status == Status.VIEW_CHANGE:
            core._start_view_change(decision.view)
        elif decision.status == Status.NORMAL and config.replica_count == 1:
            core.commit_max = max(core.commit_max, core._ack_op())
            core._commit_walk()
        elif decision.status == Status.NORMAL:
            core._truncate_conflicts()
        return core, core._take()

    # --- public ------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        """Whether this replica is the primary of its current view."""
        return self.config.primary(self.view) == self.replica

    def status_snapshot(self) -> ReplicaStatus:
        """The current status, as a value."""
        return ReplicaStatus(
            replica=self.replica,
            status=self.status,
            view=self.view,
            log_view=self.log_view,
            primary=self.is_primary and self.status == Status.NORMAL,
            op=self.op,
            commit_min=self.commit_min,
            commit_max=self.commit_max,
            journal_op=self.journal_op,
            durable_op=self.durable_op,
            checkpoint_op=self.checkpoint_op,
            rejoining=self.rejoining,
        )

    def step(self, event: Event) -> list[Action]:
        """Feed one event; return the actions to carry out, in order."""
        if isinstance(event, Tick):
            self.now += 1
            self._on_tick()
        elif isinstance(event, Received):
            self._on_message(event.message)
        elif isinstance(event, JournalDurable):
            self.durable_op = min(event.op, self.journal_op)
            self._after_journal_change()
        elif isinstance(event, ViewStateDurable):
            self._on_view_state_durable(event.state)
        elif isinstance(event, Applied):
            self._on_applied(event)
        elif isinstance(event, CheckpointTaken):
            self._on_checkpoint_taken(event)
        elif isinstance(event, CheckpointChunkRead):
            self._on_chunk_read(event)
        elif isinstance(event, CheckpointInstalled):
            self._on_checkpoint_installed(event.checkpoint)
        elif isinstance(event, CheckpointRejected):
            if self._transfer is not None and self._transfer.op == event.op:
                self._transfer = None  # started over, maybe from another checkpoint
        elif isinstance(event, HeadersRead) and event.headers:
            self._send(event.destination, Headers(self.view, self.replica, event.headers))
        elif isinstance(event, PrepareRead) and event.prepare is not None:
            header, body = event.prepare
            self._send(event.destination, RepairPrepare(self.view, self.replica, header, body))
        return self._take()

    # --- plumbing -------------------------------------------------------------

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _send(self, to: int, message: Message) -> None:
        if to == self.replica:
            return
        action = Send(to, message)
        if self.rules.view_durable_before_send and self._must_hold(message):
            # Durable before send: a message advertising a view waits for it.
            self._held_sends.append(action)
        else:
            self._out.append(action)

    def _must_hold(self, message: Message) -> bool:
        if not isinstance(message, ADVERTISES_VIEW):
            return False
        view = message.view
        if view > self._durable.view:
            return True
        if isinstance(message, ADVERTISES_NORMAL) and view > self._durable.log_view:
            return True
        return isinstance(message, DoViewChange) and message.log_view > self._durable.log_view

    def _broadcast(self, message: Message) -> None:
        for to in range(self.config.replica_count):
            self._send(to, message)

    def _reply(self, client: int, message: ClientMessage) -> None:
        self._out.append(SendClient(client, message))

    def _persist(self) -> None:
        """Hand the current view state to the owner to make durable."""
        low = max(0, min(self.commit_max, self.op) - self.timing.pipeline_max)
        low = max(low, self.op - 4 * self.timing.pipeline_max)
        headers = tuple(self.log[k] for k in range(low + 1, self.op + 1) if k in self.log)
        state = ViewState(
            view=self.view,
            log_view=self.log_view,
            commit_max=max(self.commit_max, self._durable.commit_max),
            checkpoint_op=self.checkpoint_op,
            headers=headers,
            checkpoint_checksum=(
                NO_CHECKPOINT if self.checkpoint is None else self.checkpoint.checksum
            ),
            rejoining=self.rejoining,
        )
        self._pending.append(state)
        self._out.append(PersistViewState(state))

    def _on_view_state_durable(self, state: ViewState) -> None:
        if state in self._pending:
            self._pending.remove(state)
        if state.advances(self._durable):
            self._durable = state
        self._checkpoint_durable()
        self._restart_after_install()
        still: list[Send] = []
        for action in self._held_sends:
            if self._must_hold(action.message):
                still.append(action)
            else:
                self._out.append(action)
        self._held_sends = still

    def _fail(self, reason: str, op: int | None = None) -> ProtocolInvariantError:
        return ProtocolInvariantError(reason, replica=self.replica, view=self.view, op=op)

    # --- the log, the journal, and their link ----------------------------------

    def _stitch(self) -> None:
        """Verify the log from its head down by parent checksums.

        A header that does not link to its successor is stale (from an older
        view) and is forgotten; a missing one whose checksum is known is taken
        from the journal if the journal holds exactly that. ``_linked_low`` is
        the lowest op from which every header up to ``op`` is known and linked;
        only that region is trusted for acks and commits.
        """
        self._expected.clear()
        expected: bytes | None = None
        at = self.op
        linked = True
        self._linked_low = self.op + 1
        while at > self.commit_min:
            header = self.log.get(at)
            if header is not None and expected is not None and header.checksum != expected:
                del self.log[at]
                header = None
            if header is None and expected is not None:
                mine = self.journal.get(at)
                if mine is not None and mine.checksum == expected:
                    self.log[at] = mine
                    header = mine
                else:
                    self._expected[at] = expected
            if header is None:
                linked = False
                expected = None
            else:
                expected = header.parent
                if linked:
                    self._linked_low = at
            at -= 1
        if linked and expected is not None:
            base = self.journal.get(self.commit_min)
            if base is None or base.checksum != expected:
                raise self._fail("the log does not link to the committed op", self.commit_min)

    def _linked(self, at: int) -> bool:
        return at <= self.commit_min or self._linked_low <= at <= self.op

    def _match_op(self) -> int:
        """The highest op up to which the journal holds exactly the linked log."""
        at = self.commit_min
        while at < self.journal_op and self._linked(at + 1):
            mine = self.journal[at + 1]
            if self.log.get(at + 1) != mine:
                break
            at += 1
        return at

    def _ack_op(self) -> int:
        """The op this replica may ack: durable, readable, linked, matching."""
        limit = self.durable_op if self.rules.ack_after_durable else self.journal_op
        top = min(self._match_op(), limit)
        # Committed ops are applied once the journal has them, durable or not:
        # so commit_min is no lower bound for the ack.
        unreadable = [k for k in self.faulty if k <= top]
        return min(unreadable) - 1 if unreadable else top

    def _first_conflict(self) -> int | None:
        """The lowest journaled op whose header the linked log proves wrong."""
        low = max(self.commit_min + 1, self._linked_low - 1)
        for at in range(low, self.journal_op + 1):
            mine = self.journal[at]
            known = self.log.get(at)
            if known is not None and self._linked(at) and known != mine:
                return at
            expected = self._expected.get(at)
            if expected is not None and expected != mine.checksum:
                return at
            if at > self.op:
                return at
        return None

    def _truncate_conflicts(self) -> None:
        """Cut the journal above its first proven-wrong op (normal status only:
        the log is then the one a do_view_change quorum decided)."""
        if self.status != Status.NORMAL or self._installing is not None:
            return
        conflict = self._first_conflict()
        if conflict is None:
            return
        if conflict <= self.commit_min:
            raise self._fail("a committed op conflicts with the decided log", conflict)
        for at in range(conflict, self.journal_op + 1):
            del self.journal[at]
            self.faulty.discard(at)
        self.journal_op = conflict - 1
        self.durable_op = min(self.durable_op, self.journal_op)
        self._out.append(WriteJournal(truncate_after=self.journal_op, entries=()))

    def _accept_header(self, header: PrepareHeader) -> bool:
        """Put a header into the log if it belongs there. Headers above ``op``
        are taken only from the primary's prepares (authoritative); below,
        only if they link to the known successor or fill a known checksum."""
        at = header.op
        if at <= self.commit_min or at > self.op:
            return False
        known = self.log.get(at)
        if known is not None:
            return known == header
        nxt = self.log.get(at + 1)
        if (nxt is not None and nxt.parent == header.checksum) or self._expected.get(
            at
        ) == header.checksum:
            self.log[at] = header
            return True
        return False

    def _write_ready(self) -> None:
        """Journal every held body that can go now: the next op, or an
        in-place rewrite of a faulty op."""
        if self.status != Status.NORMAL or self._installing is not None:
            return
        entries: list[tuple[PrepareHeader, bytes]] = []
        for at in sorted(self.faulty):
            held = self._held.get(at)
            if held is not None and self.journal.get(at) == held[0]:
                entries.append(held)
                self.faulty.discard(at)
                del self._held[at]
        if entries:
            self._out.append(WriteJournal(truncate_after=None, entries=tuple(entries)))
            entries = []
        match = self._match_op()
        if match < self.journal_op:
            return  # wait for the conflict to be truncated
        at = self.journal_op + 1
        while at <= self.op and self._linked(at):
            held = self._held.get(at)
            if held is not None and self.log.get(at) != held[0]:
                del self._held[at]  # a prepare of another view, proven stale
                held = None
            if held is None:
                break
            del self._held[at]
            entries.append(held)
            self.journal[at] = held[0]
            self.journal_op = at
            if self.client_table.update_at_prepare:
                self.client_table.prepared(held[0])
            at += 1
        if entries:
            self._out.append(WriteJournal(truncate_after=None, entries=tuple(entries)))
        # anything held at or below what is now journaled is useless
        for k in [k for k in self._held if k <= self.journal_op and k not in self.faulty]:
            del self._held[k]

    def _hold(self, header: PrepareHeader, body: bytes) -> None:
        """Keep a body until it can be journaled; at most ``hold_max`` (lowest ops win)."""
        self._held[header.op] = (header, body)
        while len(self._held) > self.timing.hold_max:
            del self._held[max(self._held)]

    def _after_journal_change(self) -> None:
        if self.status != Status.NORMAL:
            return
        if self.is_primary:
            self._primary_commit()
        else:
            self._send_ack()
            self._commit_walk()
        self._check_caught_up()

    def _check_caught_up(self) -> None:
        """A rejoining replica is caught up once its journal holds, durably and
        readably, every op up to the start_view it installed after its restart:
        every op it may have acked before it lost its data is among them (a
        start_view built after the loss holds every op that may have been
        committed). From then on it votes and nacks like any replica."""
        target = self._rejoin_target
        if not self.rejoining or self.status != Status.NORMAL or target is None:
            return
        if self._ack_op() >= target:
            self.rejoining = False
            self._rejoin_target = None
            self._persist()

    # --- committing ------------------------------------------------------------

    def _commit_walk(self) -> None:
        """Hand committed ops to the applier, in order, as far as they are held
        (normal status only: then the log is the view's)."""
        if self.status != Status.NORMAL:
            return
        while self.commit_min < self.commit_max and self._checkpoint_due is None:
            at = self.commit_min + 1
            if at > self.journal_op or at in self.faulty or not self._linked(at):
                break
            checkpoint = is_checkpoint_op(at, self.config.checkpoint_interval)
            if checkpoint and self._checkpoint_taking is not None:
                break  # one checkpoint at a time: the previous one is not durable yet
            header = self.log.get(at)
            if header is None or self.journal[at] != header:
                break
            if header.parent != self.journal[at - 1].checksum:
                raise self._fail("a committed op does not link to its predecessor", at)
            self.commit_min = at
            self._commit_one(header)
            if checkpoint:
                self._checkpoint_due = header
                self._maybe_take_checkpoint()
        self._trim()

    def _trim(self) -> None:
        """Forget headers more than ``Timing.headers_max`` ops below commit_min
        (memory bounded by configuration). Unreadable ops keep theirs, for repair."""
        floor = self.commit_min - self.timing.headers_max
        while self._trimmed < floor:
            self._trimmed += 1
            if self._trimmed not in self.faulty:
                self.log.pop(self._trimmed, None)
                self.journal.pop(self._trimmed, None)

    def _commit_one(self, header: PrepareHeader) -> None:
        if header.operation == Operation.ROOT:
            self._out.append(Commit(header, apply=False))
            return
        outcome = self.client_table.commit(header)
        apply = outcome.kind == CommitKind.APPLY
        self._out.append(Commit(header, apply=apply))
        primary = self.status == Status.NORMAL and self.is_primary
        if apply:
            self._awaiting_apply[header.op] = header
            return
        if not primary:
            return
        session = self.client_table.get(header.client)
        if outcome.kind in (CommitKind.REGISTERED, CommitKind.DUPLICATE) and session is not None:
            if header.operation == Operation.REGISTER:
                self._reply_session(header, session.session)
            elif session.request == header.request and session.applied:
                self._reply(
                    header.client,
                    Reply(
                        self.view,
                        self.replica,
                        header.client,
                        header.request,
                        session.reply_op,
                        session.result,
                        session.rejected,
                    ),
                )

    def _reply_session(self, header: PrepareHeader, session: int) -> None:
        self._reply(
            header.client,
            Reply(self.view, self.replica, header.client, 0, session, session),
        )

    def _on_applied(self, event: Applied) -> None:
        header = self._awaiting_apply.pop(event.op, None)
        if header is None:
            return
        self.client_table.applied(event.op, header.client, event.result, event.rejected)
        if self.status == Status.NORMAL and self.is_primary:
            self._reply(
                header.client,
                Reply(
                    self.view,
                    self.replica,
                    header.client,
                    header.request,
                    event.op,
                    event.result,
                    event.rejected,
                ),
            )
        if self._checkpoint_due is not None and not self._awaiting_apply:
            self._maybe_take_checkpoint()
            self._commit_walk()

    # --- checkpoints ----------------------------------------------------------
    #
    # A committed op that is a multiple of ``checkpoint_interval`` is a
    # checkpoint (the same ops on every replica). The commit walk stops right
    # after it until every op up to it is applied (so the client table holds
    # every reply up to it and the applier has applied exactly that far), then
    # asks for the snapshot (TakeCheckpoint) and goes on. Only when the
    # snapshot is durable (CheckpointTaken) does the view state name it, and
    # only when that view state is durable may the journal be compacted, and
    # then only below ``checkpoint_op - checkpoint_retain``: a crash at any
    # step leaves a view state naming a durable snapshot and a journal that
    # reaches it. One checkpoint is in flight at a time.

    @property
    def checkpoint_op(self) -> int:
        """The op of the newest checkpoint whose snapshot is durable (0: none)."""
        return 0 if self.checkpoint is None else self.checkpoint.op

    def _maybe_take_checkpoint(self) -> None:
        header = self._checkpoint_due
        if header is None or self._awaiting_apply:
            return
        self._checkpoint_due = None
        self._checkpoint_taking = header
        clients = self.client_table.canonical() if self.rules.client_table_in_checkpoint else []
        self._out.append(TakeCheckpoint(header, clients))

    def _on_checkpoint_taken(self, event: CheckpointTaken) -> None:
        header = self._checkpoint_taking
        if header is None or event.op != header.op or event.op <= self.checkpoint_op:
            return
        self.checkpoint = header
        self._persist()  # the view state names it; compaction waits for that
        self._digests.setdefault(event.op, {})[self.replica] = event.digest
        self._bound_digests()
        self._broadcast_digest()
        self._compare_digests(event.op)

    def _checkpoint_durable(self) -> None:
        """After a view state write: once it names the checkpoint being taken,
        the next checkpoint may be taken and the journal compacted."""
        durable = self._durable.checkpoint_op
        taking = self._checkpoint_taking
        if taking is not None and durable >= taking.op:
            self._checkpoint_taking = None
            self._commit_walk()
        through = durable - self.timing.checkpoint_retain
        if through > self._compacted:
            self._compacted = through
            self.retained_from = max(self.retained_from, through + 1)
            self._out.append(Compact(through))

    def _broadcast_digest(self) -> None:
        mark = self.checkpoint
        if mark is None:
            return
        digest = self._digests.get(mark.op, {}).get(self.replica)
        if digest is None:
            return
        self._digest_tick = self.now
        self._broadcast(CheckpointDigest(self.view, self.replica, mark.op, mark.checksum, digest))

    def _bound_digests(self) -> None:
        # Memory bounded: the newest few checkpoint ops only.
        while len(self._digests) > 4:
            del self._digests[min(self._digests)]

    def _on_checkpoint_digest(self, message: CheckpointDigest) -> None:
        if message.replica == self.replica or not is_checkpoint_op(
            message.op, self.config.checkpoint_interval
        ):
            return
        mine = self.journal.get(message.op) or self.log.get(message.op)
        if mine is not None and message.op <= self.commit_min and mine.checksum != message.checksum:
            return  # another prepare at that op: the agreement checks' business, not digests'
        if message.op < self.checkpoint_op - self.config.checkpoint_interval:
            return
        self._digests.setdefault(message.op, {})[message.replica] = message.digest
        self._bound_digests()
        self._compare_digests(message.op)

    def _compare_digests(self, op: int) -> None:
        """Stop if this replica's digest at checkpoint ``op`` is not the quorum's
        (or no quorum agrees once every replica reported)."""
        reported = self._digests.get(op)
        if reported is None or self.replica not in reported:
            return
        mine = reported[self.replica]
        votes: dict[bytes, int] = {}
        for digest in reported.values():
            votes[digest] = votes.get(digest, 0) + 1
        best = max(votes, key=lambda d: (votes[d], d == mine))
        agreed = votes[best] >= self.config.quorum
        if (agreed and best != mine) or (not agreed and len(reported) == self.config.replica_count):
            since = op - self.config.checkpoint_interval
            raise StateDivergenceError(
                replica=self.replica, op=op, since=max(0, since), digests=dict(reported)
            )
        if agreed:
            for peer, digest in sorted(reported.items()):
                if digest != best and (op, peer) not in self.divergent_peers:
                    self.divergent_peers.append((op, peer))

    def _answer_retained(self, to: int) -> None:
        mark = self.checkpoint
        self._send(
            to,
            Retained(
                self.view,
                self.replica,
                self.retained_from,
                self.checkpoint_op,
                NO_CHECKPOINT if mark is None else mark.checksum,
            ),
        )

    # --- state transfer --------------------------------------------------------
    #
    # A replica that needs ops every peer has compacted (each peer that
    # answered its repair said ``Retained`` with ``op_min`` above what it
    # needs) fetches a checkpoint instead: the newest one that a quorum of
    # replicas named in their ``Retained`` answers (op and prepare checksum),
    # never the serving peer's word alone. It pulls the snapshot file one
    # chunk at a time from a peer that named it (rotating on silence); the
    # owner writes the chunks to a temp file, then verifies and installs it
    # (``coordinator/transfer.py``). Only then does the core adopt it: state
    # restored, committed up to its op, client table from it, and the view
    # state names it. Only once that view state is durable does the journal
    # restart after the op (``Journal.restart_after``), so a crash at any
    # point leaves either the old state (the transfer starts over) or a view
    # state naming a durable checkpoint (recovery restarts the journal from
    # it): never a mix. A serving peer keeps a checkpoint it is serving
    # beyond the store's retention until no chunk was asked for
    # ``transfer_timeout`` ticks.

    def _maybe_start_transfer(self) -> None:
        if not self.state_transfer or self._transfer is not None or self._installing is not None:
            return
        need = self.commit_min + 1
        if need > self.commit_max or self._awaiting_apply or self._checkpoint_taking is not None:
            return
        answers = [a for r, a in self.peer_retained.items() if r != self.replica]
        if not answers or min(a.op_min for a in answers) <= need:
            return  # a peer may still hold what is needed: repair goes on
        votes: dict[tuple[int, bytes], set[int]] = {}
        for answer in answers:
            if answer.checkpoint_op >= need:
                key = (answer.checkpoint_op, answer.checkpoint_checksum)
                votes.setdefault(key, set()).add(answer.replica)
        for (at, vouched_checksum), who in votes.items():
            # This replica's own log vouches too when it holds that op's header
            # as committed and linked (its view's log, decided by a quorum).
            mine = self.log.get(at)
            if (
                mine is not None
                and mine.checksum == vouched_checksum
                and at <= self.commit_max
                and self._linked(at)
            ):
                who.add(self.replica)
        # Never a checkpoint below this replica's journal head: dropping
        # journaled ops above it could drop an op this replica acknowledged.
        vouched = [
            key
            for key, who in votes.items()
            if len(who) >= self.config.quorum and key[0] >= self.journal_op
        ]
        if not vouched:
            return
        target = max(vouched)
        sources = tuple(sorted(votes[target] - {self.replica}))
        self._transfer = _Transfer(target[0], target[1], sources)
        self._request_chunk()

    def _request_chunk(self) -> None:
        transfer = self._transfer
        assert transfer is not None
        transfer.asked = self.now
        source = transfer.sources[transfer.turn % len(transfer.sources)]
        self._send(
            source,
            RequestCheckpoint(
                self.view,
                self.replica,
                transfer.op,
                transfer.checksum,
                transfer.offset,
                self.timing.transfer_chunk,
            ),
        )

    def _tick_transfer(self) -> None:
        for op in [op for op, asked in self._pins.items() if self.now - asked > self._pin_ticks]:
            del self._pins[op]
            self._out.append(PinCheckpoint(op, False))
        transfer = self._transfer
        if transfer is None or transfer.complete:
            self._maybe_start_transfer()
            return
        if self.now - transfer.asked >= self.timing.resend:
            transfer.turn += 1
            if transfer.turn > 4 * len(transfer.sources):
                self._transfer = None  # start over: maybe a newer checkpoint by then
                return
            self._request_chunk()

    @property
    def _pin_ticks(self) -> int:
        return 8 * self.timing.resend

    def _on_request_checkpoint(self, message: RequestCheckpoint) -> None:
        if not self.state_transfer or message.length < 1:
            return
        mark = self.checkpoint
        current = mark is not None and (mark.op, mark.checksum) == (message.op, message.checksum)
        if not current and message.op not in self._pins:
            return  # not one this replica keeps: the fetcher rotates or starts over
        if message.op not in self._pins:
            self._out.append(PinCheckpoint(message.op, True))
        self._pins[message.op] = self.now
        self._out.append(
            ReadCheckpointChunk(
                message.op, message.checksum, message.offset, message.length, message.replica
            )
        )

    def _on_chunk_read(self, event: CheckpointChunkRead) -> None:
        if event.data is None:
            return
        self._send(
            event.destination,
            CheckpointChunk(
                self.view,
                self.replica,
                event.op,
                event.checksum,
                event.offset,
                event.total,
                event.data,
                checksum(event.data),
            ),
        )

    def _on_checkpoint_chunk(self, message: CheckpointChunk) -> None:
        transfer = self._transfer
        if (
            transfer is None
            or transfer.complete
            or (message.op, message.checksum) != (transfer.op, transfer.checksum)
            or message.offset != transfer.offset
            or not message.data
            or checksum(message.data) != message.data_checksum
            or (transfer.total is not None and message.total != transfer.total)
            or message.offset + len(message.data) > message.total
        ):
            return  # one chunk in flight: anything else is a duplicate or stale
        transfer.total = message.total
        self._out.append(
            StoreCheckpointChunk(
                transfer.op,
                transfer.checksum,
                transfer.offset,
                message.total,
                message.data,
                message.replica,
            )
        )
        transfer.offset += len(message.data)
        if transfer.offset < message.total:
            self._request_chunk()
        else:
            transfer.complete = True
            self._out.append(InstallCheckpoint(transfer.op, transfer.checksum))

    def _on_checkpoint_installed(self, checkpoint: Checkpoint) -> None:
        transfer = self._transfer
        header = checkpoint.header
        if transfer is None or (header.op, header.checksum) != (transfer.op, transfer.checksum):
            return
        self._transfer = None
        if header.op <= self.commit_min or self._awaiting_apply:
            return  # caught up by repair meanwhile; the installed file is just an old one
        op = header.op
        self._out.append(RestoreCheckpoint(checkpoint))
        self.client_table.restore(checkpoint.clients)
        self.checkpoint = header
        self._checkpoint_due = None
        self._checkpoint_taking = None
        self.commit_min = op
        self.commit_max = max(self.commit_max, op)
        self.op = max(self.op, op)
        self.journal = {op: header}
        self.journal_op = self.durable_op = op
        self.faulty = set()
        for at in [k for k in self.log if k < op]:
            del self.log[at]
        self.log[op] = header
        for at in [k for k in self._held if k <= op]:
            del self._held[at]
        self.retained_from = op + 1
        self._trimmed = op
        self._compacted = max(self._compacted, op - self.timing.checkpoint_retain)
        self._stitch()
        self._installing = header
        if self.rules.restart_journal_after_vouched:
            self._persist()  # names the checkpoint; the journal restarts once durable
        else:
            # Broken on purpose (tests only): the journal restarts before the
            # view state vouches for the checkpoint that replaces it.
            self._out.append(RestartJournal(op))
            self._installing = None
            self._persist()

    def _restart_after_install(self) -> None:
        mark = self._installing
        if mark is None or self._durable.checkpoint_op < mark.op:
            return
        self._installing = None
        self._out.append(RestartJournal(mark.op))
        self._write_ready()
        self._commit_walk()
        self._send_ack(force=True)

    # --- ticks ----------------------------------------------------------------

    def _on_tick(self) -> None:
        t = self.timing
        if self.status == Status.NORMAL and self.config.replica_count == 1:
            return
        if self.status == Status.NORMAL and self.is_primary:
            if self.now - self._heartbeat_tick >= t.heartbeat:
                self._heartbeat_tick = self.now
                self._broadcast(CommitMessage(self.view, self.replica, self.commit_max))
            self._retry_prepares()
            if self.op == self.commit_max:
                self._progress_tick = self.now
            elif self.now - self._progress_tick >= t.abdicate_timeout:
                # Abdicate: without a prepare_ok quorum for this long, the
                # primary is cut off (or its prepares are); let another try.
                self._start_view_change(self.view + 1)
                return
        elif self.status == Status.NORMAL:
            if self.now - self._primary_tick >= t.normal_timeout:
                self._start_view_change(self.view + 1)
                return
        elif self.status == Status.VIEW_CHANGE:
            if self.now - self._vc_tick >= self._vc_wait:
                self._start_view_change(self.view + 1)
                return
            if self.now - self._resend_tick >= t.resend:
                self._resend_tick = self.now
                self._broadcast(StartViewChange(self.view, self.replica))
                self._maybe_send_dvc()  # held back while a lost op's header was unknown
                if self._dvc_sent and not self.is_primary:
                    self._send(self.config.primary(self.view), self._make_dvc())
        elif self.status == Status.RECOVERING:
            # Counted in ticks since the restart (the owner may set ``now``
            # after start).
            self._recovering_for += 1
            if self._recovering_for >= t.recovering_timeout:
                # No primary answered: the whole cluster restarted, or the
                # primary is gone. Never the view it restarted in (row 4).
                self._start_view_change(self.view + 1)
                return
            if self._recovering_for % t.resend == 0:
                self._broadcast(RequestStartView(self.view, self.replica, self.nonce))
        elif self.status == Status.RECOVERING_HEAD and self.now - self._resend_tick >= t.resend:
            self._resend_tick = self.now
            self._broadcast(RequestStartView(self.view, self.replica, self.nonce))
        mark = self.checkpoint
        if (
            mark is not None
            and self.now - self._digest_tick >= t.resend
            and len(self._digests.get(mark.op, {})) < self.config.replica_count
        ):
            # Digests are compared once every replica (or a quorum) reported:
            # resend ours until every peer's is known (it may have been lost).
            self._broadcast_digest()
        if self.status == Status.NORMAL:
            # Level-triggered: whatever an earlier event could not finish
            # (held bodies, a pending truncation, commits) is retried here.
            self._truncate_conflicts()
            self._write_ready()
            self._repair()
            self._commit_walk()
            self._check_caught_up()
            self._persist_commit()
        if self.state_transfer:
            self._tick_transfer()

    def _persist_commit(self) -> None:
        """Write the view state again once ``commit_max`` is
        ``commit_persist_interval`` ops past the durable one (no write per
        commit). A restart then knows which of its journaled ops are committed,
        give or take that many: the do_view_change after a whole-cluster
        restart carries the ops above it, and a stale commit of thousands of
        ops made those messages, and the view change, slow."""
        if (
            self.log_view == self.view
            and not self._pending
            and self.commit_max - self._durable.commit_max >= self.timing.commit_persist_interval
        ):
            self._persist()

    def _retry_prepares(self) -> None:
        for at, (header, body, sent) in sorted(self._pipeline.items()):
            if self.now - sent < self.timing.prepare_retry:
                continue
            self._pipeline[at] = (header, body, self.now)
            for to in range(self.config.replica_count):
                if to != self.replica and self._acks.get(to, 0) < at:
                    self._send(to, Prepare(self.view, self.replica, self.commit_max, header, body))

    def _next_peer(self) -> int:
        """Rotate repair peers, so one that cannot help does not stall repair."""
        n = self.config.replica_count
        peer = self._repair_peer
        self._repair_peer = (peer + 1) % n
        if self._repair_peer == self.replica:
            self._repair_peer = (self._repair_peer + 1) % n
        if peer == self.replica:
            peer = self._repair_peer
            self._repair_peer = (peer + 1) % n
        return peer

    def _repair(self) -> None:
        """Level-triggered repair, every tick: missing headers first (highest
        gap, so the chain extends down from the head), then the bodies the
        journal needs next, then faulty bodies.

        Headers are asked for ``repair_batch`` at a time, every ``resend``
        ticks, or at the next tick when the last answer extended the linked
        log (progress asks for more at once; a stall waits and rotates peers).
        Bodies are pipelined: up to ``repair_window`` ops above the journal
        are asked for at once, spread over the peers that answered repair
        lately; an op not journaled ``resend`` ticks after it was asked for
        is asked again of another peer (every stall rotates peers).
        """
        t = self.timing
        stalled = self.now - self._repair_tick >= t.resend
        if stalled or self._repair_more:
            self._repair_tick = self.now
            self._repair_more = False
            self._repair_headers(primary_too=stalled)
        self._repair_bodies()
        if stalled:
            wanted = []
            for at in sorted(self.faulty):
                header = self.journal.get(at)
                if header is not None and at not in self._held:
                    wanted.append(header)
                if len(wanted) >= t.repair_window:
                    break
            if wanted:
                peer = self._next_peer()
                for header in wanted:
                    self._send(
                        peer, RequestPrepare(self.view, self.replica, header.op, header.checksum)
                    )

    def _repair_headers(self, *, primary_too: bool) -> None:
        batch = self.timing.repair_batch
        if primary_too and self.commit_max > self.op and not self.is_primary:
            # Committed ops this replica never heard of: only the primary's log
            # may extend ours above op.
            above = min(self.commit_max, self.op + batch)
            primary = self.config.primary(self.view)
            self._send(primary, RequestHeaders(self.view, self.replica, self.op + 1, above))
        # Every op from _linked_low up to op is known and linked: the highest
        # gap is below it (a walk down from there, not over the whole log).
        top: int | None = None
        for at in range(min(self._linked_low, self.op + 1) - 1, self.commit_min, -1):
            if at not in self.log:
                top = at
                break
        if top is not None:
            low = max(self.commit_min + 1, top - batch + 1)
            self._send(self._next_peer(), RequestHeaders(self.view, self.replica, low, top))

    def _repair_bodies(self) -> None:
        t = self.timing
        sent = self._repair_sent
        top = self.journal_op + t.repair_window
        for at in [k for k in sent if not self.journal_op < k <= top]:
            del sent[at]
        peers = [p for p in range(self.config.replica_count) if p != self.replica]
        if not peers:
            return
        answering = [
            p for p in peers if self.now - self._repair_answered.get(p, -t.resend - 1) <= t.resend
        ]
        at = self.journal_op + 1
        while at <= self.op and at <= self.journal_op + t.repair_window:
            header = self.log.get(at)
            if header is None or not self._linked(at):
                break
            held = self._held.get(at)
            if held is None or held[0] != header:
                asked = sent.get(at)
                if asked is None or self.now - asked[0] >= t.resend:
                    attempt = 0 if asked is None else asked[1] + 1
                    if attempt == 0 and answering:
                        peer = answering[at % len(answering)]
                    else:
                        # A stall (or no peer answered lately): rotate.
                        peer = peers[(at + attempt + self._repair_peer) % len(peers)]
                    sent[at] = (self.now, attempt)
                    self._send(
                        peer, RequestPrepare(self.view, self.replica, header.op, header.checksum)
                    )
            at += 1

    # --- messages --------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Request):
            self._on_request(message)
            return
        # repair traffic is answered whatever the status or view
        if isinstance(message, RequestPrepare):
            self._on_request_prepare(message)
            return
        if isinstance(message, RequestHeaders):
            self._on_request_headers(message)
            return
        if isinstance(message, RepairPrepare):
            self._on_repair_prepare(message)
            return
        if isinstance(message, Retained):
            self.peer_retained[message.replica] = message
            return
        if isinstance(message, CheckpointDigest):
            self._on_checkpoint_digest(message)
            return
        if isinstance(message, RequestCheckpoint):
            self._on_request_checkpoint(message)
            return
        if isinstance(message, CheckpointChunk):
            self._on_checkpoint_chunk(message)
            return
        if isinstance(message, Headers):
            # Headers are verified by the parent chain, so their view does not
            # matter; only the primary of this view may extend the log above op.
            if self.status == Status.NORMAL:
                changed = False
                if (
                    message.view == self.view
                    and message.replica == self.config.primary(self.view)
                    and not self.is_primary
                ):
                    for header in sorted(message.headers, key=lambda h: h.op):
                        if header.op > self.op and header.valid():
                            self.log[header.op] = header
                            self.op = header.op
                            changed = True
                    if changed:
                        self._stitch()
                for header in sorted(message.headers, key=lambda h: -h.op):
                    if header.valid() and self._accept_header(header):
                        changed = True
                if changed:
                    self._stitch()
                    self._truncate_conflicts()
                    self._write_ready()
                    self._repair_more = True  # progress: ask for the next headers at once
            return
        if isinstance(message, StartViewChange):
            self._on_start_view_change(message)
        elif isinstance(message, DoViewChange):
            self._on_do_view_change(message)
        elif isinstance(message, StartView):
            self._on_start_view(message)
        elif isinstance(message, RequestStartView):
            if (
                self.status == Status.NORMAL
                and self.is_primary
                and message.view <= self.view
                and message.replica != self.replica
            ):
                self._send(message.replica, self._make_start_view(message.nonce))
        elif isinstance(message, Prepare):
            self._on_prepare(message)
        elif isinstance(message, PrepareOk):
            self._on_prepare_ok(message)
        elif isinstance(message, CommitMessage):
            self._on_commit(message)

    def _newer_view_seen(self, view: int, sender: int) -> None:
        """A normal-status message from a newer view: ask its primary for the start_view."""
        if self.config.primary(view) == sender:
            self._send(sender, RequestStartView(view, self.replica, self.nonce))

    # client requests

    def _on_request(self, request: Request) -> None:
        if self.status != Status.NORMAL:
            return
        if not self.is_primary:
            self._reply(
                request.client,
                Redirect(self.view, self.replica, request.client, self.config.primary(self.view)),
            )
            return
        if self._match_op() < self.op:
            return  # still repairing the log of the view change: the client retries
        session = self.client_table.get(request.client)
        in_pipeline = any(
            h.client == request.client and h.request == request.request
            for h, _, _ in self._pipeline.values()
        ) or any(q.client == request.client and q.request == request.request for q in self._queue)
        if request.operation == Operation.REGISTER:
            if session is not None:
                self._reply(
                    request.client,
                    Reply(
                        self.view,
                        self.replica,
                        request.client,
                        0,
                        session.session,
                        session.session,
                    ),
                )
                return
            if not in_pipeline:
                self._enqueue(request)
            return
        if session is None or session.session != request.session:
            if self.commit_min == self.op:
                # Only a primary that applied its whole log can tell a session is gone.
                self._reply(
                    request.client,
                    Eviction(self.view, self.replica, request.client, request.session),
                )
            return
        if request.request < session.request:
            return
        if request.request == session.request:
            if session.applied:
                self._reply(
                    request.client,
                    Reply(
                        self.view,
                        self.replica,
                        request.client,
                        request.request,
                        session.reply_op,
                        session.result,
                        session.rejected,
                    ),
                )
            return
        refused = self._refuse_switch(request)
        if refused is not None:
            self._reply(
                request.client,
                Reply(self.view, self.replica, request.client, request.request, 0, None, refused),
            )
            return
        if not in_pipeline:
            self._enqueue(request)

    def _refuse_switch(self, request: Request) -> str | None:
        """Why a version switch request is refused before it is prepared (None:
        it is not refused). A switch to a version the primary's own code does
        not implement is never committed: every replica would stop at it."""
        if request.operation != Operation.SWITCH_VERSION:
            return None
        version = decode_version(request.body)
        if version is None:
            return "a version switch needs a non-negative integer version"
        if self.machine_version is None or version > self.machine_version:
            return (
                f"the primary's state machine code is version {self.machine_version}: "
                f"it cannot switch the cluster to version {version}"
            )
        return None

    def _enqueue(self, request: Request) -> None:
        # Bounded either way: a client sends its next request only after the
        # reply to the last, so the sessions in the client table (at most
        # clients_max) have at most one request each waiting here. Dropping
        # below that bound would make every client beyond the pipeline wait
        # out its retry timeout.
        if len(self._queue) < max(self.timing.request_queue_max, self.config.clients_max):
            self._queue.append(request)
        self._prepare_queued()

    def _prepare_queued(self) -> None:
        """Prepare queued requests while the pipeline has room."""
        if not (self.status == Status.NORMAL and self.is_primary):
            return
        entries: list[tuple[PrepareHeader, bytes]] = []
        while self._queue and self.op - self.commit_max < self.timing.pipeline_max:
            if self._match_op() < self.op:
                break
            request = self._queue.pop(0)
            header = make_header(
                parent=self.log[self.op].checksum,
                op=self.op + 1,
                view=self.view,
                client=request.client,
                request=request.request,
                operation=request.operation,
                body=request.body,
            )
            self.op = header.op
            self.log[header.op] = header
            self.journal[header.op] = header
            self.journal_op = header.op
            self._linked_low = min(self._linked_low, header.op)
            self._pipeline[header.op] = (header, request.body, self.now)
            self.client_table.prepared(header)
            entries.append((header, request.body))
            for to in range(self.config.replica_count):
                self._send(
                    to, Prepare(self.view, self.replica, self.commit_max, header, request.body)
                )
        if entries:
            # Solo: committed once durable (JournalDurable), no prepare_ok.
            self._out.append(WriteJournal(truncate_after=None, entries=tuple(entries)))

    # normal operation

    def _heard_from_primary(self, message: Prepare | CommitMessage) -> bool:
        """Whether ``message`` is from the primary of this replica's view, as a
        backup in normal status hears it (and then the primary is alive).

        An older view is ignored; a newer view, or any view while this
        replica is not normal, goes to the view-change rules instead.
        """
        if message.view < self.view:
            return False
        if message.view > self.view or self.status != Status.NORMAL:
            self._newer_view_seen(message.view, message.replica)
            return False
        if self.is_primary or message.replica != self.config.primary(self.view):
            return False
        self._primary_tick = self.now
        return True

    def _on_prepare(self, message: Prepare) -> None:
        if not self._heard_from_primary(message):
            return
        header = message.header
        if not (header.valid() and header.valid_body(message.body)):
            return
        if header.op > self.op:
            # The primary's prepare is authoritative for its view.
            head = self.log.get(self.op)
            extends = (
                header.op == self.op + 1
                and head is not None
                and head.checksum == header.parent
                and (
                    self._linked_low <= self.op
                    or (self.op == self.commit_min and self.journal.get(self.op) == head)
                )
            )
            self.log[header.op] = header
            self.op = header.op
            if not extends:
                self._stitch()
            # else: the next op, linked to a head that was linked (or was the
            # committed op, which links by construction): the linked region just
            # grows by one, and a walk down the whole log on every prepare (what
            # made a far-behind backup spend its time stitching) is not needed.
        elif not self._accept_header(header):
            self._advance_commit(message.commit)
            self._send_ack()
            return
        else:
            self._stitch()
        self._hold(header, message.body)
        self._truncate_conflicts()
        self._write_ready()
        self._advance_commit(message.commit)
        self._send_ack()

    def _advance_commit(self, commit: int) -> None:
        if commit > self.commit_max:
            self.commit_max = commit
        self._commit_walk()

    def _send_ack(self, force: bool = False) -> None:
        if self.status != Status.NORMAL or self.is_primary or self._installing is not None:
            return
        ack = self._ack_op()
        header = self.journal.get(ack)
        if header is None:
            return
        if ack > self._acked_sent or force:
            self._acked_sent = ack
            self._send(
                self.config.primary(self.view),
                PrepareOk(self.view, self.replica, ack, header.checksum),
            )

    def _on_prepare_ok(self, message: PrepareOk) -> None:
        if message.view != self.view or self.status != Status.NORMAL or not self.is_primary:
            return
        mine = self.log.get(message.op)
        if mine is None or mine.checksum != message.checksum:
            return
        if message.op > self._acks.get(message.replica, 0):
            self._acks[message.replica] = message.op
            self._primary_commit()

    def _primary_commit(self) -> None:
        """Commit what a quorum acked in this view (the primary's own durable
        log counts as one ack)."""
        acks = sorted(
            [self._ack_op()]
            + [
                min(self._acks.get(r, 0), self.op)
                for r in range(self.config.replica_count)
                if r != self.replica
            ],
            reverse=True,
        )
        candidate = acks[self.config.quorum - 1]
        if candidate > self.commit_max:
            self.commit_max = candidate
            self._progress_tick = self.now
        self._commit_walk()
        for at in [k for k in self._pipeline if k <= self.commit_max]:
            del self._pipeline[at]
        self._prepare_queued()

    def _on_commit(self, message: CommitMessage) -> None:
        if not self._heard_from_primary(message):
            return
        self._advance_commit(message.commit)
        # Re-ack on every heartbeat: prepare_oks may have been lost.
        if self._ack_op() > message.commit:
            self._send_ack(force=True)

    # repair answers

    def _on_request_prepare(self, message: RequestPrepare) -> None:
        # Answer only with exactly that prepare, and only if it is readable;
        # below the headers kept in memory the journal checks the checksum.
        if message.op < self.retained_from:
            self._answer_retained(message.replica)
            return
        mine = self.journal.get(message.op)
        if (
            1 <= message.op <= self.journal_op
            and (mine is None or mine.checksum == message.checksum)
            and message.op not in self.faulty
        ):
            self._out.append(ReadPrepare(message.op, message.checksum, message.replica))

    def _on_request_headers(self, message: RequestHeaders) -> None:
        # Answer only with the headers this replica has (possibly none);
        # the asker checks each against its parent chain.
        low = max(1, message.op_min)
        if low < self.retained_from:
            # Honest: never "nothing there" for a range it no longer holds.
            self._answer_retained(message.replica)
            low = self.retained_from
        forgotten = min(message.op_max, self._trimmed, self.journal_op)
        if low <= forgotten:
            # Below the headers kept in memory the journal still has them.
            self._out.append(ReadHeaders(low, forgotten, message.replica))
            low = forgotten + 1
        headers = tuple(
            self.log[k] for k in range(low, min(message.op_max, self.op) + 1) if k in self.log
        )
        if headers:
            self._send(message.replica, Headers(self.view, self.replica, headers))

    def _on_repair_prepare(self, message: RepairPrepare) -> None:
        header = message.header
        if not (header.valid() and header.valid_body(message.body)):
            return
        self._repair_answered[message.replica] = self.now
        expected = self.log.get(header.op)
        if expected is None and self._accept_header(header):
            self._stitch()
            expected = self.log.get(header.op)
        if expected != header:
            return  # accepted only if it equals the header expected at that op
        if header.op in self.faulty and self.journal.get(header.op) == header:
            self._held[header.op] = (header, message.body)
        elif header.op > self.journal_op or self.journal.get(header.op) != header:
            self._hold(header, message.body)
        else:
            return
        self._truncate_conflicts()
        self._write_ready()

    # view change

    def _start_view_change(self, view: int) -> None:
        """Give up on the current view and start (or join) the change to ``view``."""
        if self.rejoining:
            # It never votes: it waits for a start_view instead (restart.py, row 6).
            self._await_start_view()
            return
        t = self.timing
        self._vc_wait = t.view_change_timeout
        if self.status == Status.RECOVERING:
            # Joined from a restart (it heard of a change to its view or a
            # later one): that change may be long over, heard late from a
            # peer's queue kept while it was down, and the new primary's
            # connection to it may not be back yet. Moving on after
            # view_change_timeout would disturb a healthy cluster; it waits
            # out what was left of recovering_timeout (which covers a peer's
            # reconnection), and a message from the view's primary meanwhile
            # gets it the start_view.
            self._vc_wait = max(t.view_change_timeout, t.recovering_timeout - self._recovering_for)
        self.status = Status.VIEW_CHANGE
        self.view = view
        self._svc_from = {self.replica}
        self._dvcs = {}
        self._dvc_sent = False
        self._vc_tick = self.now
        self._resend_tick = self.now
        self._pipeline.clear()
        self._queue.clear()
        self._acks.clear()
        self._persist()
        self._broadcast(StartViewChange(view, self.replica))
        self._maybe_send_dvc()

    def _await_start_view(self) -> None:
        """A rejoining replica whose view is in doubt: stop acting in it, and ask
        the primary for a start_view (with this life's nonce) on the next tick."""
        self.status = Status.RECOVERING_HEAD
        self._rejoin_target = None
        self._pipeline.clear()
        self._queue.clear()
        self._acks.clear()
        self._resend_tick = self.now - self.timing.resend

    def _on_start_view_change(self, message: StartViewChange) -> None:
        if self.status == Status.RECOVERING_HEAD:
            return
        if self.status == Status.RECOVERING and message.view == self.view:
            # A change to the view it restarted in: join it, unless it was that
            # view's primary (never lead a view in two process lives).
            self._start_view_change(self.view + 1 if self.is_primary else self.view)
        if message.view > self.view:
            self._start_view_change(message.view)
        if message.view == self.view and self.status == Status.VIEW_CHANGE:
            self._svc_from.add(message.replica)
            self._maybe_send_dvc()

    def _make_dvc(self) -> DoViewChange:
        suffix = []
        durable = self.durable_op if self.rules.ack_after_durable else self.journal_op
        # From a little below commit_max, so the head (even at commit_max) and
        # a stitch point reach the new primary; nacks only matter above commit.
        low = max(0, min(self.commit_max, self.op) - self.timing.pipeline_max)
        for at in range(low + 1, self.op + 1):
            header = self.log.get(at)
            if header is None:
                continue
            held = self.journal.get(at) == header and at <= durable
            if at <= self.lost_to and not held:
                # Durable here once, cut at recovery because of damage: it may
                # have been acked, so it is faulty, never a nack.
                state = EntryState.FAULTY if self.rules.faulty_is_not_nack else EntryState.MISSING
            elif not held:
                state = EntryState.MISSING
            elif at in self.faulty:
                state = EntryState.FAULTY if self.rules.faulty_is_not_nack else EntryState.MISSING
            else:
                state = EntryState.HELD
            suffix.append(SuffixEntry(header, state))
        return DoViewChange(
            self.view, self.replica, self.log_view, self.op, self.commit_max, tuple(suffix)
        )

    def _lost_header_unknown(self) -> bool:
        """Whether an op this replica lost at recovery has no header here yet.

        Its do_view_change could not name it, and an op left out counts as a
        nack; so until repair finds the header (or a start_view decides the
        log without it) this replica does not vote, as if it were down.
        """
        low = max(0, min(self.commit_max, self.op) - self.timing.pipeline_max)
        return any(at not in self.log for at in range(low + 1, self.lost_to + 1))

    def _maybe_send_dvc(self) -> None:
        if self._dvc_sent or len(self._svc_from) < self.config.quorum:
            return
        if self.rules.faulty_is_not_nack and self._lost_header_unknown():
            return
        self._dvc_sent = True
        dvc = self._make_dvc()
        if self.is_primary:
            self._dvcs[self.replica] = dvc
            self._maybe_start_view()
        else:
            self._send(self.config.primary(self.view), dvc)

    def _on_do_view_change(self, message: DoViewChange) -> None:
        if self.status == Status.RECOVERING_HEAD or message.view < self.view:
            return
        if self.status == Status.RECOVERING and message.view == self.view:
            self._start_view_change(self.view + 1 if self.is_primary else self.view)
        if message.view > self.view:
            self._start_view_change(message.view)
        if self.status != Status.VIEW_CHANGE or not self.is_primary:
            return
        self._dvcs[message.replica] = message
        # A do_view_change means its sender saw a start_view_change quorum.
        self._svc_from.add(message.replica)
        self._maybe_send_dvc()
        self._maybe_start_view()

    def _maybe_start_view(self) -> None:
        if self.status != Status.VIEW_CHANGE or not self.is_primary:
            return
        if self.replica not in self._dvcs or len(self._dvcs) < self.config.quorum:
            return
        self._dvcs[self.replica] = self._make_dvc()
        chosen = choose_log(list(self._dvcs.values()), self.config, self.rules)
        if not chosen.complete:
            return  # wait for another do_view_change (or the view change timeout)
        self._install(chosen.op, chosen.commit, chosen.headers)
        self._progress_tick = self.now
        self._heartbeat_tick = self.now
        self._acks = {}
        self._broadcast(self._make_start_view())
        self._primary_commit()

    def _make_start_view(self, nonce: int = 0) -> StartView:
        low = max(0, min(self.commit_max, self.op) - self.timing.pipeline_max)
        headers = tuple(self.log[k] for k in range(low + 1, self.op + 1) if k in self.log)
        return StartView(self.view, self.replica, self.op, self.commit_max, headers, nonce)

    def _install(self, op: int, commit: int, headers: dict[int, PrepareHeader]) -> None:
        """Become normal in ``self.view`` with the decided log (up to ``op``)."""
        if op < self.commit_min:
            raise self._fail("the decided log ends below an op this replica committed", op)
        self.status = Status.NORMAL
        self.log_view = self.view
        for at in [k for k in self.log if k > op]:
            del self.log[at]
        for at, header in headers.items():
            if at > self.commit_min:
                self.log[at] = header
        if op > self.commit_min and op not in self.log:
            raise self._fail("the decided log has no header at its head", op)
        self.op = max(op, self.commit_min)
        self.commit_max = max(self.commit_max, commit)
        # Lost ops above the decided log were proven uncommitted by the quorum
        # that decided it; those below it are repaired like any missing op.
        self.lost_to = min(self.lost_to, self.op)
        for at in [k for k in self._held if k > self.op]:
            del self._held[at]
        self._stitch()
        self._persist()
        self._truncate_conflicts()
        self._write_ready()
        self._primary_tick = self.now
        self._acked_sent = -1

    def _on_start_view(self, message: StartView) -> None:
        if message.view < self.view or message.replica != self.config.primary(message.view):
            return
        if message.view == self.view and self.status == Status.NORMAL:
            return
        if message.replica == self.replica:
            return
        if self.rejoining and message.nonce != self.nonce:
            # Only a start_view built after this restart proves what to catch up to.
            return
        headers = {h.op: h for h in message.headers if h.valid()}
        if message.op > self.commit_min and message.op not in headers:
            return
        self.view = message.view
        self._pipeline.clear()
        self._queue.clear()
        self._install(message.op, message.commit, headers)
        if self.rejoining:
            self._rejoin_target = message.op
        self._send_ack(force=True)
        self._commit_walk()
        self._check_caught_up()
