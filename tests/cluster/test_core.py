"""The consensus core driven by hand: normal operation, durability before
send, view change, repair, restart and client sessions."""

from __future__ import annotations

from vsr_driver import Driver

from trio_replica.cluster import Rules, Status, Timing
from trio_replica.cluster.events import Received, Tick
from trio_replica.cluster.messages import (
    DoViewChange,
    Eviction,
    PrepareOk,
    Reply,
    StartViewChange,
)

TIMING = Timing()


def replies(driver: Driver, client: int) -> list[Reply]:
    return [m for c, m in driver.client_inbox if c == client and isinstance(m, Reply)]


def registered(driver: Driver, client: int = 7, primary: int = 0) -> int:
    driver.register(primary, client)
    driver.deliver()
    session = replies(driver, client)[-1].result
    assert isinstance(session, int) and session >= 1
    return session


def test_normal_operation_commits_everywhere_and_replies() -> None:
    d = Driver(3)
    session = registered(d)
    for number in range(1, 6):
        d.request(0, 7, session, number, add=number)
        d.deliver()
    d.tick(TIMING.heartbeat + 1)  # the commit heartbeat reaches the backups
    assert [r.result for r in replies(d, 7)][1:] == [1, 3, 6, 10, 15]
    ops = {r: [(op, cs) for op, cs, _ in d.nodes[r].commits] for r in range(3)}
    assert ops[0] == ops[1] == ops[2]
    assert len(ops[0]) == 6  # the register and five requests
    assert all(d.nodes[r].total == 15 for r in range(3))


def test_no_prepare_ok_before_the_fsync_of_its_op() -> None:
    d = Driver(3)
    session = registered(d)
    d.auto_durable = False
    d.sent.clear()
    d.request(0, 7, session, 1, add=1)
    d.deliver()
    written = d.nodes[1].storage.written[-1][0]
    assert written.op == 2
    assert not [m for s, _, m in d.sent if s == 1 and isinstance(m, PrepareOk) and m.op >= 2]
    d.make_durable(1)
    acks = [m for s, _, m in d.sent if s == 1 and isinstance(m, PrepareOk)]
    assert acks and acks[-1].op == 2 and acks[-1].checksum == written.checksum


def test_ack_before_fsync_variant_acks_unsynced_ops() -> None:
    d = Driver(3, rules=Rules(ack_after_durable=False))
    session = registered(d)
    d.auto_durable = False
    d.sent.clear()
    d.request(0, 7, session, 1, add=1)
    d.deliver()
    assert [m for s, _, m in d.sent if s == 1 and isinstance(m, PrepareOk) and m.op == 2]


def test_view_change_after_primary_failure_keeps_committed_ops() -> None:
    d = Driver(3)
    session = registered(d)
    for number in range(1, 4):
        d.request(0, 7, session, number, add=1)
        d.deliver()
    committed = [(op, cs) for op, cs, _ in d.nodes[0].commits]
    d.crash(0)
    d.tick(TIMING.normal_timeout + TIMING.view_change_timeout)
    assert d.core(1).status == Status.NORMAL and d.core(1).view >= 1
    assert d.core(1).is_primary and d.core(2).status == Status.NORMAL
    d.request(1, 7, session, 4, add=1)
    d.deliver()
    d.tick(TIMING.heartbeat + 1)
    for r in (1, 2):
        mine = [(op, cs) for op, cs, _ in d.nodes[r].commits]
        assert mine[: len(committed)] == committed
        assert d.nodes[r].total == 4
    assert replies(d, 7)[-1].result == 4


def test_nothing_advertising_a_view_leaves_before_it_is_durable() -> None:
    d = Driver(3)
    registered(d)
    d.auto_durable = False
    d.sent.clear()
    d.crash(0)
    d.tick(TIMING.normal_timeout + 1)
    assert d.core(1).status == Status.VIEW_CHANGE
    advertised = [m for s, _, m in d.sent if s == 1 and isinstance(m, StartViewChange)]
    assert not advertised, "start_view_change sent before the view was durable"
    assert d.nodes[1].storage.view_state_pending  # the write is waiting
    d.make_durable(1)
    d.deliver()
    assert [m for s, _, m in d.sent if s == 1 and isinstance(m, StartViewChange)]


def test_view_not_durable_variant_sends_at_once() -> None:
    d = Driver(3, rules=Rules(view_durable_before_send=False))
    registered(d)
    d.auto_durable = False
    d.sent.clear()
    d.crash(0)
    d.tick(TIMING.normal_timeout + 1)
    sent = [m for s, _, m in d.sent if s == 1 and isinstance(m, StartViewChange | DoViewChange)]
    assert sent and d.nodes[1].storage.view_state.view == 0


