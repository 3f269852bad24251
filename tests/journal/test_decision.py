"""The recovery decision table is total and single-valued, and the probe classification is right."""

from __future__ import annotations

from collections.abc import Iterator

from trio_replica.journal.decision import (
    DECISION_COLUMNS,
    DECISION_TABLE,
    REPAIRED_FROM_PEERS,
    Action,
    Case,
    ProbeHit,
    Replication,
    classify_probe,
    decide,
)


def test_every_case_maps_to_exactly_one_action() -> None:
    assert set(DECISION_TABLE) == set(Case)
    assert len(DECISION_TABLE) == len(Case)
    for case in Case:
        assert isinstance(decide(case), Action)
    # Every action is used by some case of some column: no dead action.
    used = {action for column in DECISION_COLUMNS.values() for action in column.values()}
    assert used == set(Action)
    assert Action.REPAIR_FROM_PEERS not in set(DECISION_TABLE.values())


def test_every_column_maps_every_case_to_exactly_one_action() -> None:
    assert set(DECISION_COLUMNS) == set(Replication)
    for replication, column in DECISION_COLUMNS.items():
        assert set(column) == set(Case) and len(column) == len(Case)
        for case in Case:
            assert decide(case, replication) is column[case]
    assert DECISION_COLUMNS[Replication.SINGLE] is DECISION_TABLE


def test_the_cluster_column_is_never_less_careful_than_the_single_one() -> None:
    """A cluster replica turns some refusals into repair from its peers, but
    never cuts or accepts what a single replica refuses."""
    single, cluster = DECISION_COLUMNS[Replication.SINGLE], DECISION_COLUMNS[Replication.CLUSTER]
    for case in Case:
        if single[case] in {Action.RAISE_CORRUPTION, Action.RAISE_FORMAT, Action.RAISE_FOREIGN}:
            assert cluster[case] not in {Action.ACCEPT, Action.TRUNCATE, Action.REMOVE_SEGMENT}
        else:
            assert cluster[case] is single[case]


def test_the_cluster_column_repairs_damage_inside_segments_only() -> None:
    cluster = DECISION_COLUMNS[Replication.CLUSTER]
    repaired = {c for c, a in cluster.items() if a is Action.REPAIR_FROM_PEERS}
    assert repaired == REPAIRED_FROM_PEERS
    # Only corruption refusals become repairs: foreign data and unknown
    # formats are not this replica's history, and a lost segment or
    # superblock evidence has nothing to cut at.
    for case in repaired:
        assert DECISION_TABLE[case] is Action.RAISE_CORRUPTION
    for case in (
        Case.SEGMENT_FOREIGN_DIRECTORY,
        Case.SEGMENT_UNKNOWN_VERSION,
        Case.RECORD_UNSUPPORTED,
        Case.JOURNAL_END_LOST,
        Case.JOURNAL_START_LOST,
        Case.WAL_MISSING,
        Case.SEGMENT_OP_GAP,
        Case.SEGMENT_CHAIN_BREAK,
    ):
        assert cluster[case] is DECISION_TABLE[case]


def test_only_provable_torn_tails_are_cut() -> None:
    cut = {case for case, action in DECISION_TABLE.items() if action is Action.TRUNCATE}
    assert cut == {Case.BAD_RECORD_NOTHING_VALID_AFTER, Case.BAD_RECORD_ONLY_SAME_BATCH_AFTER}
    removed = {c for c, a in DECISION_TABLE.items() if a is Action.REMOVE_SEGMENT}
    assert removed == {Case.LAST_SEGMENT_HEADER_TORN}
    accepted = {c for c, a in DECISION_TABLE.items() if a is Action.ACCEPT}
    assert accepted == {Case.RECORD_VALID, Case.SEGMENT_HEADER_VALID}


def test_classify_probe() -> None:
    firsts = frozenset({10, 8})
    classify = classify_probe
    assert classify([], expected_op=10, torn_batch_firsts=firsts)[0] is (
        Case.BAD_RECORD_NOTHING_VALID_AFTER
    )
    same = [ProbeHit(800, 11, 8), ProbeHit(900, 12, 8)]
    case, hit = classify(same, expected_op=10, torn_batch_firsts=firsts)
    assert case is Case.BAD_RECORD_ONLY_SAME_BATCH_AFTER and hit == same[0]
    later = [*same, ProbeHit(1000, 13, 13)]
    case, hit = classify(later, expected_op=10, torn_batch_firsts=firsts)
    assert case is Case.BAD_RECORD_LATER_BATCH_AFTER and hit == later[-1]
    # A record of an older batch, or an op at or before the bad one, cannot follow it.
    for stale in (ProbeHit(800, 11, 5), ProbeHit(800, 10, 10), ProbeHit(800, 3, 1)):
        assert classify([stale], expected_op=10, torn_batch_firsts=firsts)[0] is (
            Case.BAD_RECORD_STALE_AFTER
        )


def test_classify_probe_stops_at_the_first_proof() -> None:
    def hits() -> Iterator[ProbeHit]:
        yield ProbeHit(800, 12, 12)
        raise AssertionError("read past the deciding hit")

    assert classify_probe(hits(), expected_op=10, torn_batch_firsts=frozenset({10}))[0] is (
        Case.BAD_RECORD_LATER_BATCH_AFTER
    )
