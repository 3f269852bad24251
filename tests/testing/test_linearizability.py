"""Known histories, linearizable and not, classified by the checker."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
import trio
from linearizability_models import (
    UNKNOWN,
    KeyValue,
    Register,
    apply_command,
    concurrent_history,
    history,
    kv_keys,
)

from trio_replica import InvalidCommand
from trio_replica.machines.counter import Counter
from trio_replica.machines.metadata import MetadataStateMachine
from trio_replica.testing import (
    HistoryError,
    HistoryRecorder,
    MachineModel,
    Operation,
    Outcome,
    Rejected,
    StepModel,
    Verdict,
    check_linearizability,
    results_equal,
)

R = Rejected()


def verdict(ops: list[Operation], factory: Any = Register, **options: Any) -> Verdict:
    return check_linearizability(ops, factory, **options).verdict


LIN, NOT = Verdict.LINEARIZABLE, Verdict.NOT_LINEARIZABLE


# --- register: stale reads, lost writes, real-time order ----------------------


def test_sequential_history_is_linearizable() -> None:
    ops = history(
        ("a", {"write": 1}, 0, 1, None),
        ("b", {"read": None}, 2, 3, 1),
        ("a", {"write": 2}, 4, 5, None),
        ("b", {"read": None}, 6, 7, 2),
    )
    result = check_linearizability(ops, Register)
    assert result.verdict is LIN and result and result.linearizable
    assert result.operations == 4 and result.partitions == result.partitions_checked == 1


def test_stale_read_is_not_linearizable() -> None:
    ops = history(
        ("a", {"write": 1}, 0, 1, None),
        ("a", {"write": 2}, 2, 3, None),
        ("b", {"read": None}, 4, 5, 1),
    )
    result = check_linearizability(ops, Register)
    assert result.verdict is NOT and not result
    example = result.counterexample
    assert example is not None
    assert example.operation == ops[2]
    assert example.next_results == ((ops[2], 2),)  # the model reads 2, the client saw 1
    assert "model: 2" in result.describe()


def test_lost_write_is_not_linearizable() -> None:
    # Both writes were acknowledged, yet a later read sees neither.
    ops = history(
        ("a", {"write": 1}, 0, 3, None),
        ("b", {"write": 2}, 1, 2, None),
        ("c", {"read": None}, 4, 5, None),
    )
    assert verdict(ops) is NOT


def test_real_time_order_decides() -> None:
    # A read that overlaps the write may see the old value ...
    overlapping = history(
        ("a", {"write": 1}, 0, 3, None),
        ("b", {"read": None}, 1, 2, None),
    )
    assert verdict(overlapping) is LIN
    # ... one that starts after the write completed may not.
    after = history(
        ("a", {"write": 1}, 0, 1, None),
        ("b", {"read": None}, 2, 3, None),
    )
    assert verdict(after) is NOT
    # Equal times count as concurrent (the conservative reading).
    touching = history(
        ("a", {"write": 1}, 0, 2, None),
        ("b", {"read": None}, 2, 3, None),
    )
    assert verdict(touching) is LIN


def test_concurrent_reads_must_not_go_back_in_time() -> None:
    # During a long write, one read sees the new value; a later read the old one.
    ops = history(
        ("a", {"write": 1}, 0, 10, None),
        ("b", {"read": None}, 1, 2, 1),
        ("c", {"read": None}, 3, 4, None),
    )
    assert verdict(ops) is NOT
    ops[2] = attrs.evolve(ops[2], result=1)
    assert verdict(ops) is LIN


def test_rejection_is_an_observation() -> None:
    ok = history(
        ("a", {"write": 0}, 0, 1, None),
        ("b", {"cas": [1, 2]}, 2, 3, R),
        ("b", {"cas": [0, 2]}, 4, 5, None),
        ("c", {"read": None}, 6, 7, 2),
    )
    assert verdict(ok) is LIN
    # A compare-and-set that should have succeeded was reported rejected.
    wrong = list(ok)
    wrong[2] = history(("b", {"cas": [0, 2]}, 4, 5, R))[0]
    assert verdict(wrong[:3]) is NOT


def test_failed_operations_are_ignored() -> None:
    ops = history(("b", {"read": None}, 2, 3, None))
    failed = Operation("a", {"write": 9}, 0, 1, Outcome.FAILED)
    assert verdict([failed, *ops]) is LIN
    seen_nine = history(("b", {"read": None}, 2, 3, 9))
    assert verdict([failed, *seen_nine]) is NOT
    result = check_linearizability([failed], Register)
    assert result.verdict is LIN and result.operations == 0 and result.partitions == 0


# --- unknown outcomes ----------------------------------------------------------


def test_unknown_write_may_apply() -> None:
    ops = history(
        ("a", {"write": 1}, 0, None, UNKNOWN),
        ("b", {"read": None}, 5, 6, 1),
    )
    assert verdict(ops) is LIN


def test_unknown_write_may_never_apply() -> None:
    ops = history(
        ("a", {"write": 1}, 0, None, UNKNOWN),
        ("b", {"read": None}, 5, 6, None),
        ("b", {"read": None}, 7, 8, None),
    )
    assert verdict(ops) is LIN


def test_unknown_write_may_apply_long_after_its_invocation() -> None:
    ops = history(
        ("a", {"write": 1}, 0, None, UNKNOWN),
        ("b", {"read": None}, 2, 3, None),
        ("b", {"read": None}, 10, 11, None),
        ("c", {"read": None}, 20, 21, 1),
    )
    assert verdict(ops) is LIN


def test_unknown_write_cannot_apply_before_its_invocation() -> None:
    ops = history(
        ("b", {"read": None}, 0, 1, 1),
        ("a", {"write": 1}, 2, None, UNKNOWN),
    )
    assert verdict(ops) is NOT


def test_unknown_write_cannot_be_undone() -> None:
    ops = history(
        ("a", {"write": 1}, 0, None, UNKNOWN),
        ("b", {"read": None}, 2, 3, 1),
        ("b", {"read": None}, 4, 5, None),
    )
    assert verdict(ops) is NOT


def test_pending_operation_of_the_recorder_counts_as_unknown() -> None:
    recorder = HistoryRecorder()
    recorder.invoke("a", {"write": 1})  # never completed
    recorder.invoke("b", {"read": None}).ok(1)
    ops = recorder.operations()
    assert ops[0].outcome is Outcome.UNKNOWN and ops[0].completed is None
    assert verdict(list(ops)) is LIN


# --- counter (the project's Counter): duplicate and lost applies ----------------


def test_duplicate_apply_is_not_linearizable() -> None:
    ops = history(
        ("a", {"add": 1}, 0, 1, 1),
        ("b", {"add": 0}, 2, 3, 2),  # the add counted twice
    )
    assert verdict(ops, Counter) is NOT


def test_unknown_add_applies_at_most_once() -> None:
    def reading(total: int) -> list[Operation]:
        return history(
            ("a", {"add": 1}, 0, None, UNKNOWN),
            ("b", {"add": 0}, 2, 3, total),
        )

    assert verdict(reading(0), Counter) is LIN  # never applied
    assert verdict(reading(1), Counter) is LIN  # applied once
    assert verdict(reading(2), Counter) is NOT  # applied twice


def test_equal_unknown_commands_count_not_subsets() -> None:
    # Twenty timed-out "+1"s, then reads of the total: which of them took
    # effect is 2**20 subsets, but how many is 21 counts, which is all that
    # matters. Refuting an impossible total must not enumerate subsets.
    retries = [(c, {"add": 1}, c, None, UNKNOWN) for c in range(20)]
    reads = [(30, {"add": 0}, 40 + 2 * k, 41 + 2 * k, total) for k, total in enumerate([3, 7])]
    fine = history(*retries, *reads)
    assert check_linearizability(fine, Counter, max_steps=20_000).verdict is LIN
    too_many = history(*retries, *reads, (30, {"add": 0}, 50, 51, 21))
    assert check_linearizability(too_many, Counter, max_steps=20_000).verdict is NOT
    going_back = history(*retries, *reads, (30, {"add": 0}, 50, 51, 6))
    assert check_linearizability(going_back, Counter, max_steps=20_000).verdict is NOT


def test_lost_add_is_not_linearizable() -> None:
    ops = history(
        ("a", {"add": 5}, 0, 1, 5),
        ("b", {"add": 3}, 2, 3, 8),
        ("c", {"add": 0}, 4, 5, 5),  # the acknowledged +3 is gone
    )
    assert verdict(ops, Counter) is NOT


def test_counter_rejections_compare_equal() -> None:
    ops = history(
        ("a", {"add": "x"}, 0, 1, Rejected("counter 'add' must be an integer, got str")),
        ("a", {"add": 2}, 2, 3, 2),
    )
    assert verdict(ops, Counter) is LIN


# --- the project's metadata state machine ---------------------------------------


def metadata_results(*commands: Any) -> list[Any]:
    """What a fresh MetadataStateMachine answers to ``commands`` in order."""
    machine = MetadataStateMachine()
    return [apply_command(machine, op, c) for op, c in enumerate(commands, start=1)]


def same_but_op(model: Any, seen: Any) -> bool:
    """Results compared without ``created_op``: a replica's op numbers are
    not the checker's."""

    def strip(result: Any) -> Any:
        if isinstance(result, dict):
            return {k: v for k, v in result.items() if k != "created_op"}
        return result

    return results_equal(strip(model), strip(seen))


