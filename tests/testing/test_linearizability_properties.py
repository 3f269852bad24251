"""Properties of the linearizability checker.

* Histories produced by really running a sequential model under random
  concurrency (each operation taking effect inside its interval, unknown
  outcomes applied or not) are always linearizable.
* The same histories with one result corrupted so that no order can
  produce it (a value nobody wrote, a read of a value overwritten before the
  read began, an entity id never assigned) are not.
* On tiny histories with arbitrary results the checker agrees with the
  definition checked by enumeration, with and without partitioning, naming
  reads as read-only, and caching transitions.
* A violation's counterexample is the shortest prefix that fails: one
  completion earlier, the history is linearizable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import assume, given
from hypothesis import strategies as st
from linearizability_models import (
    KeyValue,
    Register,
    brute_force_linearizable,
    concurrent_history,
    kv_keys,
)

from trio_replica import StateMachine
from trio_replica.machines.counter import Counter
from trio_replica.machines.metadata import MetadataStateMachine
from trio_replica.testing import (
    MachineModel,
    Operation,
    Outcome,
    Verdict,
    check_linearizability,
)
from trio_replica.testing.linearizability import results_equal

LIN, NOT = Verdict.LINEARIZABLE, Verdict.NOT_LINEARIZABLE

# --- workloads: commands for each model -----------------------------------------


def register_commands(rng: random.Random, count: int) -> list[Any]:
    # Writes of unique values, so a read names the write it saw.
    return [{"write": k} if rng.random() < 0.5 else {"read": None} for k in range(count)]


def kv_commands(rng: random.Random, count: int) -> list[Any]:
    keys = ["a", "b", "c"]
    commands: list[Any] = []
    for k in range(count):
        roll = rng.random()
        key = rng.choice(keys)
        if roll < 0.35:
            commands.append({"put": key, "value": f"{k}."})
        elif roll < 0.75:
            commands.append({"get": key})
        elif roll < 0.95:
            commands.append({"append": key, "value": f"{k},"})
        else:
            commands.append({"swap": rng.sample(keys, 2)})
    return commands


def counter_commands(rng: random.Random, count: int) -> list[Any]:
    return [{"add": rng.randrange(0, 4)} for _ in range(count)]


def metadata_commands(rng: random.Random, count: int) -> list[Any]:
    streams, topics, users = ["s1", "s2"], ["t1", "t2"], ["ann", "bob"]
    makers: list[Callable[[], Any]] = [
        lambda: {"type": "create_stream", "name": rng.choice(streams)},
        lambda: {"type": "delete_stream", "stream": rng.choice(streams)},
        lambda: {
            "type": "create_topic",
            "stream": rng.choice(streams),
            "name": rng.choice(topics),
            "partitions": rng.randrange(1, 4),
        },
        lambda: {
            "type": "update_topic",
            "stream": rng.choice(streams),
            "topic": rng.choice(topics),
            "partitions": rng.randrange(1, 4),
        },
        lambda: {
            "type": "delete_topic",
            "stream": rng.choice(streams),
            "topic": rng.choice(topics),
        },
        lambda: {"type": "create_user", "username": rng.choice(users)},
        lambda: {
            "type": "update_user",
            "username": rng.choice(users),
            "status": rng.choice(["active", "inactive"]),
        },
        lambda: {"type": "delete_user", "username": rng.choice(users)},
    ]
    return [rng.choice(makers)() for _ in range(count)]


MODELS: dict[str, tuple[Callable[[], StateMachine], Callable[[random.Random, int], list[Any]]]] = {
    "register": (Register, register_commands),
    "kv": (KeyValue, kv_commands),
    "counter": (Counter, counter_commands),
    "metadata": (MetadataStateMachine, metadata_commands),
}

# Unpartitioned searches are exponential in the concurrency; these sizes keep
# each example well under a second.
SIZES = {"register": 40, "kv": 60, "counter": 30, "metadata": 30}


@st.composite
def scenarios(draw: st.DrawFn, models: tuple[str, ...] = tuple(MODELS)) -> tuple[Any, ...]:
    name = draw(st.sampled_from(models))
    seed = draw(st.integers(0, 2**32))
    count = draw(st.integers(1, SIZES[name]))
    clients = draw(st.integers(1, 6))
    unknown = draw(st.sampled_from([0.0, 0.05, 0.2]))
    failed = draw(st.sampled_from([0.0, 0.1]))
    factory, commands = MODELS[name]
    rng = random.Random(seed)
    ops = concurrent_history(
        rng, factory, commands(rng, count), clients=clients, unknown=unknown, failed=failed
    )
    return name, factory, ops


def partition_of(name: str) -> Any:
    return kv_keys if name == "kv" else None


def without_op(result: Any) -> Any:
    """A metadata result without ``created_op``: op numbers are the replica's
    (here: the generator's), which no checker can reproduce."""
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "created_op"}
    return result


def equal_of(name: str) -> Any:
    if name != "metadata":
        return results_equal
    return lambda model, seen: results_equal(without_op(model), without_op(seen))


def check(name: str, ops: Any, model: Any, **options: Any) -> Any:
    return check_linearizability(
        ops, model, partition=partition_of(name), equal=equal_of(name), **options
    )


def reads_of(name: str) -> Any:
    """The read-only commands of each model (the metadata machine has none)."""
    return {
        "register": lambda command: "read" in command,
        "kv": lambda command: "get" in command,
        "counter": lambda command: command["add"] == 0,
        "metadata": None,
    }[name]


@given(scenarios())
def test_histories_of_a_real_run_are_linearizable(scenario: tuple[Any, ...]) -> None:
    name, factory, ops = scenario
    result = check(name, ops, factory)
    assert result.verdict is LIN, result.describe()
    # The same with the reads named and transitions cached.
    named = check(name, ops, MachineModel(factory, uses_op=False), read_only=reads_of(name))
    assert named.verdict is LIN, named.describe()


