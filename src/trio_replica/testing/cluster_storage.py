"""The durable storage of one simulated cluster replica: journal and view state.

A model of what survives, not a file system: the journal is a list of
prepares (header, body) at ops 1..n, with the image the OS holds
(``written``) apart from the image that is fsynced (``durable``); the view
state is replaced atomically. What a crash leaves:

* a process crash keeps everything written (the OS still has it; recovery
  fsyncs the journal before the replica serves), and each view state write
  not yet reported durable is kept or lost (a prefix of them is kept);
* a power loss keeps the durable image plus, when the written image only
  appended to it, a random prefix of the appended prepares, the last of
  which may be torn (then recovery cuts it, reports the head as uncertain
  and the torn op as lost, as ``trio_replica.cluster.salvage`` does); when a
  truncation was not yet fsynced, either the old image or the truncated one
  (with a random prefix of what followed) survives. View state writes not
  yet durable are lost.

Checkpoints: a snapshot (the encoded checkpoint, plus what the checker
needs to know of it) becomes durable after a drawn delay; a crash before
that loses it, except that a process crash may leave it in place (it was
renamed but not yet reported), newer than the checkpoint the view state
names. The newest two durable snapshots are kept. Compaction marks the ops
up to ``compacted`` as gone: they are neither read, answered nor recovered.

Two kinds of damage to durable prepares, found at the restart:

* :meth:`SimReplicaStorage.corrupt`: a body becomes unreadable in place, its
  header known; the replica reports it faulty.
* :meth:`SimReplicaStorage.damage`: bit rot, a latent sector error or a lost
  write at op X, handled as a cluster replica's real journal handles it
  (``trio_replica.cluster.salvage``): recovery cuts the journal at X and
  reports ops X..n as lost, with the headers it could still read (the
  damaged op's own header may be unreadable: a lost write leaves stale
  bytes, a bit flip may hit the header).
"""

from __future__ import annotations

import random
from typing import Any

from ..cluster.core import RecoveredJournal
from ..cluster.header import PrepareHeader
from ..cluster.view_state import ViewState

__all__ = ["SimReplicaStorage"]

Entry = tuple[PrepareHeader, bytes]


