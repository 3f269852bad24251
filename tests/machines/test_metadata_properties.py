"""Properties of the metadata machine over random command sequences.

1. A rejected command leaves the snapshot unchanged (and only
   InvalidCommand is ever raised).
2. Determinism: two fresh machines fed the same sequence give the same
   results and digests, also across processes with different hash seeds.
3. Snapshot, CBOR round trip and restore at any point, then continuing,
   ends in the same state with the same results as never snapshotting.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from trio_replica.errors import InvalidCommand
from trio_replica.machines import MetadataStateMachine
from trio_replica.machines.metadata import COMMANDS
from trio_replica.machines.workload import metadata_steps

# Small pools so that commands collide: duplicates, missing parents, joins
# of existing groups. A few bad values of every kind are mixed in.
NAMES = st.sampled_from(["a", "b", "c", "a", "b", "a", "", "bad name", "x" * 65, "-x"])
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": NAMES,
    "stream": NAMES,
    "topic": NAMES,
    "group": NAMES,
    "member": NAMES,
    "partitions": st.integers(-1, 12) | st.sampled_from([10_000, 10_001, True, "3", None]),
    "retention_seconds": st.integers(-1, 100) | st.sampled_from([10**12, 1.5]),
    "username": st.sampled_from(["alice", "bob", "alice", "al", "Alice", "bob.2", 7]),
    "status": st.sampled_from(["active", "inactive", "inactive", "gone", 1]),
    "permissions": st.lists(
        st.sampled_from(["read_users", "send_messages", "manage_topics", "fly", 3]), max_size=3
    )
    | st.just("read_users"),
}

# A prefix that builds a small world, so that deep commands (joins, updates,
# refused deletes) are reached often, not only after lucky creates.
SETUP: list[dict[str, Any]] = [
    {"type": "create_stream", "name": "a"},
    {"type": "create_topic", "stream": "a", "name": "a", "partitions": 2},
    {"type": "create_topic", "stream": "a", "name": "b", "partitions": 1},
    {"type": "create_consumer_group", "stream": "a", "topic": "a", "name": "a"},
    {"type": "join_consumer_group", "stream": "a", "topic": "a", "group": "a", "member": "b"},
    {"type": "create_user", "username": "alice"},
]


@st.composite
def commands(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 40)) == 0:
        return draw(st.sampled_from([[], "create_stream", {"name": "a"}, {"type": 3}]))
    ctype = draw(st.sampled_from([*sorted(COMMANDS), "drop_everything"]))
    required, optional = COMMANDS.get(ctype, (("name",), ()))
    command: dict[Any, Any] = {"type": ctype}
    for field in required:
        if draw(st.integers(0, 25)) > 0:
            command[field] = draw(FIELDS[field])
    for field in optional:
        if draw(st.booleans()):
            command[field] = draw(FIELDS[field])
    if draw(st.integers(0, 25)) == 0:
        command[draw(st.sampled_from(["owner", "id", 1]))] = "x"
    return command


@st.composite
def sequences(draw: st.DrawFn) -> list[Any]:
    """Either drawn commands (optionally after SETUP), or a generated workload of a
    few clients with drawn commands spliced in: the first probes every rejection
    path, the second reaches deep valid states (renames, refused deletes, leaves)."""
    if draw(st.booleans()):
        body = draw(st.lists(commands(), min_size=5, max_size=60))
        return [*SETUP, *body] if draw(st.booleans()) else body
    seed = draw(st.integers(0, 2**32 - 1), label="workload seed")
    rng = random.Random(seed)
    clients = [metadata_steps(random.Random(seed + c), c, invalid_ratio=0.1) for c in range(3)]
    sequence: list[Any] = [
        next(clients[rng.randrange(3)]).command for _ in range(draw(st.integers(20, 150)))
    ]
    for extra in draw(st.lists(commands(), max_size=10)):
        sequence.insert(draw(st.integers(0, len(sequence))), extra)
    return sequence


def run(machine: MetadataStateMachine, sequence: list[Any], first_op: int = 1) -> list[Any]:
    """Apply a sequence; return each result, or ("rejected", reason)."""
    outcomes: list[Any] = []
    for op, command in enumerate(sequence, start=first_op):
        try:
            outcomes.append(machine.apply(op, command))
        except InvalidCommand as exc:
            outcomes.append(("rejected", exc.reason))
    return outcomes


@given(sequences())
def test_rejection_leaves_state_unchanged(sequence: list[Any]) -> None:
    machine = MetadataStateMachine()
    for op, command in enumerate(sequence, start=1):
        before = machine.snapshot()
        digest = machine.state_digest()
        try:
            result = machine.apply(op, command)
        except InvalidCommand:
            assert machine.snapshot() == before
            assert machine.state_digest() == digest
        else:
            assert cbor2.loads(cbor2.dumps(result)) == result


@given(sequences())
def test_same_sequence_same_results_and_digest(sequence: list[Any]) -> None:
    one, two = MetadataStateMachine(), MetadataStateMachine()
    assert run(one, sequence) == run(two, sequence)
    assert one.snapshot() == two.snapshot()
    assert one.state_digest() == two.state_digest()


@given(sequences(), st.data())
def test_snapshot_restore_anywhere_then_continue(sequence: list[Any], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(sequence)), label="cut")
    straight = MetadataStateMachine()
    expected = run(straight, sequence)

    first = MetadataStateMachine()
    outcomes = run(first, sequence[:cut])
    snap = first.snapshot()
    encoded = cbor2.dumps(snap)
    restored = MetadataStateMachine()
    restored.restore(cbor2.loads(encoded))
    assert restored.snapshot() == snap
    outcomes += run(restored, sequence[cut:], first_op=cut + 1)

    assert outcomes == expected
    assert restored.snapshot() == straight.snapshot()
    assert restored.state_digest() == straight.state_digest()
    # Continuing on the source machine must not have changed the snapshot
    # taken earlier (it shares nothing with the live state).
    run(first, sequence[cut:], first_op=cut + 1)
    assert cbor2.dumps(snap) == encoded


DIGEST_FUNCTION = """
import random
from trio_replica.errors import InvalidCommand
from trio_replica.machines import MetadataStateMachine
from trio_replica.machines.workload import metadata_steps

def workload_digest():
    machine = MetadataStateMachine()
    clients = [metadata_steps(random.Random(c), c, invalid_ratio=0.2) for c in range(6)]
    order = random.Random(99)
    for op in range(1, 3001):
        try:
            machine.apply(op, next(clients[order.randrange(6)]).command)
        except InvalidCommand:
            pass
    return machine.state_digest()
"""


def local_digest() -> str:
    namespace: dict[str, Any] = {}
    exec(DIGEST_FUNCTION, namespace)
    digest: str = namespace["workload_digest"]()
    return digest


def test_digest_is_the_same_across_processes_and_hash_seeds() -> None:
    # Replay after a restart happens in a new process with a different string
    # hash seed: nothing may depend on set or hash order.
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", DIGEST_FUNCTION + "print(workload_digest())"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(out.stdout.strip())
    assert digests == {local_digest()}