@given(scenarios(("kv",)))
def test_partitioned_and_whole_checks_agree_on_real_runs(scenario: tuple[Any, ...]) -> None:
    _, factory, ops = scenario
    assert check_linearizability(ops, factory).verdict is LIN
    parted = check_linearizability(ops, factory, partition=kv_keys)
    assert parted.verdict is LIN
    keys = {kv_keys(o.command) for o in ops if o.outcome is not Outcome.FAILED}
    assert parted.partitions <= max(1, len(keys))


# --- corrupted results -----------------------------------------------------------


def impossible(name: str, operation: Operation, ops: list[Operation]) -> Any:
    """A result no order of ``ops`` can give ``operation``, or None if the
    model has none for it."""
    command, result = operation.command, operation.result
    if name == "register" and "read" in command:
        return "never written"
    if name == "kv":
        if "get" in command or "put" in command:
            return "never written"
        if "append" in command:
            return "never appended,"
    if name == "counter":
        # Adds are non-negative: no total exceeds the sum of all of them.
        return sum(o.command["add"] for o in ops) + 1
    if name == "metadata" and isinstance(result, dict):
        return {**result, "id": 10**6}  # ids count up from 1, one per create
    return None


@given(scenarios(), st.randoms(use_true_random=False))
def test_a_result_no_order_produces_is_detected(
    scenario: tuple[Any, ...], rng: random.Random
) -> None:
    name, factory, ops = scenario
    candidates = [
        (i, wrong)
        for i, o in enumerate(ops)
        if o.outcome is Outcome.OK and (wrong := impossible(name, o, ops)) is not None
    ]
    assume(candidates)
    index, wrong = rng.choice(candidates)
    ops[index] = attrs.evolve(ops[index], result=wrong)
    result = check(name, ops, factory)
    assert result.verdict is NOT, result.describe()
    named = check(name, ops, factory, read_only=reads_of(name))
    assert named.verdict is NOT, named.describe()
    for example in (result.counterexample, named.counterexample):
        assert example is not None and example.minimal
        # The narrowed prefix ends with the corrupted operation's completion
        # at the latest, the operation reported completes at its end, and
        # one completion earlier the history was still linearizable.
        end = example.operation.completed
        assert end is not None and end <= ops[index].completed  # type: ignore[operator]
        assert all(o.invoked <= end for o in example.operations)
        assert max(o.completed or 0 for o in example.operations) == end
        earlier = [o.completed for o in example.operations if o.completed and o.completed < end]
        if earlier:
            before = cut(example.operations, max(earlier))
            assert check(name, before, factory).verdict is LIN


@given(scenarios(("register",)), st.randoms(use_true_random=False))
def test_a_read_of_an_overwritten_value_is_detected(
    scenario: tuple[Any, ...], rng: random.Random
) -> None:
    _, factory, ops = scenario
    done = [o for o in ops if o.outcome is Outcome.OK]
    writes = [o for o in done if "write" in o.command]
    stale = []
    for i, read in enumerate(ops):
        if read.outcome is not Outcome.OK or "read" not in read.command:
            continue
        for old in writes:
            # `old` was overwritten by a write that completed after `old` did
            # and before the read began: its value can no longer be read.
            if any(
                old.completed < new.invoked and new.completed < read.invoked  # type: ignore[operator]
                for new in writes
            ):
                stale.append((i, old.command["write"]))
    assume(stale)
    index, value = rng.choice(stale)
    ops[index] = attrs.evolve(ops[index], result=value)
    result = check_linearizability(ops, factory)
    assert result.verdict is NOT, result.describe()


def cut(operations: Any, at: int) -> list[Operation]:
    """The history as it stood at time ``at`` (what the counterexample's
    narrowing promises about the prefix before the reported operation)."""
    kept = []
    for o in operations:
        if o.invoked > at:
            continue
        if o.completed is not None and o.completed > at:
            o = attrs.evolve(o, completed=None, outcome=Outcome.UNKNOWN, result=None)
        kept.append(o)
    return kept


# --- agreement with the definition on tiny histories -----------------------------


@st.composite
def tiny_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 6 operations on two keys with arbitrary intervals, outcomes and
    results (from a small domain, so both verdicts are common)."""
    count = draw(st.integers(1, 6))
    ops = []
    for _ in range(count):
        key = draw(st.sampled_from(["x", "y"]))
        command = draw(
            st.sampled_from([{"put": key, "value": 1}, {"put": key, "value": 2}, {"get": key}])
        )
        invoked = draw(st.integers(0, 10))
        outcome = draw(st.sampled_from([Outcome.OK, Outcome.OK, Outcome.OK, Outcome.UNKNOWN]))
        if outcome is Outcome.UNKNOWN:
            ops.append(Operation("c", command, invoked, None, outcome))
        else:
            completed = invoked + draw(st.integers(0, 6))
            result = draw(st.sampled_from([None, 1, 2]))
            ops.append(Operation("c", command, invoked, completed, outcome, result))
    return ops


@given(tiny_histories())
def test_agrees_with_enumeration_of_all_orders(ops: list[Operation]) -> None:
    expected = LIN if brute_force_linearizable(ops, KeyValue) else NOT
    assert check_linearizability(ops, KeyValue).verdict is expected
    assert check_linearizability(ops, KeyValue, partition=kv_keys).verdict is expected
    reads = reads_of("kv")
    assert check_linearizability(ops, KeyValue, read_only=reads).verdict is expected
    cached = MachineModel(KeyValue, uses_op=False)
    assert check_linearizability(ops, cached, read_only=reads).verdict is expected
