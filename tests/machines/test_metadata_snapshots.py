"""Metadata snapshots: plain CBOR data, deep copies, and restore that checks its input."""

from __future__ import annotations

import copy
from typing import Any

import cbor2
import pytest

from trio_replica.machines import MetadataStateMachine
from trio_replica.stm.mux import StateRestoreError


def populated() -> MetadataStateMachine:
    m = MetadataStateMachine()
    commands: list[dict[str, Any]] = [
        {"type": "create_stream", "name": "orders"},
        {"type": "create_topic", "stream": "orders", "name": "payments", "partitions": 3},
        {"type": "create_consumer_group", "stream": "orders", "topic": "payments", "name": "g"},
        {
            "type": "join_consumer_group",
            "stream": "orders",
            "topic": "payments",
            "group": "g",
            "member": "m1",
        },
        {"type": "create_user", "username": "alice", "permissions": ["read_users"]},
        {"type": "create_stream", "name": "gone"},
        {"type": "delete_stream", "stream": "gone"},
    ]
    for op, command in enumerate(commands, start=1):
        m.apply(op, command)
    return m


def only_plain(value: Any) -> bool:
    """True when value is built from dict (str keys), list, str and int only."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and only_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(only_plain(v) for v in value)
    return isinstance(value, str | int) and not isinstance(value, bool)


def test_snapshot_layout_and_plain_types() -> None:
    snap = populated().snapshot()
    assert only_plain(snap)
    assert snap["streams"] == {
        "next_id": 3,
        "items": [{"id": 1, "name": "orders", "created_op": 1}],
    }
    assert snap["users"]["items"][0]["permissions"] == ["read_users"]
    assert snap["consumer_groups"]["items"][0]["members"] == ["m1"]


def test_cbor_round_trip_is_exact() -> None:
    m = populated()
    snap = m.snapshot()
    other = MetadataStateMachine()
    other.restore(cbor2.loads(cbor2.dumps(snap)))
    assert other.snapshot() == snap
    assert other.state_digest() == m.state_digest()
    assert other.describe() == m.describe()
    # Ids continue from the restored counters, not from 1.
    assert other.apply(8, {"type": "create_stream", "name": "new"})["id"] == 3


def test_snapshot_shares_nothing_with_the_live_state() -> None:
    m = populated()
    snap = m.snapshot()
    kept = copy.deepcopy(snap)
    m.apply(
        8,
        {
            "type": "join_consumer_group",
            "stream": "orders",
            "topic": "payments",
            "group": "g",
            "member": "m2",
        },
    )
    m.apply(9, {"type": "update_user", "username": "alice", "permissions": []})
    assert snap == kept
    snap["consumer_groups"]["items"][0]["members"].append("x")
    snap["streams"]["items"].clear()
    assert m.snapshot()["consumer_groups"]["items"][0]["members"] == ["m1", "m2"]
    assert m.describe()["streams"] == 1


def test_restore_does_not_alias_its_input() -> None:
    state = populated().snapshot()
    m = MetadataStateMachine()
    m.restore(state)
    state["consumer_groups"]["items"][0]["members"].append("intruder")
    assert m.snapshot()["consumer_groups"]["items"][0]["members"] == ["m1"]


def corrupt(path: str, value: Any) -> dict[str, Any]:
    state = populated().snapshot()
    *parents, last = path.split("/")
    node: Any = state
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ...:
        del node[last]
    else:
        node[last] = value
    return state


@pytest.mark.parametrize(
    ("state", "part", "message"),
    [
        (corrupt("streams", []), "streams", "must be a map with 'next_id' and 'items'"),
        (corrupt("streams/next_id", "3"), "streams", "'next_id' must be an int"),
        (corrupt("topics/items/0/partitions", ...), "topics", "exactly the fields"),
        (corrupt("topics/items/0/partitions", "3"), "topics", "'partitions'"),
        (corrupt("streams/items/0/id", 3), "streams", "is not below next_id 3"),
        (corrupt("users/items/0/permissions", "read_users"), "users", "list of strings"),
        (corrupt("consumer_groups/items/0/members", [1]), "consumer_groups", "list of strings"),
        (corrupt("users/items/0/username", 7), "users", "'username'"),
    ],
)
def test_restore_refuses_malformed_parts(state: Any, part: str, message: str) -> None:
    m = MetadataStateMachine()
    with pytest.raises(StateRestoreError) as info:
        m.restore(state)
    assert info.value.part == part
    assert message in str(info.value)


def test_restore_refuses_duplicates_and_keeps_the_part_unchanged() -> None:
    m = populated()
    before = m.snapshot()
    state = m.snapshot()
    twin = dict(state["streams"]["items"][0], id=2)
    state["streams"]["items"].append(twin)
    with pytest.raises(StateRestoreError, match="duplicate stream"):
        m.restore(state)
    # The streams part is checked as a whole before it is swapped in.
    assert m.snapshot()["streams"] == before["streams"]
