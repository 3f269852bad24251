"""Every metadata command, its result and its effect; every rejection reason,
each leaving the state exactly as it was."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from trio_replica.errors import InvalidCommand
from trio_replica.machines import MetadataStateMachine
from trio_replica.machines.metadata import COMMANDS, MAX_GROUP_MEMBERS, MAX_NAME_LENGTH


class Driver:
    """Applies commands with increasing op numbers, like the replica's applier."""

    def __init__(self) -> None:
        self.machine = MetadataStateMachine()
        self.op = 0

    def __call__(self, command: Any) -> Any:
        self.op += 1
        return self.machine.apply(self.op, command)


@pytest.fixture
def m() -> Driver:
    return Driver()


@pytest.fixture
def populated() -> Driver:
    """orders/payments (3 partitions) with group billing (member m1); empty stream; alice."""
    d = Driver()
    d({"type": "create_stream", "name": "orders"})
    d({"type": "create_stream", "name": "empty"})
    d({"type": "create_topic", "stream": "orders", "name": "payments", "partitions": 3})
    d({"type": "create_topic", "stream": "orders", "name": "refunds", "partitions": 1})
    d({"type": "create_consumer_group", "stream": "orders", "topic": "payments", "name": "billing"})
    d(
        {
            "type": "join_consumer_group",
            "stream": "orders",
            "topic": "payments",
            "group": "billing",
            "member": "m1",
        }
    )
    d({"type": "create_user", "username": "alice"})
    return d


# --- streams ---------------------------------------------------------------


def test_create_stream_returns_entity_with_deterministic_id(m: Driver) -> None:
    assert m({"type": "create_stream", "name": "orders"}) == {
        "id": 1,
        "name": "orders",
        "created_op": 1,
    }
    assert m({"type": "create_stream", "name": "Clicks-2.v_1"})["id"] == 2
    assert m.machine.describe()["streams"] == 2


def test_update_stream_renames_and_keeps_topics(populated: Driver) -> None:
    result = populated({"type": "update_stream", "stream": "orders", "name": "sales"})
    assert result == {"id": 1, "name": "sales", "created_op": 1}
    # Topics point at the stream id, so they follow the rename.
    topic = populated(
        {"type": "update_topic", "stream": "sales", "topic": "payments", "partitions": 3}
    )
    assert topic["stream_id"] == 1
    with pytest.raises(InvalidCommand, match="stream 'orders' does not exist"):
        populated({"type": "create_topic", "stream": "orders", "name": "x", "partitions": 1})
    # The old name is free again.
    assert populated({"type": "create_stream", "name": "orders"})["id"] == 3


def test_update_stream_to_its_own_name_is_accepted(populated: Driver) -> None:
    assert populated({"type": "update_stream", "stream": "empty", "name": "empty"})["id"] == 2


def test_delete_stream_returns_it_and_ids_are_not_reused(populated: Driver) -> None:
    assert populated({"type": "delete_stream", "stream": "empty"}) == {
        "id": 2,
        "name": "empty",
        "created_op": 2,
    }
    assert populated({"type": "create_stream", "name": "empty"})["id"] == 3


def test_stream_can_be_deleted_once_its_children_are(populated: Driver) -> None:
    d = populated
    d(
        {
            "type": "delete_consumer_group",
            "stream": "orders",
            "topic": "payments",
            "group": "billing",
        }
    )
    d({"type": "delete_topic", "stream": "orders", "topic": "payments"})
    d({"type": "delete_topic", "stream": "orders", "topic": "refunds"})
    assert d({"type": "delete_stream", "stream": "orders"})["id"] == 1
    assert d.machine.describe() == {
        "streams": 1,
        "topics": 0,
        "partitions": 0,
        "users": 1,
        "active_users": 1,
        "consumer_groups": 0,
        "group_members": 0,
    }


# --- topics ----------------------------------------------------------------


def test_create_topic(m: Driver) -> None:
    m({"type": "create_stream", "name": "orders"})
    assert m({"type": "create_topic", "stream": "orders", "name": "payments", "partitions": 3}) == {
        "id": 1,
        "stream_id": 1,
        "name": "payments",
        "partitions": 3,
        "retention_seconds": 0,
        "created_op": 2,
    }
    result = m(
        {
            "type": "create_topic",
            "stream": "orders",
            "name": "audit",
            "partitions": 10_000,
            "retention_seconds": 3600,
        }
    )
    assert (result["id"], result["partitions"], result["retention_seconds"]) == (2, 10_000, 3600)


