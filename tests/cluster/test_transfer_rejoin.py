"""Replacing a lost data directory: a replica formatted to rejoin
(``format --recover``) neither votes in a view change nor nacks until it
has caught up, so it can never help cut an op it acknowledged before its
disk was lost. Driven by hand (``vsr_driver``), the storage model's view
state carrying the ``rejoining`` flag as the superblock does."""

from __future__ import annotations

from vsr_driver import Driver

from trio_replica.cluster import Rules, Status, Timing
from trio_replica.cluster.events import Received
from trio_replica.cluster.messages import (
    DoViewChange,
    Reply,
    StartView,
    StartViewChange,
)

TIMING = Timing()


def replies(driver: Driver, client: int) -> list[Reply]:
    return [m for c, m in driver.client_inbox if c == client and isinstance(m, Reply)]


def committed_then_disk_lost(rules: Rules) -> tuple[Driver, bytes]:
    """Op 2 is committed by primary 0 and backup 1; backup 2 never saw it.
    Backup 1 then loses its data directory and is formatted to rejoin, and
    the primary crashes. Returns the driver and op 2's committed checksum."""
    d = Driver(3, rules=rules)
    d.register(0, 7)
    d.deliver()
    session = replies(d, 7)[-1].result
    d.tick(TIMING.heartbeat + 1)
    d.request(0, 7, session, 1, add=5)
    d.deliver(drop={2})
    committed = [cs for op, cs, _ in d.nodes[0].commits if op == 2]
    assert committed and replies(d, 7)[-1].result == 5
    d.crash(1)
    d.lose_disk(1)
    d.restart(1)
    d.crash(0)
    return d, committed[0]


def test_a_rejoining_replica_never_votes_so_a_committed_op_survives() -> None:
    d, committed = committed_then_disk_lost(Rules())
    assert d.core(1).status == Status.RECOVERING_HEAD and d.core(1).rejoining
    d.sent.clear()
    d.tick(TIMING.normal_timeout + 3 * TIMING.view_change_timeout)
    # 2 alone cannot form a view change quorum: 1 neither votes nor nacks
    assert not [m for s, _, m in d.sent if s == 1 and isinstance(m, StartViewChange)]
    assert not [m for s, _, m in d.sent if s == 1 and isinstance(m, DoViewChange)]
    assert d.core(2).status == Status.VIEW_CHANGE
    d.restart(0)
    d.tick(6 * TIMING.view_change_timeout)
    assert all(d.core(r).status == Status.NORMAL for r in range(3))
    for r in range(3):
        ops = {op: cs for op, cs, _ in d.nodes[r].commits}
        assert ops.get(2) == committed, r
    # caught up: the flag is cleared, durably, and it votes again
    assert not d.core(1).rejoining and not d.view_state(1).rejoining
    assert d.nodes[1].total == 5


def test_a_blank_replica_that_votes_helps_cut_a_committed_op() -> None:
    d, committed = committed_then_disk_lost(Rules(rejoining_does_not_vote=False))
    d.tick(TIMING.normal_timeout + 3 * TIMING.view_change_timeout)
    primary = d.config.primary(d.core(2).view)
    assert d.core(primary).status == Status.NORMAL and d.core(primary).op == 1  # cut
    d.request(primary, 7, 1, 2, add=1)  # a new op takes its place
    d.deliver()
    d.tick(TIMING.heartbeat + 1)
    ops = {op: cs for op, cs, _ in d.nodes[2].commits}
    assert ops.get(2) is not None and ops[2] != committed  # agreement broken


def test_only_a_start_view_answering_this_life_sets_what_to_catch_up_to() -> None:
    """A start_view broadcast before the restart (or answering another life's
    request) says nothing about what this replica may have acked: ignored."""
    d = Driver(3)
    d.register(0, 7)
    d.deliver()
    d.crash(2)
    d.lose_disk(2)
    d.restart(2)
    stale = StartView(0, 0, 1, 1, (d.core(0).log[1],), nonce=0)
    d.step(2, Received(stale))
    assert d.core(2).status == Status.RECOVERING_HEAD
    d.step(2, Received(StartView(0, 0, 1, 1, (d.core(0).log[1],), nonce=d.core(2).nonce + 1)))
    assert d.core(2).status == Status.RECOVERING_HEAD
    d.tick(TIMING.resend + 1)  # it asks with its nonce, the primary answers
    assert d.core(2).status == Status.NORMAL
    d.tick(3 * TIMING.resend)
    assert not d.core(2).rejoining and d.core(2).commit_min == 1


def test_a_rejoining_replica_waits_again_when_its_view_is_in_doubt() -> None:
    d = Driver(3)
    session = registered_with_ops(d, 3)
    d.crash(2)
    d.lose_disk(2)
    d.restart(2)
    d.auto_durable = False  # its repaired ops are written but not yet durable
    d.tick(TIMING.resend + 1)
    core = d.core(2)
    assert core.status == Status.NORMAL and core.rejoining  # installed, not caught up
    assert core.durable_op < core.op
    d.sent.clear()
    d.step(2, Received(StartViewChange(core.view + 1, 1)))
    assert core.status == Status.RECOVERING_HEAD and core.view == 0 and core.rejoining
    d.tick(TIMING.view_change_timeout)
    assert not [m for s, _, m in d.sent if s == 2 and isinstance(m, StartViewChange | DoViewChange)]
    d.auto_durable = True
    for r in range(3):
        d.make_durable(r)
    d.tick(6 * TIMING.view_change_timeout)
    assert not core.rejoining and core.status == Status.NORMAL
    assert core.commit_min == d.core(0).commit_min and session


def registered_with_ops(d: Driver, count: int) -> int:
    d.register(0, 7)
    d.deliver()
    session = replies(d, 7)[-1].result
    assert isinstance(session, int)
    for number in range(1, count + 1):
        d.request(0, 7, session, number, add=1)
        d.deliver()
    return session
