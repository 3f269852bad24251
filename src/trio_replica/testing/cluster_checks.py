"""The invariants a simulated cluster run is checked against, as they happen.

Each check names the invariant of ``docs/invariants.md`` / DESIGN it keeps:

* durable before send (1, and DESIGN "Durable view state"): no prepare_ok
  before the fsync of its op, nothing advertising a view before that view
  is durable;
* agreement (11): two replicas that commit op n commit the same prepare
  (same checksum), also across restarts of one replica;
* monotonic (14): a replica's durable view state only moves forward, and
  after a restart its view and log_view are not behind any view or log_view
  it ever advertised in a message; within one process life view, log_view,
  commit_min and commit_max never go back;
* one primary: at most one replica acts as normal primary of a view (sends
  its start_view, prepares or commits), and never in two process lives;
* exactly once (13): a request is applied (not de-duplicated) at most once
  per replica life, and every acknowledged request is applied exactly once
  on every converged replica;
* convergence (12): after faults heal, every replica reaches the same
  commit and the same state digest (checked by the simulator at the end).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..cluster.core import ReplicaStatus
from ..cluster.header import PrepareHeader
from ..cluster.messages import (
    ADVERTISES_NORMAL,
    ADVERTISES_VIEW,
    Commit,
    DoViewChange,
    Message,
    Prepare,
    PrepareOk,
    StartView,
    StartViewChange,
)
from ..cluster.view_state import ViewState

__all__ = ["ClusterChecker", "Violation"]


@attrs.frozen
class Violation:
    """One broken invariant: which, at what tick, on which replica, and the facts."""

    invariant: str
    tick: int
    replica: int | None
    detail: str

    def __str__(self) -> str:
        who = "" if self.replica is None else f" replica {self.replica}"
        return f"[{self.invariant}] tick {self.tick}{who}: {self.detail}"


class ClusterChecker:
    """Collects violations; the simulator calls its hooks as things happen."""

    def __init__(self, replica_count: int, *, recovering_timeout: int | None = None):
        self.violations: list[Violation] = []
        # Quiet restarts: a restarted replica sends no start_view_change for
        # ``recovering_timeout`` ticks unless it heard of a view change or got
        # a start_view (None: not checked). replica -> tick of its restart.
        self._recovering_timeout = recovering_timeout
        self._quiet_since: dict[int, int] = {}
        self.now = 0
        self._committed: dict[int, tuple[bytes, int]] = {}
        self._advertised_view = [0] * replica_count
        self._advertised_log_view = [0] * replica_count
        self._last_status: list[ReplicaStatus | None] = [None] * replica_count
        self._durable: list[ViewState] = [ViewState() for _ in range(replica_count)]
        self._primaries: dict[int, tuple[int, int]] = {}
        self._lives = [0] * replica_count
        self._applied: list[dict[tuple[int, int], int]] = [{} for _ in range(replica_count)]

    def _violate(self, invariant: str, replica: int | None, detail: str) -> None:
        self.violations.append(Violation(invariant, self.now, replica, detail))

    def applied_requests(self, replica: int) -> dict[tuple[int, int], int]:
        """(client, request) -> op of every request applied in the replica's current life."""
        return self._applied[replica]

    # --- hooks -------------------------------------------------------------------

    def committed(self, replica: int, header: PrepareHeader, applied: bool) -> None:
        """The replica handed ``header`` to its applier (``applied``: not a no-op)."""
        first = self._committed.get(header.op)
        if first is None:
            self._committed[header.op] = (header.checksum, replica)
        elif first[0] != header.checksum:
            self._violate(
                "agreement",
                replica,
                f"op {header.op} committed as {header.checksum.hex()[:12]}, "
                f"replica {first[1]} committed {first[0].hex()[:12]}",
            )
        if applied:
            key = (header.client, header.request)
            earlier = self._applied[replica].get(key)
            if earlier is not None:
                self._violate(
                    "exactly-once",
                    replica,
                    f"client {header.client} request {header.request} applied at op "
                    f"{earlier} and again at op {header.op}",
                )
            self._applied[replica][key] = header.op

    def sent(
        self,
        replica: int,
        message: Message,
        durable_journal: Sequence[tuple[PrepareHeader, bytes]],
        durable_view_state: ViewState,
    ) -> None:
        """The replica sent ``message``; ``durable_journal`` (prepares, ops 1..n)
        and ``durable_view_state`` are what its storage holds durably right now.

        Durable before send: a prepare_ok for op n needs the prepare of op n
        durable; a message advertising view v (and log_view l) needs a durable
        view state at least that far.
        """
        if isinstance(message, PrepareOk) and message.op > 0:
            durable = (
                durable_journal[message.op - 1][0].checksum
                if message.op <= len(durable_journal)
                else None
            )
            if durable != message.checksum:
                self._violate(
                    "durable-before-send",
                    replica,
                    f"prepare_ok for op {message.op} sent before that prepare was durable",
                )
        if isinstance(message, ADVERTISES_VIEW):
            log_view = (
                message.log_view
                if isinstance(message, DoViewChange)
                else message.view
                if isinstance(message, ADVERTISES_NORMAL)
                else 0
            )
            if message.view > durable_view_state.view or log_view > durable_view_state.log_view:
                self._violate(
                    "durable-before-send",
                    replica,
                    f"{type(message).__name__} advertises view {message.view} (log_view "
                    f"{log_view}) but the durable view state has view "
                    f"{durable_view_state.view}, log_view {durable_view_state.log_view}",
                )
        since = self._quiet_since.get(replica)
        if isinstance(message, StartViewChange) and since is not None:
            assert self._recovering_timeout is not None
            if self.now < since + self._recovering_timeout - 1:
                self._violate(
                    "quiet-restart",
                    replica,
                    f"restarted at tick {since}, it started a view change (to view "
                    f"{message.view}) before asking the cluster for its view and "
                    f"waiting {self._recovering_timeout} ticks for an answer",
                )
            del self._quiet_since[replica]
        if isinstance(message, StartView | Prepare | Commit):
            # Only a normal primary sends these: it acts as primary of the view.
            seen = self._primaries.get(message.view)
            if seen is None:
                self._primaries[message.view] = (replica, self._lives[replica])
            elif seen != (replica, self._lives[replica]):
                self._violate(
                    "one-primary",
                    replica,
                    f"view {message.view} led by replica {replica} (life "
                    f"{self._lives[replica]}) but already by {seen[0]} (life {seen[1]})",
                )
        if not isinstance(message, ADVERTISES_VIEW):
            return
        view = message.view
        self._advertised_view[replica] = max(self._advertised_view[replica], view)
        if isinstance(message, ADVERTISES_NORMAL):
            log_view = view
        elif isinstance(message, DoViewChange):
            log_view = message.log_view
        else:
            return
        self._advertised_log_view[replica] = max(self._advertised_log_view[replica], log_view)

    def received(self, replica: int, message: Message) -> None:
        """The replica received ``message``: hearing of a view change or getting a
        start_view ends the quiet period of a restart."""
        if isinstance(message, StartViewChange | DoViewChange | StartView):
            self._quiet_since.pop(replica, None)

    def view_state_durable(self, replica: int, state: ViewState) -> None:
        """The replica's view state write completed."""
        if not state.advances(self._durable[replica]):
            self._violate(
                "monotonic",
                replica,
                f"durable view state went back: {self._durable[replica]!r} -> {state!r}",
            )
        self._durable[replica] = state

    def stepped(self, status: ReplicaStatus) -> None:
        """After each event: monotonic in-life progress."""
        r = status.replica
        last = self._last_status[r]
        if last is not None:
            for field in ("view", "log_view", "commit_min", "commit_max"):
                if getattr(status, field) < getattr(last, field):
                    self._violate(
                        "monotonic",
                        r,
                        f"{field} went back from {getattr(last, field)} to "
                        f"{getattr(status, field)}",
                    )
        self._last_status[r] = status

    def crashed(self, replica: int) -> None:
        """The replica crashed: its in-memory state is gone."""
        self._last_status[replica] = None
        self._applied[replica] = {}

    def restore_applied(self, replica: int, applied: dict[tuple[int, int], int]) -> None:
        """The replica restarted from a checkpoint: ``applied`` is what its
        earlier life had applied up to that checkpoint's op (the requests the
        restored state already contains)."""
        self._applied[replica] = applied

    def replaced(self, replica: int) -> None:
        """The crashed replica's data directory was replaced by a blank one
        (formatted to rejoin): what it advertised before is gone with it, so
        the monotonic checks start over; a new life begins at its restart."""
        self._advertised_view[replica] = 0
        self._advertised_log_view[replica] = 0
        self._durable[replica] = ViewState(rejoining=True)
        self._last_status[replica] = None

    def restarted(self, replica: int, status: ReplicaStatus, state: ViewState) -> None:
        """The replica restarted from ``state``: it must not be behind what it advertised."""
        self._lives[replica] += 1
        self._durable[replica] = state
        if self._recovering_timeout is not None and len(self._lives) > 1:
            self._quiet_since[replica] = self.now
        if status.view < self._advertised_view[replica]:
            self._violate(
                "monotonic",
                replica,
                f"restarted in view {status.view}, but had advertised view "
                f"{self._advertised_view[replica]}",
            )
        if state.log_view < self._advertised_log_view[replica]:
            self._violate(
                "monotonic",
                replica,
                f"restarted with log_view {state.log_view}, but had advertised log_view "
                f"{self._advertised_log_view[replica]}",
            )
        self.stepped(status)
