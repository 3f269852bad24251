"""Restarts of a cluster with a long log, in the deterministic simulator.

A whole-cluster restart after thousands of ops converges within a bounded
number of ticks and views; a restarted backup rejoins its view without a view
change (even when its peers' connections to it come back late) and catches
up within a bound; a restarted replica that starts a view change at once is
caught by the quiet-restart checker; the new primary's choice of log reads
each do_view_change once, however long its suffix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from trio_replica.cluster import ClusterConfig, Rules, Timing
from trio_replica.cluster.config import CORRECT_RULES
from trio_replica.cluster.header import ROOT, Operation, make_header
from trio_replica.cluster.messages import DoViewChange, EntryState, SuffixEntry
from trio_replica.cluster.restart import Status, restart_decision
from trio_replica.cluster.view_change import choose_log
from trio_replica.cluster.view_state import ViewState
from trio_replica.testing.cluster import ScheduledRestart, SimOptions, SimResult, run_seed
from trio_replica.testing.network import NetworkFaults

TIMING = Timing()
CLEAN = NetworkFaults(delay_min=1, delay_mean=1.0)


def _run(restart: ScheduledRestart, ticks: int, rules: Rules = CORRECT_RULES) -> SimResult:
    # 16 clients without pause: about 1.3 committed ops per tick.
    options = SimOptions(
        clients=16,
        ticks=ticks,
        liveness_ticks=1000,
        network=CLEAN,
        restarts=(restart,),
        rules=rules,
    )
    return run_seed(1, options)


def test_a_whole_cluster_restart_after_thousands_of_ops_converges_in_one_view_change() -> None:
    result = _run(ScheduledRestart(2000, (0, 1, 2), down_for=10), ticks=2600)
    assert result.ok, "\n".join(str(v) for v in result.violations)
    assert result.stats["committed"] > 2500
    # Nobody answers a restarted replica's request for the view: after
    # recovering_timeout ticks one view change (to view 1) and a short repair.
    (took,) = result.catch_up
    assert took is not None and took <= TIMING.recovering_timeout + 60, took
    assert result.stats["max_view"] == 1


def test_a_restarted_backup_rejoins_quietly_and_catches_up_within_a_bound() -> None:
    # Down for 500 ticks under load (about 650 ops behind); its peers'
    # connections to it come back only 60 ticks after it started (more than
    # normal_timeout: a restarted backup that waited for heartbeats would
    # start a view change).
    restart = ScheduledRestart(600, (1,), down_for=500, reconnect=60)
    assert restart.reconnect > TIMING.normal_timeout
    result = _run(restart, ticks=1600)
    assert result.ok, "\n".join(str(v) for v in result.violations)
    assert result.stats["view_changes"] == 0 and result.stats["max_view"] == 0
    (took,) = result.catch_up
    # the reconnection delay, then hundreds of ops repaired in a few dozen ticks
    assert took is not None and took <= restart.reconnect + 100, took


def test_a_restarted_primary_joins_as_a_backup() -> None:
    result = _run(ScheduledRestart(600, (0,), down_for=100, reconnect=20), ticks=1400)
    assert result.ok, "\n".join(str(v) for v in result.violations)
    (took,) = result.catch_up
    assert took is not None
    # its peers changed view without it; it learned the new view
    assert 1 <= result.stats["max_view"] <= 2


def test_restarting_with_a_view_change_at_once_is_caught() -> None:
    broken = Rules(restart_recovers=False)
    result = _run(ScheduledRestart(600, (1,), down_for=500, reconnect=60), 1600, broken)
    assert not result.ok
    assert result.violations[0].invariant == "quiet-restart"


@pytest.mark.parametrize(
    ("view", "log_view", "replica", "row"),
    [(4, 3, 1, 3), (3, 3, 0, 4), (3, 3, 1, 5), (4, 4, 1, 4)],
)
def test_restart_table_recovers_first(view: int, log_view: int, replica: int, row: int) -> None:
    state = ViewState(view=view, log_view=log_view)
    decision = restart_decision(replica_count=3, replica=replica, state=state, head_uncertain=False)
    assert (decision.status, decision.view, decision.row) == (Status.RECOVERING, view, row)
    head = restart_decision(replica_count=3, replica=replica, state=state, head_uncertain=True)
    assert head.status == Status.RECOVERING_HEAD
    old = restart_decision(
        replica_count=3, replica=replica, state=state, head_uncertain=False, recovers=False
    )
    assert old.status != Status.RECOVERING


class _CountingSuffix(tuple[SuffixEntry, ...]):
    """A suffix that counts how often it is read through."""

    reads = 0

    def __iter__(self) -> Iterator[SuffixEntry]:
        _CountingSuffix.reads += 1
        return super().__iter__()


def test_choose_log_reads_each_do_view_change_a_bounded_number_of_times() -> None:
    # After a whole-cluster restart with a stale commit, every sender's suffix
    # holds thousands of headers; one read per op (quadratic) took seconds.
    n = 2000
    headers: list[Any] = []
    parent = ROOT.checksum
    for op in range(1, n + 1):
        header = make_header(
            parent=parent,
            op=op,
            view=0,
            client=1,
            request=op,
            operation=Operation.REQUEST,
            body=b"x",
        )
        headers.append(header)
        parent = header.checksum
    suffix = _CountingSuffix(SuffixEntry(h, EntryState.HELD) for h in headers)
    dvcs = [DoViewChange(1, r, 0, n, 0, suffix) for r in range(3)]
    _CountingSuffix.reads = 0
    chosen = choose_log(dvcs, ClusterConfig(1, 3))
    assert (chosen.op, chosen.commit, chosen.truncated) == (n, 0, None)
    assert _CountingSuffix.reads <= 2 * len(dvcs)