def metadata_verdict(ops: list[Operation]) -> Verdict:
    return check_linearizability(ops, MetadataStateMachine, equal=same_but_op).verdict


ANN = {"type": "create_user", "username": "ann"}
ANN_INACTIVE = {"type": "update_user", "username": "ann", "status": "inactive"}
DELETE_ANN = {"type": "delete_user", "username": "ann"}
S1 = {"type": "create_stream", "name": "s1"}
S2 = {"type": "create_stream", "name": "s2"}
T1 = {"type": "create_topic", "stream": "s1", "name": "t1", "partitions": 2}


def test_metadata_stale_read() -> None:
    created, inactive, deleted = metadata_results(ANN, ANN_INACTIVE, DELETE_ANN)
    assert deleted["status"] == "inactive"
    ops = history(
        ("a", ANN, 0, 1, created),
        ("b", ANN_INACTIVE, 2, 3, inactive),
        ("c", DELETE_ANN, 4, 5, deleted),
    )
    assert metadata_verdict(ops) is LIN
    # The delete reports the user as it was before the acknowledged update.
    stale = {**deleted, "status": "active"}
    assert metadata_verdict([*ops[:2], attrs.evolve(ops[2], result=stale)]) is NOT


def test_metadata_lost_write() -> None:
    stream, topic, again = metadata_results(S1, T1, T1)
    assert isinstance(again, Rejected)
    ops = history(("a", S1, 0, 1, stream), ("b", T1, 2, 3, topic), ("c", T1, 4, 5, again))
    assert metadata_verdict(ops) is LIN
    # The second create succeeds: the first topic was lost.
    _, lost_topic = metadata_results(S1, T1)
    lost = Operation("c", T1, 4, 5, Outcome.OK, lost_topic)
    assert metadata_verdict([*ops[:2], lost]) is NOT


