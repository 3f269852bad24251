"""The new primary's choice of log (nack quorum, faulty is not a nack,
canonical by log_view) and the client table's decision table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_replica.cluster import (
    ROOT,
    ClientTable,
    ClusterConfig,
    CommitKind,
    Operation,
    PrepareHeader,
    Rules,
    choose_log,
    make_header,
)
from trio_replica.cluster.messages import DoViewChange, EntryState, SuffixEntry


def chain(length: int, view: int = 0, salt: bytes = b"") -> list[PrepareHeader]:
    out = []
    parent = ROOT.checksum
    for op in range(1, length + 1):
        h = make_header(
            parent=parent,
            op=op,
            view=view,
            client=1,
            request=op,
            operation=Operation.REQUEST,
            body=salt + bytes([op]),
        )
        out.append(h)
        parent = h.checksum
    return out


def dvc(
    replica: int,
    log: list[PrepareHeader],
    states: list[EntryState],
    *,
    log_view: int = 0,
    commit: int = 0,
) -> DoViewChange:
    suffix = tuple(SuffixEntry(h, s) for h, s in zip(log, states, strict=True))
    return DoViewChange(9, replica, log_view, len(log), commit, suffix)


HELD, FAULTY, MISSING = EntryState.HELD, EntryState.FAULTY, EntryState.MISSING
N3 = ClusterConfig(cluster_id=1, replica_count=3)


def test_the_design_example_faulty_copy_is_not_a_nack() -> None:
    # Op 3 committed by the old primary and backup 1, whose copy then rotted;
    # backup 2 never saw it. Backups 1 and 2 do the view change.
    log = chain(3)
    dvcs = [dvc(1, log, [HELD, HELD, FAULTY]), dvc(2, log[:2], [HELD, HELD])]
    assert choose_log(dvcs, N3).op == 3
    # A replica that nacks what it holds but cannot read loses the op:
    broken = [dvc(1, log, [HELD, HELD, MISSING]), dvc(2, log[:2], [HELD, HELD])]
    assert choose_log(broken, N3).op == 2


def test_one_nack_does_not_truncate_but_the_broken_rule_does() -> None:
    log = chain(4)
    dvcs = [dvc(1, log, [HELD] * 4), dvc(2, log[:2], [HELD] * 2)]
    assert choose_log(dvcs, N3).op == 4
    chosen = choose_log(dvcs, N3, Rules(nack_quorum_truncates=False))
    assert chosen.op == 2 and chosen.truncated == 3


def test_a_nack_quorum_truncates() -> None:
    log = chain(4)
    dvcs = [dvc(1, log, [HELD, HELD, MISSING, MISSING]), dvc(2, log[:2], [HELD] * 2)]
    chosen = choose_log(dvcs, N3)
    assert chosen.op == 2 and chosen.truncated == 3


def test_canonical_log_comes_from_the_highest_log_view() -> None:
    old = chain(6, view=1, salt=b"old")
    new = chain(2) + chain(4, view=3, salt=b"new")[2:]
    # rebuild ``new`` so it really chains: ops 1-2 shared, 3-4 from view 3
    parent = new[1].checksum
    fixed = new[:2]
    for op in (3, 4):
        h = make_header(
            parent=parent,
            op=op,
            view=3,
            client=2,
            request=op,
            operation=Operation.REQUEST,
            body=b"new",
        )
        fixed.append(h)
        parent = h.checksum
    dvcs = [
        dvc(0, old, [HELD] * 6, log_view=1),
        dvc(1, fixed, [HELD] * 4, log_view=3, commit=4),
    ]
    chosen = choose_log(dvcs, N3)
    assert chosen.op == 4 and chosen.headers[4] == fixed[3]
    broken = choose_log(dvcs, N3, Rules(canonical_by_log_view=False))
    assert broken.op == 6 and broken.headers[4] == old[3]  # a committed op replaced


def test_a_lagging_canonical_log_takes_committed_headers_from_others() -> None:
    log = chain(6)
    dvcs = [
        dvc(0, log, [HELD] * 6, log_view=2, commit=4),
        dvc(1, log[:3], [HELD] * 3, log_view=3, commit=6),
    ]
    chosen = choose_log(dvcs, N3)
    assert chosen.complete and chosen.op == 6 and chosen.headers[6] == log[5]
    # without any sender holding the head, the choice waits for more senders
    waiting = choose_log([dvcs[1], dvc(2, log[:2], [HELD] * 2, log_view=1)], N3)
    assert not waiting.complete


@given(st.sampled_from([3, 5]), st.data())
def test_a_committed_op_is_never_lost(n: int, data: st.DataObject) -> None:
    """Whatever quorum of senders: an op held durably (HELD or FAULTY) by a
    replication quorum, so possibly committed, is kept with its header."""
    config = ClusterConfig(cluster_id=1, replica_count=n)
    length = data.draw(st.integers(1, 8))
    log = chain(length)
    lengths = [data.draw(st.integers(0, length)) for _ in range(n)]
    states = [
        [data.draw(st.sampled_from([HELD, HELD, FAULTY, MISSING])) for _ in range(k)]
        for k in lengths
    ]
    durable = [
        sum(
            1
            for r in range(n)
            if lengths[r] >= op
            and states[r][op - 1] != MISSING
            and all(s != MISSING for s in states[r][:op])
        )
        for op in range(1, length + 1)
    ]
    committed = max(
        (op for op in range(1, length + 1) if durable[op - 1] >= config.quorum), default=0
    )
    quorum = data.draw(
        st.lists(st.integers(0, n - 1), min_size=config.quorum, max_size=n, unique=True)
    )
    dvcs = [dvc(r, log[: lengths[r]], states[r]) for r in quorum]
    chosen = choose_log(dvcs, config)
    assert chosen.op >= committed
    for op in range(1, committed + 1):
        if op in chosen.headers:
            assert chosen.headers[op] == log[op - 1]


def header(
    op: int, client: int, request: int, operation: Operation = Operation.REQUEST
) -> PrepareHeader:
    return make_header(
        parent=ROOT.checksum,
        op=op,
        view=0,
        client=client,
        request=request,
        operation=operation,
        body=b"",
    )


def test_client_table_decision_table() -> None:
    table = ClientTable(2)
    assert table.commit(header(1, 5, 1)).kind == CommitKind.NO_SESSION
    assert table.commit(header(2, 5, 0, Operation.REGISTER)).kind == CommitKind.REGISTERED
    assert table.get(5).session == 2  # type: ignore[union-attr]
    assert table.commit(header(3, 5, 0, Operation.REGISTER)).kind == CommitKind.DUPLICATE
    assert table.commit(header(4, 5, 1)).kind == CommitKind.APPLY
    table.applied(4, 5, "r1", None)
    assert table.commit(header(5, 5, 1)).kind == CommitKind.DUPLICATE
    assert table.get(5).result == "r1"  # type: ignore[union-attr]
    assert table.commit(header(6, 5, 2)).kind == CommitKind.APPLY


def test_client_table_evicts_the_oldest_session_everywhere_alike() -> None:
    table = ClientTable(2)
    table.commit(header(1, 10, 0, Operation.REGISTER))
    table.commit(header(2, 11, 0, Operation.REGISTER))
    table.commit(header(3, 10, 1))  # client 10 is now the more recent
    outcome = table.commit(header(4, 12, 0, Operation.REGISTER))
    assert outcome.evicted == 11 and table.get(11) is None and len(table) == 2
    assert table.commit(header(5, 11, 1)).kind == CommitKind.NO_SESSION


def test_client_table_broken_variants_are_real_code_paths() -> None:
    no_dedup = ClientTable(4, dedup_at_commit=False)
    no_dedup.commit(header(1, 5, 0, Operation.REGISTER))
    assert no_dedup.commit(header(2, 5, 1)).kind == CommitKind.APPLY
    assert no_dedup.commit(header(3, 5, 1)).kind == CommitKind.APPLY
    at_prepare = ClientTable(4, update_at_prepare=True)
    at_prepare.commit(header(1, 5, 0, Operation.REGISTER))
    at_prepare.prepared(header(3, 5, 2))  # prepared before op 2 commits
    assert at_prepare.commit(header(2, 5, 1)).kind == CommitKind.DUPLICATE  # wrongly skipped
