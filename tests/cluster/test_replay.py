"""A member replaying old messages changes nothing: the core's view and checksum checks.

TLS authenticates who sends; it cannot stop a member with a valid certificate
(or a recording of its traffic replayed through one) from sending a prepare
or a start_view of an older view again. The consensus core must ignore those
on its own, which these tests show on the sans-IO core.
"""

from __future__ import annotations

import attrs
from vsr_driver import Driver

from trio_replica.cluster import Status, Timing
from trio_replica.cluster.events import Received
from trio_replica.cluster.messages import Commit, Prepare, StartView

TIMING = Timing()


def _state(d: Driver, r: int) -> tuple[object, ...]:
    """Everything a message could change in replica ``r``."""
    core = d.core(r)
    storage = d.nodes[r].storage
    return (
        core.view,
        core.status,
        core.op,
        core.commit_max,
        {op: h.checksum for op, h in core.log.items()},
        len(storage.written),
        storage.view_state,
        list(d.nodes[r].commits),
    )


def _settled(d: Driver, session: int, client: int, first: int, count: int, primary: int) -> None:
    for number in range(first, first + count):
        d.request(primary, client, session, number, add=1)
        d.deliver()
    d.tick(TIMING.heartbeat + 1)


def _two_view_changes() -> tuple[Driver, int]:
    """Views 0 (primary 0), 1 (primary 1) and 2 (primary 2), ops committed in
    each; replica 0 is back as a backup of view 2. Returns it and the session."""
    d = Driver(3)
    d.register(0, 7)
    d.deliver()
    session = next(m.result for c, m in d.client_inbox if c == 7)
    _settled(d, session, 7, 1, 3, primary=0)
    d.crash(0)
    d.tick(TIMING.normal_timeout + TIMING.view_change_timeout)
    assert d.core(1).view == 1 and d.core(1).is_primary
    _settled(d, session, 7, 4, 3, primary=1)
    d.restart(0)
    d.tick(TIMING.resend * 3)
    assert d.core(0).status == Status.NORMAL and d.core(0).view == 1
    d.crash(1)
    d.tick(TIMING.normal_timeout + TIMING.view_change_timeout)
    assert d.core(2).view == 2 and d.core(2).is_primary
    assert d.core(0).view == 2 and d.core(0).status == Status.NORMAL
    _settled(d, session, 7, 7, 2, primary=2)
    return d, session


def test_old_prepares_and_start_views_replayed_to_a_backup_change_nothing() -> None:
    d, _ = _two_view_changes()
    old_prepares = [m for s, _, m in d.sent if isinstance(m, Prepare) and m.view < 2]
    old_start_views = [m for s, _, m in d.sent if isinstance(m, StartView) and m.view < 2]
    old_commits = [m for s, _, m in d.sent if isinstance(m, Commit) and m.view < 2]
    assert {m.view for m in old_prepares} == {0, 1}
    assert [m.view for m in old_start_views] and {m.view for m in old_start_views} == {1}
    before = _state(d, 0)
    sent = len(d.sent)
    for message in [*old_prepares, *old_start_views, *old_commits]:
        d.step(0, Received(message))
    assert _state(d, 0) == before
    assert d.sent[sent:] == []  # not even an answer: an older view is ignored outright
    # The backup still follows its primary.
    d.tick(TIMING.heartbeat + 1)
    assert d.core(0).status == Status.NORMAL and d.core(0).view == 2


def test_a_replayed_prepare_of_the_current_view_changes_nothing() -> None:
    d, _ = _two_view_changes()
    current = [m for s, _, m in d.sent if isinstance(m, Prepare) and m.view == 2 and m.replica == 2]
    assert current
    before = _state(d, 0)
    for message in current:
        d.step(0, Received(message))
    d.deliver()
    assert _state(d, 0) == before  # already held: at most acknowledged again


def test_forged_prepares_are_refused_by_the_view_and_checksum_checks() -> None:
    d, _ = _two_view_changes()
    latest = [m for s, _, m in d.sent if isinstance(m, Prepare) and m.view == 2][-1]
    forged = [
        # The body does not match the header's checksum.
        attrs.evolve(latest, body=latest.body + b"x"),
        # A backup (replica 1) cannot prepare in view 2: only its primary (2) can.
        attrs.evolve(latest, replica=1),
        # A new op whose header was altered: its checksum no longer verifies.
        attrs.evolve(latest, header=attrs.evolve(latest.header, op=latest.header.op + 1)),
    ]
    before = _state(d, 0)
    for message in forged:
        d.step(0, Received(message))
    d.deliver()
    assert _state(d, 0) == before