def test_same_topic_name_in_two_streams(populated: Driver) -> None:
    result = populated(
        {"type": "create_topic", "stream": "empty", "name": "payments", "partitions": 1}
    )
    assert result["stream_id"] == 2


def test_update_topic_grows_partitions_and_sets_retention(populated: Driver) -> None:
    d = populated
    base = {"type": "update_topic", "stream": "orders", "topic": "payments"}
    assert d({**base, "partitions": 3})["partitions"] == 3  # unchanged is fine
    assert d({**base, "partitions": 7})["partitions"] == 7
    result = d({**base, "retention_seconds": 60})
    assert (result["partitions"], result["retention_seconds"]) == (7, 60)
    result = d({**base, "partitions": 8, "retention_seconds": 0})
    assert (result["partitions"], result["retention_seconds"]) == (8, 0)
    assert d.machine.describe()["partitions"] == 8 + 1


def test_delete_topic(populated: Driver) -> None:
    result = populated({"type": "delete_topic", "stream": "orders", "topic": "refunds"})
    assert result["name"] == "refunds"
    assert populated.machine.describe()["topics"] == 1


# --- users -----------------------------------------------------------------


def test_create_user_defaults_and_explicit_fields(m: Driver) -> None:
    assert m({"type": "create_user", "username": "alice"}) == {
        "id": 1,
        "username": "alice",
        "status": "active",
        "permissions": [],
        "created_op": 1,
    }
    result = m(
        {
            "type": "create_user",
            "username": "bob.the-admin_2",
            "status": "inactive",
            "permissions": ["send_messages", "read_topics"],
        }
    )
    # Permissions are kept in canonical (sorted) order.
    assert result["permissions"] == ["read_topics", "send_messages"]
    assert result["status"] == "inactive"
    assert m.machine.describe()["active_users"] == 1


def test_update_user(populated: Driver) -> None:
    d = populated
    assert d({"type": "update_user", "username": "alice", "status": "inactive"})["status"] == (
        "inactive"
    )
    result = d({"type": "update_user", "username": "alice", "permissions": ["manage_users"]})
    assert (result["status"], result["permissions"]) == ("inactive", ["manage_users"])
    result = d({"type": "update_user", "username": "alice", "permissions": []})
    assert result["permissions"] == []


def test_delete_user(populated: Driver) -> None:
    assert populated({"type": "delete_user", "username": "alice"})["username"] == "alice"
    assert populated({"type": "create_user", "username": "alice"})["id"] == 2


# --- consumer groups -----------------------------------------------------


GROUP = {"stream": "orders", "topic": "payments", "group": "billing"}


def test_create_consumer_group(populated: Driver) -> None:
    result = populated(
        {"type": "create_consumer_group", "stream": "orders", "topic": "payments", "name": "audit"}
    )
    assert result == {"id": 2, "topic_id": 1, "name": "audit", "members": [], "created_op": 8}
    # Same group name on another topic is a different group.
    other = populated(
        {"type": "create_consumer_group", "stream": "orders", "topic": "refunds", "name": "audit"}
    )
    assert other["topic_id"] == 2


def test_join_and_leave_consumer_group(populated: Driver) -> None:
    d = populated
    assert d({"type": "join_consumer_group", **GROUP, "member": "a0"})["members"] == ["a0", "m1"]
    assert d({"type": "leave_consumer_group", **GROUP, "member": "m1"})["members"] == ["a0"]
    assert d.machine.describe()["group_members"] == 1


def test_delete_consumer_group_removes_its_members(populated: Driver) -> None:
    result = populated({"type": "delete_consumer_group", **GROUP})
    assert result["members"] == ["m1"]
    assert populated.machine.describe()["group_members"] == 0


def test_group_is_full_at_the_limit(m: Driver) -> None:
    m({"type": "create_stream", "name": "s"})
    m({"type": "create_topic", "stream": "s", "name": "t", "partitions": 1})
    m({"type": "create_consumer_group", "stream": "s", "topic": "t", "name": "g"})
    where = {"stream": "s", "topic": "t", "group": "g"}
    for i in range(MAX_GROUP_MEMBERS):
        m({"type": "join_consumer_group", **where, "member": f"m{i}"})
    before = m.machine.snapshot()
    with pytest.raises(InvalidCommand, match="is full"):
        m({"type": "join_consumer_group", **where, "member": "one-more"})
    assert m.machine.snapshot() == before


# --- results are copies --------------------------------------------------