def test_a_lagging_backup_is_repaired_by_ticks() -> None:
    d = Driver(3)
    session = registered(d)
    for number in range(1, 12):
        d.request(0, 7, session, number, add=1)
        d.deliver(drop={2})
    d.tick(TIMING.heartbeat + 1, drop={2})
    assert d.core(2).journal_op < d.core(0).journal_op
    d.tick(20 * TIMING.resend)
    assert d.core(2).journal_op == d.core(0).journal_op
    assert d.core(2).commit_min == d.core(0).commit_min == 12
    assert d.nodes[2].total == 11


def test_restarted_primary_joins_the_next_view_as_a_backup() -> None:
    d = Driver(3)
    session = registered(d)
    d.request(0, 7, session, 1, add=5)
    d.deliver()
    d.crash(0)
    d.restart(0)
    core = d.core(0)
    # It asks for the view's start_view; nobody leads view 0 any more, so its
    # peers time out and change view without it, and it learns the new view
    # (it never leads view 0 again in this life).
    assert core.status == Status.RECOVERING and core.view == 0
    d.tick(TIMING.normal_timeout + TIMING.view_change_timeout)
    assert d.core(1).is_primary and d.core(1).status == Status.NORMAL
    assert d.core(0).status == Status.NORMAL and d.core(0).view == d.core(1).view
    assert not d.core(0).is_primary


def test_a_restarted_replica_replays_its_committed_ops() -> None:
    d = Driver(3)
    session = registered(d)
    for number in range(1, 4):
        d.request(0, 7, session, number, add=2)
        d.deliver()
    d.tick(TIMING.heartbeat + 1)
    d.crash(2)
    d.restart(2)
    d.tick(TIMING.heartbeat + 1)
    assert d.nodes[2].total == 6
    assert d.core(2).client_table.get(7) is not None


def test_retry_of_a_committed_request_gets_the_cached_reply() -> None:
    d = Driver(3)
    session = registered(d)
    d.request(0, 7, session, 1, add=4)
    d.deliver()
    before = len(d.nodes[0].commits)
    d.request(0, 7, session, 1, add=4)
    d.deliver()
    assert len(d.nodes[0].commits) == before  # nothing new prepared
    assert [r.result for r in replies(d, 7)][-2:] == [4, 4]


def test_unknown_session_is_told_it_was_evicted() -> None:
    d = Driver(3)
    registered(d)
    d.request(0, 99, 5, 1, add=1)
    d.deliver()
    assert any(c == 99 and isinstance(m, Eviction) for c, m in d.client_inbox)


def duplicate_in_log(rules: Rules) -> Driver:
    """An uncommitted prepare survives a view change while its client retries
    at the new primary: the same request is in the log twice."""
    d = Driver(3, rules=rules)
    session = registered(d)
    d.tick(TIMING.heartbeat + 1)
    # The primary's prepare reaches backup 1 only, and its ack is lost.
    d.request(0, 7, session, 1, add=10)
    batch, d.inbox = d.inbox, []
    for _source, to, message in batch:
        if to == 1:
            d.step(1, Received(message))
    d.inbox = [(s, t, m) for s, t, m in d.inbox if not isinstance(m, PrepareOk)]
    d.crash(0)
    # Replica 1 becomes primary with the old prepare kept; the client's retry
    # reaches it before that prepare commits again.
    for _ in range(TIMING.normal_timeout + TIMING.view_change_timeout):
        for r in range(3):
            d.step(r, Tick())
        while d.inbox and not (d.core(1).is_primary and d.core(1).status == Status.NORMAL):
            d.deliver(rounds=1)
        if d.core(1).is_primary and d.core(1).status == Status.NORMAL:
            break
    assert d.core(1).is_primary and d.core(1).status == Status.NORMAL
    assert d.core(1).commit_max < 2 <= d.core(1).op
    d.request(1, 7, session, 1, add=10)
    d.deliver()
    d.tick(3 * TIMING.resend)
    assert d.core(2).commit_min == d.core(1).commit_min == 3
    return d


def test_a_duplicate_in_the_log_is_a_no_op_at_commit() -> None:
    d = duplicate_in_log(Rules())
    flags = [apply for _, _, apply in d.nodes[2].commits[1:]]
    assert flags.count(True) == 1
    assert d.nodes[1].total == d.nodes[2].total == 10


def test_without_dedup_at_commit_the_duplicate_applies_twice() -> None:
    d = duplicate_in_log(Rules(dedup_at_commit=False))
    assert d.nodes[2].total == 20


