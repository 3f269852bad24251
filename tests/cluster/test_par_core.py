"""Protocol-aware recovery in the consensus core: ops a replica lost to
damage (cut from its journal at recovery) are repaired from peers and never
counted as a nack, so a committed op survives its copy rotting on one
replica while a third replica lags."""

from __future__ import annotations

import pytest
from vsr_driver import Driver

from trio_replica.cluster import Rules, Status, Timing
from trio_replica.cluster.messages import Reply

TIMING = Timing()


def replies(driver: Driver, client: int) -> list[Reply]:
    return [m for c, m in driver.client_inbox if c == client and isinstance(m, Reply)]


def registered(driver: Driver, client: int = 7) -> int:
    driver.register(0, client)
    driver.deliver()
    session = replies(driver, client)[-1].result
    assert isinstance(session, int) and session >= 1
    return session


def committed_then_lost(rules: Rules, *, header_unreadable: bool) -> tuple[Driver, bytes]:
    """Op 2 (the last acknowledged batch) is committed by primary 0 and backup
    1 while backup 2 lags (never saw it). Backup 1's copy of op 2 then rots:
    its recovery cuts the journal there and reports op 2 lost. Primary 0
    crashes. Returns the driver after backups 1 and 2 tried a view change,
    and op 2's committed checksum."""
    d = Driver(3, rules=rules)
    session = registered(d)
    d.tick(TIMING.heartbeat + 1)
    d.request(0, 7, session, 1, add=5)
    d.deliver(drop={2})
    committed = [cs for op, cs, _ in d.nodes[0].commits if op == 2]
    assert committed and replies(d, 7)[-1].result == 5
    assert [h.op for h, _ in d.nodes[1].storage.durable] == [1, 2]
    d.crash(1)
    d.nodes[1].storage.damage(2, header_unreadable=header_unreadable)
    d.restart(1)
    core = d.core(1)
    assert core.journal_op == 1  # cut
    assert core.lost_to == (2 if rules.lost_is_not_nack else 0)
    assert [h.op for h, _ in d.nodes[1].storage.written] == [1]
    d.crash(0)
    d.tick(TIMING.normal_timeout + 2 * TIMING.view_change_timeout)
    return d, committed[0]


def finish(d: Driver) -> None:
    d.restart(0)
    d.tick(8 * TIMING.view_change_timeout)


@pytest.mark.parametrize("header_unreadable", [False, True])
def test_a_lost_op_is_never_a_nack(header_unreadable: bool) -> None:
    d, committed = committed_then_lost(Rules(), header_unreadable=header_unreadable)
    if header_unreadable:
        # Replica 1 cannot name op 2, so it does not vote: no view change
        # completes with replica 2 alone, and nothing is truncated.
        assert all(d.core(r).status != Status.NORMAL for r in (1, 2))
    else:
        # Replica 1 reports op 2 faulty: one nack (replica 2) is no nack
        # quorum, so the new view keeps it and replica 1 repairs it later.
        assert max(d.core(r).op for r in (1, 2)) >= 2
    finish(d)
    for r in range(3):
        ops = {op: cs for op, cs, _ in d.nodes[r].commits}
        assert ops.get(2) == committed, r
        assert d.core(r).journal_op >= 2 and d.core(r).lost_to <= d.core(r).op
    # the repaired copy is back in replica 1's journal
    assert d.nodes[1].storage.durable[1][0].checksum == committed


@pytest.mark.parametrize("broken", [Rules(faulty_is_not_nack=False), Rules(lost_is_not_nack=False)])
def test_counting_a_lost_op_as_a_nack_loses_a_committed_op(broken: Rules) -> None:
    d, committed = committed_then_lost(broken, header_unreadable=False)
    primary = d.config.primary(d.core(1).view)
    assert d.core(primary).status == Status.NORMAL and d.core(primary).op == 1  # cut
    d.request(primary, 7, 1, 2, add=1)  # a new op takes its place
    d.deliver()
    d.tick(TIMING.heartbeat + 1)
    ops = {op: cs for op, cs, _ in d.nodes[2].commits}
    assert ops.get(2) is not None and ops[2] != committed  # agreement broken