def test_metadata_duplicate_apply() -> None:
    # s1's creation timed out (the client may have retried elsewhere); s2 is
    # then created with id 1 (s1 never applied) or 2 (applied once), never 3.
    for s2_id, expected in ((1, LIN), (2, LIN), (3, NOT)):
        (created,) = metadata_results(S2)
        ops = history(
            ("a", S1, 0, None, UNKNOWN),
            ("b", S2, 2, 3, {**created, "id": s2_id}),
        )
        assert metadata_verdict(ops) is expected, s2_id


def test_metadata_real_time_order() -> None:
    stream, refused = metadata_results(T1, S1)[1], metadata_results(T1)[0]
    assert isinstance(refused, Rejected)
    # The topic's creation was refused for want of a stream whose creation
    # had already been acknowledged: not linearizable ...
    after = history(("a", S1, 0, 1, stream), ("b", T1, 2, 3, refused))
    assert metadata_verdict(after) is NOT
    # ... unless the two overlapped.
    overlapping = history(("a", S1, 0, 3, stream), ("b", T1, 1, 2, refused))
    assert metadata_verdict(overlapping) is LIN


# --- partitioning (P-compositionality) ------------------------------------------


def test_violation_reported_in_its_partition() -> None:
    ops = history(
        ("a", {"put": "x", "value": 1}, 0, 1, None),
        ("b", {"put": "y", "value": 1}, 0, 1, None),
        ("a", {"get": "x"}, 2, 3, 1),
        ("b", {"get": "y"}, 2, 3, 2),  # nobody wrote 2 to y
    )
    result = check_linearizability(ops, KeyValue, partition=kv_keys)
    assert result.verdict is NOT and result.partitions == 2
    assert result.counterexample is not None
    assert result.counterexample.partition == ("y",)
    assert list(result.counterexample.operations) == [ops[1], ops[3]]