def test_headers_in_memory_are_bounded_by_configuration() -> None:
    timing = Timing(headers_max=4)
    d = Driver(3, timing=timing)
    session = registered(d)
    for number in range(1, 40):
        d.request(0, 7, session, number, add=1)
        d.deliver()
    d.tick(TIMING.heartbeat + 1)
    for r in range(3):
        core = d.core(r)
        assert core.commit_min == 40
        assert len(core.log) <= timing.headers_max + timing.pipeline_max + 2
        assert len(core.journal) <= timing.headers_max + timing.pipeline_max + 2
    assert d.nodes[2].total == 39


def test_a_cluster_of_one_commits_on_local_durability() -> None:
    d = Driver(1)
    d.auto_durable = False
    d.register(0, 7)
    assert not replies(d, 7)  # not durable yet: not committed
    d.make_durable(0)
    session = replies(d, 7)[-1].result
    d.request(0, 7, session, 1, add=3)
    d.make_durable(0)
    assert [r.result for r in replies(d, 7)] == [session, 3]
    assert not d.sent  # no peers, no messages


def test_an_uncertain_head_waits_for_a_start_view_and_does_not_vote() -> None:
    d = Driver(3)
    session = registered(d)
    d.request(0, 7, session, 1, add=1)
    d.deliver()
    d.crash(2)
    d.restart(2, head_uncertain=True)
    assert d.core(2).status == Status.RECOVERING_HEAD
    d.sent.clear()
    d.crash(0)  # the primary is gone: 1 alone cannot form a view change quorum with 2
    d.tick(TIMING.normal_timeout + TIMING.view_change_timeout)
    assert not [m for s, _, m in d.sent if s == 2 and isinstance(m, DoViewChange)]
    assert d.core(1).status == Status.VIEW_CHANGE
    d.restart(0)
    d.tick(3 * TIMING.view_change_timeout)
    assert all(d.core(r).status == Status.NORMAL for r in range(3))
    assert len({d.core(r).view for r in range(3)}) == 1


def committed_then_rotted(rules: Rules) -> tuple[Driver, bytes]:
    """The design's example: op 2 is committed by primary 0 and backup 1 while
    backup 2 never saw it; backup 1's copy then rots and primary 0 crashes.
    Returns the driver after backups 1 and 2 ran a view change, and op 2's
    committed checksum."""
    d = Driver(3, rules=rules)
    session = registered(d)
    d.tick(TIMING.heartbeat + 1)
    d.request(0, 7, session, 1, add=5)
    d.deliver(drop={2})
    committed = [cs for op, cs, _ in d.nodes[0].commits if op == 2]
    assert committed and replies(d, 7)[-1].result == 5
    d.crash(1)
    d.nodes[1].storage.corrupt(2)
    d.restart(1)
    assert d.core(1).faulty == {2}
    d.crash(0)
    d.tick(TIMING.normal_timeout + 2 * TIMING.view_change_timeout)
    return d, committed[0]


def test_an_op_held_but_unreadable_is_not_a_nack() -> None:
    d, committed = committed_then_rotted(Rules())
    assert d.core(1).op >= 2  # kept: one nack is not a nack quorum
    d.request(d.config.primary(d.core(1).view), 7, 1, 2, add=1)
    d.restart(0)
    d.tick(6 * TIMING.view_change_timeout)
    for r in range(3):
        ops = {op: cs for op, cs, _ in d.nodes[r].commits}
        assert ops.get(2) == committed, r


def test_nacking_an_unreadable_op_loses_a_committed_op() -> None:
    d, committed = committed_then_rotted(Rules(faulty_is_not_nack=False))
    primary = d.config.primary(d.core(1).view)
    assert d.core(primary).status == Status.NORMAL and d.core(primary).op == 1  # cut
    d.request(primary, 7, 1, 2, add=1)  # a new op takes its place
    d.deliver()
    d.tick(TIMING.heartbeat + 1)
    ops = {op: cs for op, cs, _ in d.nodes[2].commits}
    assert ops.get(2) is not None and ops[2] != committed  # agreement broken


