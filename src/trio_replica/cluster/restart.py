"""What a cluster replica is after a restart: the restart decision table.

The view is never inferred from the journal: it comes from the durable view
state. The table (the first matching row wins):

| # | condition                            | status          | view     |
|---|--------------------------------------|-----------------|----------|
| 1 | replica_count == 1                   | NORMAL          | view     |
| 6 | rejoining (its data was lost)        | RECOVERING_HEAD | view     |
| 2 | journal head uncertain (cut tail)    | RECOVERING_HEAD | view     |
| 3 | view > log_view                      | RECOVERING      | view     |
| 4 | log_view == view, was the primary    | RECOVERING      | view     |
| 5 | log_view == view, was a backup       | RECOVERING      | view     |

(Row 6 is checked right after row 1.) Why: (1) solo, commit is local
durability. (6) A replica that lost its data never votes nor nacks until it
caught up (see ``Consensus.start``). (2) It cannot tell what it acked
at its head, so it must not vote in a view change; it waits for a
start_view. (3-5) While it was down the cluster may have gone on, in its
view or a later one: it first asks for the start_view of the current view
(request_start_view to every peer, resent every ``resend`` ticks; the
primary of any view at least as new answers), installs it and is a backup
again, without disturbing anyone. Only when no start_view comes within
``Timing.recovering_timeout`` ticks (the whole cluster restarted, or its
primary is gone) does it start a view change, to ``view + 1``; it joins
any view change it hears of meanwhile, but does not move on from it to
a later view before ``recovering_timeout`` since the restart (the change
may be long over, heard late from a peer's queue, with the primary's
connection to it not back yet). (4) Its pipeline is gone (or it may
have started leading the view in memory, with prepares journaled but never
sent): it must never lead the same view in two process lives, so it only
ever installs a later view (whose primary is another replica) or starts
the change to ``view + 1``, even when it hears of a change to ``view``.

With ``Rules.restart_recovers`` off (a broken variant, tests only) rows 3-5
are the older table, which disturbs a healthy cluster at every restart:
(3) VIEW_CHANGE in ``view``, (4) VIEW_CHANGE in ``view + 1``, (5) NORMAL in
``view``, timing out after ``normal_timeout`` when no heartbeat came yet.
"""

from __future__ import annotations

import enum

import attrs

from .view_state import ViewState

__all__ = ["RestartDecision", "Status", "restart_decision"]


class Status(enum.Enum):
    """A replica's protocol status."""

    NORMAL = "normal"
    VIEW_CHANGE = "view_change"
    RECOVERING_HEAD = "recovering_head"
    RECOVERING = "recovering"


@attrs.frozen
class RestartDecision:
    """The row of the table that applied: status, view, and the row number."""

    status: Status
    view: int
    row: int


def restart_decision(
    *,
    replica_count: int,
    replica: int,
    state: ViewState,
    head_uncertain: bool,
    recovers: bool = True,
) -> RestartDecision:
    """Apply the restart decision table (module docstring) to the durable facts.

    ``recovers`` False selects the older rows 3-5 (``Rules.restart_recovers``).
    """
    if replica_count == 1:
        return RestartDecision(Status.NORMAL, state.view, 1)
    if state.rejoining:
        return RestartDecision(Status.RECOVERING_HEAD, state.view, 6)
    if head_uncertain:
        return RestartDecision(Status.RECOVERING_HEAD, state.view, 2)
    was_primary = state.view % replica_count == replica
    if recovers:
        row = 3 if state.view > state.log_view else 4 if was_primary else 5
        return RestartDecision(Status.RECOVERING, state.view, row)
    if was_primary:
        return RestartDecision(Status.VIEW_CHANGE, state.view + 1, 4)
    if state.view > state.log_view:
        return RestartDecision(Status.VIEW_CHANGE, state.view, 3)
    return RestartDecision(Status.NORMAL, state.view, 5)