def test_multi_key_operation_joins_partitions() -> None:
    ops = history(
        ("a", {"put": "x", "value": 1}, 0, 1, None),
        ("b", {"put": "y", "value": 2}, 0, 1, None),
        ("c", {"put": "z", "value": 3}, 0, 1, None),
        ("a", {"swap": ["x", "y"]}, 2, 3, None),
        ("b", {"get": "x"}, 4, 5, 2),
        ("b", {"get": "y"}, 6, 7, 1),
    )
    result = check_linearizability(ops, KeyValue, partition=kv_keys)
    assert result.verdict is LIN and result.partitions == 2
    # Without the swap's join, y alone could not explain reading 1.
    wrong = [*ops[:5], history(("b", {"get": "y"}, 6, 7, 2))[0]]
    result = check_linearizability(wrong, KeyValue, partition=kv_keys)
    assert result.verdict is NOT
    assert result.counterexample is not None
    assert set(result.counterexample.partition) == {"x", "y"}


def test_operation_without_keys_is_alone() -> None:
    def keys(command: Any) -> Any:
        return frozenset() if "read" in command else "r"

    ops = history(
        ("a", {"write": 1}, 0, 1, None),
        ("b", {"read": None}, 2, 3, None),  # alone, it reads the initial value
    )
    result = check_linearizability(ops, Register, partition=keys)
    assert result.verdict is LIN and result.partitions == 2


# --- models ---------------------------------------------------------------------


def register_step(state: Any, command: Any) -> tuple[Any, Any]:
    if "write" in command:
        return command["write"], None
    if "read" in command:
        return state, state
    old, new = command["cas"]
    if state != old:
        raise InvalidCommand("mismatch")
    return new, None


def test_step_model_gives_the_same_verdicts() -> None:
    model = StepModel(None, register_step)
    stale = history(
        ("a", {"write": 1}, 0, 1, None),
        ("b", {"cas": [1, 2]}, 2, 3, None),
        ("b", {"cas": [1, 3]}, 4, 5, R),
        ("c", {"read": None}, 6, 7, 1),
    )
    assert verdict(stale, model) is NOT
    assert verdict(stale[:3], model) is LIN


