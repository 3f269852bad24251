"""The metadata workload generator: labels that hold under any interleaving of clients."""

from __future__ import annotations

import itertools
import random

import cbor2
import pytest

from trio_replica.errors import InvalidCommand
from trio_replica.machines import MetadataStateMachine
from trio_replica.machines.workload import metadata_steps, metadata_workload


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interleaved_clients_get_exactly_the_expected_outcomes(seed: int) -> None:
    clients = 16
    steps = [metadata_steps(random.Random(seed * 1000 + c), c) for c in range(clients)]
    schedule = random.Random(seed)
    machine = MetadataStateMachine()
    seen_types: set[str] = set()
    outcomes = {True: 0, False: 0}
    for op in range(1, 8001):
        step = next(steps[schedule.randrange(clients)])
        seen_types.add(step.command["type"])
        try:
            machine.apply(op, step.command)
        except InvalidCommand as exc:
            assert not step.valid, f"op {op}: {step.command} rejected: {exc.reason}"
        else:
            assert step.valid, f"op {op}: {step.command} was meant to be rejected"
        outcomes[step.valid] += 1
    # Realistic mix: mostly valid, some invalid, every command type used.
    assert 0.02 < outcomes[False] / 8000 < 0.10
    assert seen_types >= {
        "create_stream",
        "update_stream",
        "delete_stream",
        "create_topic",
        "update_topic",
        "delete_topic",
        "create_user",
        "update_user",
        "delete_user",
        "create_consumer_group",
        "delete_consumer_group",
        "join_consumer_group",
        "leave_consumer_group",
    }
    # Caps keep the state bounded per client.
    counts = machine.describe()
    assert counts["streams"] <= 8 * clients
    assert counts["users"] <= 6 * clients


def test_same_seed_same_commands_and_cbor_encodable() -> None:
    a = list(itertools.islice(metadata_workload(random.Random(5), 3), 500))
    b = list(itertools.islice(metadata_workload(random.Random(5), 3), 500))
    assert a == b
    assert cbor2.loads(cbor2.dumps(a)) == a
    c = list(itertools.islice(metadata_workload(random.Random(6), 3), 500))
    assert a != c


def test_clients_use_disjoint_namespaces() -> None:
    def created_names(client: int) -> set[str]:
        names = set()
        for step in itertools.islice(metadata_steps(random.Random(1), client), 2000):
            command = step.command
            if step.valid and command["type"] in {"create_stream", "update_stream"}:
                assert command["name"].startswith(f"c{client}-s")
                names.add(command["name"])
            if step.valid and command["type"] == "create_user":
                assert command["username"].startswith(f"c{client}.u")
                names.add(command["username"])
        return names

    # Client 1's prefix is a string prefix of client 10's: the separator keeps them apart.
    one, ten = created_names(1), created_names(10)
    assert one and ten
    assert not one & ten


def test_negative_client_id_is_refused() -> None:
    with pytest.raises(ValueError, match="client_id"):
        next(metadata_steps(random.Random(0), -1))
