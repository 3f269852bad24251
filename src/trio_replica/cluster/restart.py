"""What a cluster replica is after a restart: the restart decision table.

The view is never inferred from the journal: it comes from the durable view
state. The table (the first matching row wins):

| # | condition                            | status          | view     |
|---|--------------------------------------|-----------------|----------|
| 1 | replica_count == 1                   | NORMAL          | view     |
| 2 | journal head uncertain (cut tail)    | RECOVERING_HEAD | view     |
| 3 | view > log_view                      | VIEW_CHANGE     | view     |
| 4 | log_view == view, was the primary    | VIEW_CHANGE     | view + 1 |
| 5 | log_view == view, was a backup       | NORMAL          | view     |

Why: (1) solo, commit is local durability. (2) It cannot tell what it acked
at its head, so it must not vote in a view change; it waits for a
start_view. (3) It was in a view change: it carries on with it. (4) Its
pipeline is gone (or it may have started leading the view in memory, with
prepares journaled but never sent): it must never lead the same view in two
process lives, so it joins the next view, whose primary is another
replica, as a backup. (5) A backup
catches up from the primary's heartbeats and repair.
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


@attrs.frozen
class RestartDecision:
    """The row of the table that applied: status, view, and the row number."""

    status: Status
    view: int
    row: int


def restart_decision(
    *, replica_count: int, replica: int, state: ViewState, head_uncertain: bool
) -> RestartDecision:
    """Apply the restart decision table (module docstring) to the durable facts."""
    if replica_count == 1:
        return RestartDecision(Status.NORMAL, state.view, 1)
    if state.rejoining:
        return RestartDecision(Status.RECOVERING_HEAD, state.view, 6)
    if head_uncertain:
        return RestartDecision(Status.RECOVERING_HEAD, state.view, 2)
    if state.view % replica_count == replica:
        return RestartDecision(Status.VIEW_CHANGE, state.view + 1, 4)
    if state.view > state.log_view:
        return RestartDecision(Status.VIEW_CHANGE, state.view, 3)
    return RestartDecision(Status.NORMAL, state.view, 5)