def test_machine_model_with_a_custom_key() -> None:
    keyed = MachineModel(KeyValue, key=lambda snapshot: tuple(sorted(snapshot.items())))
    rng = random.Random(5)
    commands = [
        {"put": "k", "value": rng.randrange(3)} if rng.random() < 0.5 else {"get": "k"}
        for _ in range(40)
    ]
    ops = concurrent_history(rng, KeyValue, commands, clients=4, unknown=0.1)
    assert verdict(ops, keyed) is LIN
    index = next(i for i, o in enumerate(ops) if o.outcome is Outcome.OK)
    ops[index] = attrs.evolve(ops[index], result=99)  # never written
    assert verdict(ops, keyed) is NOT


def test_results_that_went_through_cbor_compare_equal() -> None:
    model = StepModel((), lambda state, command: ((*state, command), (*state, command)))
    ops = history(("a", 1, 0, 1, [1]), ("a", 2, 2, 3, [1, 2]))
    assert verdict(ops, model) is LIN


def test_named_reads_are_placed_without_branching() -> None:
    # Twelve reads overlapping two writes: without knowing they are reads,
    # refuting the impossible last read means trying their orders; named as
    # read-only, each is placed once, where its result matches.
    ops = history(
        ("w", {"write": 1}, 0, 30, None),
        ("v", {"write": 2}, 1, 31, None),
        *[(c, {"read": None}, 2 + c, 40 + c, 1 + c % 2) for c in range(12)],
        ("z", {"read": None}, 60, 61, 3),
    )

    def reads(command: Any) -> bool:
        return "read" in command

    plain = check_linearizability(ops, Register)
    named = check_linearizability(ops, Register, read_only=reads)
    assert plain.verdict is named.verdict is NOT
    assert named.steps * 10 < plain.steps
    fine = ops[:-1]
    assert check_linearizability(fine, Register, read_only=reads).verdict is LIN
    # An impossible value among the concurrent reads is still caught.
    wrong = [*fine[:5], attrs.evolve(fine[5], result=3), *fine[6:]]
    assert check_linearizability(wrong, Register, read_only=reads).verdict is NOT


def test_cached_transitions_give_the_same_verdicts() -> None:
    rng = random.Random(8)
    commands = [
        {"put": "k", "value": str(rng.randrange(3))} if rng.random() < 0.5 else {"get": "k"}
        for _ in range(60)
    ]
    ops = concurrent_history(rng, KeyValue, commands, clients=5, unknown=0.1)
    cached = MachineModel(KeyValue, uses_op=False)
    assert verdict(ops, cached) is LIN
    index = max(i for i, o in enumerate(ops) if o.outcome is Outcome.OK and "get" in o.command)
    ops[index] = attrs.evolve(ops[index], result="never written")
    assert verdict(ops, cached) is NOT
    assert verdict(ops, KeyValue) is NOT


# --- budget ---------------------------------------------------------------------


def hard_history() -> list[Operation]:
    # Many concurrent writes of equal values and reads: the search must try
    # many orders before it can refute the impossible final read.
    ops = history(
        *[(c, {"write": c % 2}, c, 100 + c, None) for c in range(11)],
        ("z", {"read": None}, 200, 201, 7),
    )
    return ops


def test_budget_exhaustion_is_inconclusive_never_linearizable() -> None:
    ops = hard_history()
    assert verdict(ops) is NOT  # with the default budget
    result = check_linearizability(ops, Register, max_steps=20)
    assert result.verdict is Verdict.INCONCLUSIVE and not result and not result.linearizable
    assert result.reason is not None and "step budget of 20" in result.reason
    assert result.counterexample is None and result.partitions_checked == 0
    timed = check_linearizability(ops, Register, time_limit=0.0, max_steps=None)
    assert timed.verdict is Verdict.INCONCLUSIVE
    assert timed.reason is not None and "time limit" in timed.reason


def test_budget_exhaustion_on_a_linearizable_history_is_inconclusive() -> None:
    rng = random.Random(1)
    commands = [{"put": "k", "value": rng.randrange(2)} for _ in range(60)]
    ops = concurrent_history(rng, KeyValue, commands, clients=8)
    assert verdict(ops, KeyValue) is LIN
    assert verdict(ops, KeyValue, max_steps=10) is Verdict.INCONCLUSIVE