def test_results_do_not_alias_the_state(populated: Driver) -> None:
    result = populated({"type": "join_consumer_group", **GROUP, "member": "m2"})
    result["members"].append("intruder")
    result["name"] = "renamed"
    again = populated({"type": "join_consumer_group", **GROUP, "member": "m3"})
    assert again["members"] == ["m1", "m2", "m3"]
    assert again["name"] == "billing"


def test_every_result_is_plain_cbor(populated: Driver) -> None:
    result = populated({"type": "create_user", "username": "carol", "permissions": ["read_users"]})
    assert cbor2.loads(cbor2.dumps(result)) == result


# --- rejections ------------------------------------------------------------

T = {"stream": "orders", "topic": "payments"}
LONG = "x" * (MAX_NAME_LENGTH + 1)

REJECTIONS: list[tuple[str, Any, str]] = [
    # the mux
    ("not a map", ["create_stream"], "must be a map with a 'type' key, got list"),
    ("no type", {"name": "orders"}, "command has no 'type' key"),
    ("type not a string", {"type": 7}, "'type' must be a string, got int"),
    ("unknown type", {"type": "drop_table"}, "unknown command type 'drop_table'; known types"),
    # shape
    ("field name not a string", {"type": "create_stream", "name": "a", 1: 2}, "field names"),
    ("unknown field", {"type": "create_stream", "name": "a", "owner": "x"}, "unknown field(s)"),
    ("missing field", {"type": "create_topic", "stream": "orders", "name": "x"}, "'partitions'"),
    ("string field wrong type", {"type": "create_stream", "name": 5}, "must be a string, got int"),
    ("null field", {"type": "create_stream", "name": None}, "must be a string, got null"),
    # names
    ("empty name", {"type": "create_stream", "name": ""}, "stream name must not be empty"),
    ("long name", {"type": "create_stream", "name": LONG}, "65 characters long, the limit is 64"),
    ("bad character", {"type": "create_stream", "name": "my stream"}, "contains ' '"),
    ("non-ascii", {"type": "create_stream", "name": "zürich"}, "contains 'ü'"),
    ("bad start", {"type": "create_stream", "name": "-x"}, "must start with a letter or digit"),
    # streams
    ("duplicate stream", {"type": "create_stream", "name": "orders"}, "'orders' already exists"),
    (
        "rename to a taken name",
        {"type": "update_stream", "stream": "empty", "name": "orders"},
        "stream 'orders' already exists",
    ),
    (
        "rename missing stream",
        {"type": "update_stream", "stream": "nope", "name": "x"},
        "stream 'nope' does not exist",
    ),
    ("delete missing stream", {"type": "delete_stream", "stream": "nope"}, "does not exist"),
    (
        "delete stream with topics",
        {"type": "delete_stream", "stream": "orders"},
        "still has 2 topic(s); delete them first",
    ),
    # topics
    (
        "topic in missing stream",
        {"type": "create_topic", "stream": "nope", "name": "t", "partitions": 1},
        "stream 'nope' does not exist",
    ),
    (
        "duplicate topic",
        {"type": "create_topic", "stream": "orders", "name": "payments", "partitions": 1},
        "topic 'payments' already exists in stream 'orders'",
    ),
    (
        "zero partitions",
        {"type": "create_topic", "stream": "orders", "name": "t", "partitions": 0},
        "'partitions' must be between 1 and 10000, got 0",
    ),
    (
        "too many partitions",
        {"type": "create_topic", "stream": "orders", "name": "t", "partitions": 10_001},
        "between 1 and 10000, got 10001",
    ),
    (
        "partitions as string",
        {"type": "create_topic", "stream": "orders", "name": "t", "partitions": "3"},
        "'partitions' must be an integer, got str",
    ),
    (
        "partitions as bool",
        {"type": "create_topic", "stream": "orders", "name": "t", "partitions": True},
        "must be an integer, got bool",
    ),
    (
        "partitions as float",
        {"type": "create_topic", "stream": "orders", "name": "t", "partitions": 3.0},
        "must be an integer, got float",
    ),
    (
        "negative retention",
        {
            "type": "create_topic",
            "stream": "orders",
            "name": "t",
            "partitions": 1,
            "retention_seconds": -1,
        },
        "'retention_seconds' must be between 0 and",
    ),
    ("update nothing", {"type": "update_topic", **T}, "nothing to update"),
    (
        "update missing topic",
        {"type": "update_topic", "stream": "orders", "topic": "nope", "partitions": 4},
        "topic 'nope' does not exist in stream 'orders'",
    ),
    (
        "shrink partitions",
        {"type": "update_topic", **T, "partitions": 2},
        "partitions can only grow; topic 'payments' has 3, asked for 2",
    ),
    (
        "update retention too large",
        {"type": "update_topic", **T, "retention_seconds": 10**12},
        "'retention_seconds' must be between",
    ),
    (
        "delete missing topic",
        {"type": "delete_topic", "stream": "orders", "topic": "nope"},
        "does not exist",
    ),
    (
        "delete topic with groups",
        {"type": "delete_topic", **T},
        "still has 1 consumer group(s); delete them first",
    ),
    # users
    ("short username", {"type": "create_user", "username": "al"}, "3 to 32 characters long"),
    ("long username", {"type": "create_user", "username": "a" * 33}, "got 33"),
    ("uppercase username", {"type": "create_user", "username": "Alice"}, "contains 'A'"),
    ("username bad start", {"type": "create_user", "username": "1alice"}, "lowercase letter"),
    ("duplicate user", {"type": "create_user", "username": "alice"}, "'alice' already exists"),
    (
        "bad status",
        {"type": "create_user", "username": "bob", "status": "banned"},
        "status must be one of active, inactive, got 'banned'",
    ),
    (
        "permissions not a list",
        {"type": "create_user", "username": "bob", "permissions": "read_users"},
        "must be a list of strings, got str",
    ),
    (
        "permission not a string",
        {"type": "create_user", "username": "bob", "permissions": [1]},
        "every permission must be a string, got int",
    ),
    (
        "unknown permission",
        {"type": "create_user", "username": "bob", "permissions": ["root"]},
        "unknown permission(s) 'root'",
    ),
    (
        "repeated permission",
        {"type": "create_user", "username": "bob", "permissions": ["read_users", "read_users"]},
        "permissions must not repeat",
    ),
    (
        "update missing user",
        {"type": "update_user", "username": "bob", "status": "active"},
        "user 'bob' does not exist",
    ),
    ("update user nothing", {"type": "update_user", "username": "alice"}, "nothing to update"),
    ("delete missing user", {"type": "delete_user", "username": "bob"}, "does not exist"),
    (
        "delete user extra field",
        {"type": "delete_user", "username": "alice", "status": "active"},
        "unknown field(s) 'status'",
    ),
    # consumer groups
    (
        "group on missing topic",
        {"type": "create_consumer_group", "stream": "orders", "topic": "nope", "name": "g"},
        "topic 'nope' does not exist",
    ),
    (
        "group on missing stream",
        {"type": "create_consumer_group", "stream": "nope", "topic": "payments", "name": "g"},
        "stream 'nope' does not exist",
    ),
    (
        "duplicate group",
        {"type": "create_consumer_group", **T, "name": "billing"},
        "consumer group 'billing' already exists on topic 'payments'",
    ),
    (
        "delete missing group",
        {"type": "delete_consumer_group", **T, "group": "nope"},
        "consumer group 'nope' does not exist",
    ),
    (
        "join missing group",
        {"type": "join_consumer_group", **T, "group": "nope", "member": "m2"},
        "consumer group 'nope' does not exist",
    ),
    (
        "join twice",
        {"type": "join_consumer_group", **GROUP, "member": "m1"},
        "'m1' is already a member of 'billing'",
    ),
    (
        "leave non-member",
        {"type": "leave_consumer_group", **GROUP, "member": "m9"},
        "'m9' is not a member of 'billing'",
    ),
    (
        "bad member name",
        {"type": "join_consumer_group", **GROUP, "member": ""},
        "member name must not be empty",
    ),
]


@pytest.mark.parametrize(
    ("command", "reason"),
    [pytest.param(c, r, id=name) for name, c, r in REJECTIONS],
)
def test_rejection_has_reason_and_changes_nothing(
    populated: Driver, command: Any, reason: str
) -> None:
    before = populated.machine.snapshot()
    digest = populated.machine.state_digest()
    with pytest.raises(InvalidCommand) as info:
        populated(command)
    assert reason in info.value.reason
    assert populated.machine.snapshot() == before
    assert populated.machine.state_digest() == digest


def test_every_command_type_is_exercised_by_the_rejection_table() -> None:
    rejected_types = {c.get("type") for _, c, _ in REJECTIONS if isinstance(c, dict)}
    assert set(COMMANDS) <= rejected_types


def test_every_command_type_is_routed(m: Driver) -> None:
    assert m.machine.command_types == sorted(COMMANDS)