class SimReplicaStorage:
    """The durable state of one simulated replica (see the module docstring)."""

    def __init__(self) -> None:
        self.written: list[Entry] = []
        self.durable: list[Entry] = []
        self.faulty: set[int] = set()
        self.faulty_durable: set[int] = set()
        self.view_state = ViewState()
        self.view_state_pending: list[ViewState] = []
        self.snapshots: dict[int, tuple[bytes, Any]] = {}
        """Durable snapshots: op -> (encoded checkpoint, checker facts)."""
        self.snapshots_pending: list[tuple[int, bytes, Any]] = []
        self.compacted = 0
        """Ops up to this one were compacted away."""
        self.pinned: set[int] = set()
        """Snapshots kept beyond retention while a peer fetches them."""
        self.fetched = bytearray()
        """The temp file of a state transfer in progress."""
        self.installs_pending: list[tuple[int, bytes, Any]] = []
        # damage found at the next restart: (first op cut, ops whose header is unreadable)
        self._damage: tuple[int, frozenset[int]] | None = None
        self.lost_to = 0
        """Durable, like the superblock's: ops up to it were cut by damage and
        are not held again yet (it survives every crash until they are)."""

    # --- the journal ---------------------------------------------------------

    def write(self, truncate_after: int | None, entries: tuple[Entry, ...]) -> None:
        """Carry out a WriteJournal action on the written image."""
        if truncate_after is not None:
            del self.written[truncate_after:]
            self.faulty = {op for op in self.faulty if op <= truncate_after}
        for header, body in entries:
            at = header.op
            if at <= len(self.written):
                if self.written[at - 1][0] != header:
                    raise AssertionError(f"in-place write of another header at op {at}")
                self.written[at - 1] = (header, body)
                self.faulty.discard(at)
            elif at == len(self.written) + 1:
                self.written.append((header, body))
            else:
                raise AssertionError(f"journal write at op {at} leaves a gap")

    def sync(self) -> int:
        """fsync: the written image becomes durable. Returns the durable op."""
        self.durable = list(self.written)
        self.faulty_durable = set(self.faulty)
        if len(self.durable) >= self.lost_to:
            self.lost_to = 0  # held again (the superblock's lost_to goes back to 0)
        return len(self.durable)

    def read(self, header: PrepareHeader) -> bytes | None:
        """The body of exactly ``header``, or None (absent, another header, or faulty)."""
        at = header.op
        if self.compacted < at <= len(self.written) and at not in self.faulty:
            mine, body = self.written[at - 1]
            if mine == header:
                return body
        return None

    def read_prepare(self, op: int, checksum: bytes) -> Entry | None:
        """The readable prepare at ``op`` if its header has ``checksum``, else None."""
        if self.compacted < op <= len(self.written) and op not in self.faulty:
            header, body = self.written[op - 1]
            if header.checksum == checksum:
                return header, body
        return None

    def headers(self, op_min: int, op_max: int) -> tuple[PrepareHeader, ...]:
        """The headers of ops ``op_min..op_max`` that are written."""
        low = max(op_min - 1, self.compacted, 0)
        return tuple(h for h, _ in self.written[low : max(0, op_max)])

    def body_at(self, op: int) -> Entry:
        """The entry at ``op`` (the applier reads committed ops; never faulty then)."""
        return self.written[op - 1]

    # --- the view state --------------------------------------------------------

    def persist(self, state: ViewState) -> None:
        """A PersistViewState action: queued until :meth:`view_state_synced`."""
        self.view_state_pending.append(state)

    def view_state_synced(self) -> ViewState:
        """The oldest pending view state write completed (atomic replace)."""
        state = self.view_state_pending.pop(0)
        self.view_state = state
        return state

    # --- checkpoints ---------------------------------------------------------

    def take_snapshot(self, op: int, data: bytes, facts: Any) -> None:
        """A snapshot write: durable at :meth:`snapshot_synced`."""
        self.snapshots_pending.append((op, data, facts))

    def snapshot_synced(self) -> int:
        """The oldest pending snapshot write completed; returns its op."""
        op, data, facts = self.snapshots_pending.pop(0)
        self.snapshots[op] = (data, facts)
        self._retain()
        return op

    def _retain(self) -> None:
        # Never the snapshot a view state (durable or being written) names.
        named = {self.view_state.checkpoint_op}
        named.update(state.checkpoint_op for state in self.view_state_pending)
        for old in sorted(self.snapshots)[:-2]:
            if old not in self.pinned and old not in named:
                del self.snapshots[old]

    # --- state transfer ------------------------------------------------------

    def pin(self, op: int, pin: bool) -> None:
        """Keep (or stop keeping) the snapshot at ``op`` beyond retention."""
        if pin:
            self.pinned.add(op)
        else:
            self.pinned.discard(op)
            self._retain()

    def store_chunk(self, offset: int, data: bytes) -> None:
        """Write a fetched chunk into the temp file (a new transfer starts at 0)."""
        if offset == 0:
            self.fetched = bytearray()
        if offset != len(self.fetched):
            raise AssertionError(f"chunk at offset {offset}, temp file has {len(self.fetched)}")
        self.fetched += data

    def install(self, op: int, facts: Any) -> None:
        """The verified temp file is fsynced and renamed: durable at :meth:`install_synced`."""
        self.installs_pending.append((op, bytes(self.fetched), facts))
        self.fetched = bytearray()

    def install_synced(self) -> int:
        """The oldest pending install completed; returns its op."""
        op, data, facts = self.installs_pending.pop(0)
        self.snapshots[op] = (data, facts)
        self._retain()
        return op

    def restart_journal(self, op: int, header: PrepareHeader) -> None:
        """``Journal.restart_after(op)``: atomic and durable at once (one
        superblock write); every op up to ``op`` is gone, the next is ``op + 1``."""
        self.written = [(header, b"")] * op
        self.durable = list(self.written)
        self.faulty = set()
        self.faulty_durable = set()
        self.compacted = op

    def compact(self, through: int) -> None:
        """Forget ops up to ``through`` (never the one a restart needs)."""
        if through > self.view_state.checkpoint_op:
            raise AssertionError(f"compaction through op {through} above the named checkpoint")
        self.compacted = max(self.compacted, min(through, len(self.written)))

    # --- crashes ---------------------------------------------------------------

    def crash(self, rng: random.Random, *, power_loss: bool, torn_probability: float) -> bool:
        """Apply a crash to the images; returns whether the journal head is uncertain."""
        uncertain = False
        if power_loss:
            common = 0
            for a, b in zip(self.durable, self.written, strict=False):
                if a[0] != b[0]:
                    break
                common += 1
            truncation_pending = len(self.durable) > common
            if truncation_pending and rng.random() < 0.5:
                image = list(self.durable)
            else:
                extra = len(self.written) - common
                keep = rng.randint(0, extra)
                image = self.written[: common + keep]
                if keep < extra and rng.random() < torn_probability:
                    # The next prepare was torn and cut at recovery. A real
                    # journal cannot tell that from the last acknowledged
                    # batch rotting, so it records the op as lost (its header
                    # unknown here), durably before the cut.
                    uncertain = True
                    self.lost_to = max(self.lost_to, common + keep + 1)
            self.written = image
            self.faulty = set(self.faulty_durable)  # an unsynced in-place repair is lost
            self.view_state_pending.clear()
            self.snapshots_pending.clear()
            self.installs_pending.clear()
        else:
            keep = rng.randint(0, len(self.view_state_pending))
            for state in self.view_state_pending[:keep]:
                self.view_state = state
            self.view_state_pending.clear()
            if self.snapshots_pending and rng.random() < 0.5:
                self.snapshots_pending = self.snapshots_pending[:1]
                self.snapshot_synced()  # renamed into place, never reported
            self.snapshots_pending.clear()
        # a fetch in progress is a temp file: removed at the next open
        self.fetched = bytearray()
        self.installs_pending.clear()
        self.pinned.clear()
        if self.view_state.checkpoint_op and self.view_state.checkpoint_op not in self.snapshots:
            raise AssertionError("the durable view state names a snapshot that is gone")
        # recovery fsyncs what it found before serving
        self.faulty = {op for op in self.faulty if op <= len(self.written)}
        self.sync()
        return uncertain

    def corrupt(self, op: int) -> None:
        """Make the durable body at ``op`` unreadable."""
        if not 1 <= op <= len(self.written):
            raise ValueError(f"no op {op} to corrupt")
        self.faulty.add(op)
        self.faulty_durable.add(op)

    def damage(self, op: int, header_unreadable: bool) -> None:
        """Damage the durable prepare at ``op`` (a crashed replica's disk): the
        next :meth:`recovered` cuts the journal there and reports ops from
        ``op`` on as lost, ``op``'s own header unknown if ``header_unreadable``."""
        if not max(self.compacted, self.view_state.checkpoint_op) < op <= len(self.written):
            # A real replica refuses damage at or below its checkpoint
            # (cluster.salvage): a cut there would delete what it restarts from.
            raise ValueError(f"no op {op} to damage above the checkpoint")
        self._damage = (op, frozenset({op}) if header_unreadable else frozenset())

    def recovered(self, head_uncertain: bool) -> RecoveredJournal:
        """What journal recovery reports after a restart (and the cut it makes, durably)."""
        lost: tuple[PrepareHeader, ...] = ()
        if self._damage is not None:
            at, unreadable = self._damage
            self._damage = None
            lost = tuple(h for h, _ in self.written[at - 1 :] if h.op not in unreadable)
            self.lost_to = max(self.lost_to, len(self.written))  # before the cut
            del self.written[at - 1 :]
            self.faulty = {op for op in self.faulty if op < at}
            self.sync()
        return RecoveredJournal(
            headers=tuple(h for h, _ in self.written[self.compacted :]),
            faulty=frozenset(op for op in self.faulty if op > self.compacted),
            head_uncertain=head_uncertain,
            first_op=self.compacted + 1,
            lost=lost,
            lost_to=self.lost_to,
        )