def test_budget_is_shared_by_the_partitions() -> None:
    rng = random.Random(2)
    commands = [{"put": f"k{i % 5}", "value": rng.randrange(3)} for i in range(200)]
    ops = concurrent_history(rng, KeyValue, commands, clients=6)
    full = check_linearizability(ops, KeyValue, partition=kv_keys)
    assert full.verdict is LIN and full.partitions == full.partitions_checked == 5
    cut = check_linearizability(ops, KeyValue, partition=kv_keys, max_steps=full.steps // 2)
    assert cut.verdict is Verdict.INCONCLUSIVE and 0 < cut.partitions_checked < 5


# --- the recorder, from Trio tasks ----------------------------------------------


class Service:
    """An in-process register served to concurrent clients, optionally with a
    read cache that is not invalidated (the bug)."""

    def __init__(self, *, stale_cache: bool):
        self.machine = Register()
        self.cache: Any = None
        self.stale_cache = stale_cache
        self.op = 0

    async def submit(self, command: Any) -> Any:
        await trio.sleep(0.001 * (hash(repr(command)) % 3))
        self.op += 1
        if self.stale_cache and "read" in command and self.op > 5:
            return self.cache
        result = self.machine.apply(self.op, command)
        if "read" in command:
            self.cache = result
        await trio.sleep(0.001)
        return result


async def run_clients(service: Service, recorder: HistoryRecorder) -> None:
    async def client(name: int) -> None:
        for k in range(6):
            command: Any = {"write": name * 10 + k} if k % 2 == 0 else {"read": None}
            pending = recorder.invoke(name, command)
            try:
                with trio.fail_after(1):
                    result = await service.submit(command)
            except InvalidCommand as error:
                pending.rejected(str(error))
            else:
                pending.ok(result)
            await trio.sleep(0.0005 * name)

    async with trio.open_nursery() as nursery:
        for name in range(4):
            nursery.start_soon(client, name)


async def test_recorded_trio_clients_of_a_correct_service(autojump_clock: Any) -> None:
    recorder = HistoryRecorder()
    await run_clients(Service(stale_cache=False), recorder)
    assert len(recorder) == 24
    assert verdict(list(recorder.operations())) is LIN


async def test_recorded_trio_clients_of_a_stale_cache(autojump_clock: Any) -> None:
    recorder = HistoryRecorder()
    await run_clients(Service(stale_cache=True), recorder)
    result = check_linearizability(recorder.operations(), Register)
    assert result.verdict is NOT, result.describe()
    assert result.counterexample is not None
    assert result.counterexample.operation.command == {"read": None}


def test_recorder_refuses_a_second_outcome() -> None:
    recorder = HistoryRecorder()
    pending = recorder.invoke("a", {"read": None})
    pending.ok(None)
    with pytest.raises(HistoryError) as caught:
        pending.info()
    assert caught.value.operation == recorder.operations()[0]


def test_recorder_times_follow_the_calls() -> None:
    recorder = HistoryRecorder()
    first = recorder.invoke("a", 1)
    second = recorder.invoke("b", 2)
    second.rejected("no")
    first.fail()
    third = recorder.invoke("c", 3)
    third.info()
    a, b, c = recorder.operations()
    assert (a.invoked, a.completed, a.outcome) == (1, 4, Outcome.FAILED)
    assert (b.invoked, b.completed, b.outcome, b.result) == (2, 3, Outcome.REJECTED, R)
    assert (c.invoked, c.completed, c.outcome) == (5, None, Outcome.UNKNOWN)


def test_malformed_operations_are_refused() -> None:
    with pytest.raises(HistoryError):
        Operation("a", 1, 5, 4, Outcome.OK)
    with pytest.raises(HistoryError):
        Operation("a", 1, 5, None, Outcome.OK)
    with pytest.raises(HistoryError):
        Operation("a", 1, 5, 6, Outcome.REJECTED, "not a Rejected")
