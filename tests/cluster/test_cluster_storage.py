"""The simulated replica storage keeps exactly what a crash may leave."""

from __future__ import annotations

import random

from trio_replica.cluster import ROOT, Operation, ViewState, make_header
from trio_replica.testing.cluster_storage import SimReplicaStorage


def entries(first: int, last: int, parent: bytes = ROOT.checksum, tag: bytes = b"") -> list:
    out = []
    for op in range(first, last + 1):
        h = make_header(
            parent=parent,
            op=op,
            view=0,
            client=1,
            request=op,
            operation=Operation.REQUEST,
            body=tag + bytes([op]),
        )
        out.append((h, tag + bytes([op])))
        parent = h.checksum
    return out


def test_process_crash_keeps_everything_written() -> None:
    s = SimReplicaStorage()
    s.write(None, tuple(entries(1, 5)))
    s.sync()
    s.write(None, tuple(entries(6, 8, s.written[-1][0].checksum)))
    assert not s.crash(random.Random(1), power_loss=False, torn_probability=1.0)
    assert len(s.written) == 8 and s.durable == s.written


def test_power_loss_keeps_the_durable_prefix_and_maybe_some_unsynced_appends() -> None:
    kept = set()
    torn = 0
    for seed in range(200):
        s = SimReplicaStorage()
        s.write(None, tuple(entries(1, 5)))
        s.sync()
        s.write(None, tuple(entries(6, 9, s.written[-1][0].checksum)))
        torn += s.crash(random.Random(seed), power_loss=True, torn_probability=0.5)
        assert 5 <= len(s.written) <= 9
        kept.add(len(s.written))
    assert kept == {5, 6, 7, 8, 9} and torn > 0


def test_power_loss_with_an_unsynced_truncation_keeps_one_side() -> None:
    outcomes = set()
    for seed in range(100):
        s = SimReplicaStorage()
        s.write(None, tuple(entries(1, 6)))
        s.sync()
        s.write(3, tuple(entries(4, 5, s.written[2][0].checksum, tag=b"new")))
        s.crash(random.Random(seed), power_loss=True, torn_probability=0.0)
        heads = [h.checksum for h, _ in s.written]
        old = [h.checksum for h, _ in entries(1, 6)]
        assert heads == old or heads[:3] == old[:3]
        outcomes.add("old" if heads == old else f"new{len(heads)}")
    assert "old" in outcomes and len(outcomes) > 1


def test_view_state_writes_not_yet_durable_are_lost_by_power_loss() -> None:
    s = SimReplicaStorage()
    s.persist(ViewState(1, 0))
    s.view_state_synced()
    s.persist(ViewState(2, 0))
    s.crash(random.Random(0), power_loss=True, torn_probability=0.0)
    assert s.view_state == ViewState(1, 0)


def test_corruption_makes_a_body_unreadable_and_repair_rewrites_it() -> None:
    s = SimReplicaStorage()
    written = entries(1, 3)
    s.write(None, tuple(written))
    s.sync()
    s.corrupt(2)
    assert s.read(written[1][0]) is None and s.recovered(False).faulty == frozenset({2})
    s.write(None, (written[1],))
    assert s.read(written[1][0]) == written[1][1]


def test_damage_cuts_the_journal_and_the_lost_ops_are_remembered_until_held() -> None:
    s = SimReplicaStorage()
    ops = entries(1, 8)
    s.write(None, tuple(ops))
    s.sync()
    s.crash(random.Random(0), power_loss=False, torn_probability=0.0)
    s.damage(5, header_unreadable=True)
    found = s.recovered(False)
    assert [h.op for h in found.headers] == [1, 2, 3, 4]
    assert found.lost_to == 8 and [h.op for h in found.lost] == [6, 7, 8]
    assert len(s.durable) == 4  # the cut is durable
    # a second crash (a power loss) before the repair still reports them lost
    s.crash(random.Random(1), power_loss=True, torn_probability=0.0)
    again = s.recovered(False)
    assert again.lost_to == 8 and again.lost == ()
    # held again (durably) up to lost_to: nothing is lost any more
    s.write(None, tuple(ops[4:]))
    assert s.recovered(False).lost_to == 8  # written, not yet durable
    s.sync()
    assert s.recovered(False).lost_to == 0