def test_every_client_session_can_have_a_request_waiting_for_the_pipeline() -> None:
    # More clients (30) than pipeline_max + request_queue_max (8 + 16), fewer
    # than clients_max (32): while the pipeline is full, the primary keeps
    # every request instead of dropping those beyond its queue, so each one
    # is answered without a single resend.
    d = Driver(3)
    clients = range(100, 130)
    sessions = {c: registered(d, c) for c in clients}
    assert len(clients) > TIMING.pipeline_max + TIMING.request_queue_max
    assert len(clients) <= d.config.clients_max
    d.auto_durable = False
    for c in clients:
        d.request(0, c, sessions[c], 1, add=1)
    d.deliver()
    for _ in range(20):
        for r in range(3):
            d.make_durable(r)
        d.deliver()
    d.tick(TIMING.heartbeat + 1)
    answered = {c for c in clients if len(replies(d, c)) == 2}
    assert answered == set(clients)
    assert all(d.nodes[r].total == 30 for r in range(3))


def test_a_replica_far_behind_catches_up_in_pipelined_repair_rounds() -> None:
    # Replica 2 is down while 300 ops commit. Restarted, it repairs headers
    # (repair_batch per request, the next request as soon as one extended its
    # log) and prepares (up to repair_window in flight, more every tick as they
    # are journaled). Counted in ticks (the protocol's clock), never in
    # seconds: 15 ticks here, 390 with 8 of each every `resend` ticks.
    d = Driver(3)
    session = registered(d)
    d.crash(2)
    for number in range(1, 301):
        d.request(0, 7, session, number, add=1)
        d.deliver()
    d.tick(TIMING.heartbeat + 1)
    assert d.nodes[0].core is not None and d.nodes[0].core.commit_min == 301
    d.restart(2)
    ticks = 0
    while len(d.nodes[2].commits) < 301 and ticks < 20_000:
        d.tick()
        ticks += 1
    assert len(d.nodes[2].commits) >= 301 and d.nodes[2].total == 300
    assert [c[:2] for c in d.nodes[2].commits[:301]] == [c[:2] for c in d.nodes[0].commits[:301]]
    assert ticks < 4 * 301 // TIMING.repair_window + TIMING.resend, ticks


def test_a_restart_that_hears_a_finished_view_change_late_does_not_disturb_the_cluster() -> None:
    # Primary 0 of view 0 dies; 1 and 2 change to view 1 (primary 1) without
    # it. Restarted, 0 is recovering in view 0 and hears, late, replica 2's
    # start_view_change for view 1 (queued for it while it was down), so it
    # joins a change that is long over, while the primary's connection to it
    # is not back yet (reconnection backoff): 1's messages reach it only
    # after more than view_change_timeout ticks. It must wait for them (and
    # the start_view they get it) instead of moving everyone to view 2.
    d = Driver(3)
    session = registered(d)
    for number in range(1, 4):
        d.request(0, 7, session, number, add=2)
        d.deliver()
    d.crash(0)
    d.tick(TIMING.normal_timeout + TIMING.view_change_timeout)
    assert d.core(1).is_primary and d.core(1).status == Status.NORMAL and d.core(1).view == 1
    d.restart(0)
    assert d.core(0).status == Status.RECOVERING
    d.step(0, Received(StartViewChange(1, 2)))  # the late one
    assert d.core(0).status == Status.VIEW_CHANGE and d.core(0).view == 1
    link_down = TIMING.view_change_timeout + TIMING.resend  # 1 -> 0 still reconnecting
    assert link_down < TIMING.recovering_timeout
    for _ in range(link_down):
        for r in range(3):
            d.step(r, Tick())
        for _ in range(50):
            batch, d.inbox = d.inbox, []
            for source, to, message in batch:
                if not (source == 1 and to == 0):
                    d.step(to, Received(message))
            if not d.inbox:
                break
    d.tick(TIMING.heartbeat + TIMING.resend)  # the link is back
    for r in range(3):
        assert d.core(r).status == Status.NORMAL and d.core(r).view == 1, r
    assert d.core(0).commit_min == d.core(1).commit_min
    assert d.nodes[0].total == 6


def test_a_backup_applies_a_committed_op_before_its_own_write_of_it_is_durable() -> None:
    # Why a checker must wait for ``durable`` to reach ``op`` before it stops
    # a cluster and compares journals: the op is durable on a quorum (0, 1),
    # so backup 2 applies it while its own fsync is still pending; a stop now
    # leaves its journal without the op it applied.
    d = Driver(3)
    session = registered(d)
    d.auto_durable = False
    d.request(0, 7, session, 1, add=5)
    d.deliver()
    d.make_durable(0)
    d.make_durable(1)
    d.deliver()
    assert d.core(0).commit_min == 2
    d.tick(TIMING.heartbeat)  # the commit reaches 2
    backup = d.core(2)
    assert backup.commit_min == 2 and d.nodes[2].total == 5
    status = backup.status_snapshot()
    assert status.op == 2 and status.durable_op == 1
    d.make_durable(2)
    assert backup.status_snapshot().durable_op == 2
