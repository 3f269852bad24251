"""The metadata state machine of a message streaming server, built on the mux.

It keeps streams, topics within streams (with partition counts), users and
consumer groups on topics (with members), as four sub-machines of a
:class:`~trio_replica.stm.mux.MuxStateMachine`: ``streams``, ``topics``,
``users`` and ``consumer_groups``. Each owns its own table and is the only
object that mutates it; they look at each other only through read-only
readers (see :class:`~trio_replica.stm.mux.Siblings`).

Deleting a parent that still has children is **refused**, not cascaded: a
stream with topics, or a topic with consumer groups, cannot be deleted until
its children are. Cascading would mean one sub-machine changing another's
table; refusing keeps one owner per table and makes every delete an explicit,
replayed command.

Every command is a map with a ``"type"`` key; the full list of commands and
their fields is in :data:`COMMANDS`. Entities get ids from a per-kind counter
kept in the state (never random or time based), so replay is deterministic.
Every command is validated fully before anything changes, so a rejected
command (:class:`~trio_replica.errors.InvalidCommand`) leaves the state as it
was. Results and snapshots are plain dicts, lists, strings and ints.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from ..errors import InvalidCommand
from ..stm.mux import MuxStateMachine, Siblings, StateRestoreError, SubMachine

__all__ = [
    "COMMANDS",
    "MAX_GROUP_MEMBERS",
    "MAX_NAME_LENGTH",
    "MAX_PARTITIONS",
    "MAX_RETENTION_SECONDS",
    "PERMISSIONS",
    "USER_STATUSES",
    "ConsumerGroupsMachine",
    "ConsumerGroupsReader",
    "MetadataStateMachine",
    "StreamsMachine",
    "StreamsReader",
    "TopicsMachine",
    "TopicsReader",
    "UsersMachine",
]

MAX_NAME_LENGTH = 64
"""Longest stream, topic, consumer group or member name."""

MIN_USERNAME_LENGTH = 3
MAX_USERNAME_LENGTH = 32

MAX_PARTITIONS = 10_000
"""Most partitions a topic may have."""

MAX_RETENTION_SECONDS = 100 * 365 * 24 * 3600
"""Longest message retention of a topic; 0 means "keep forever"."""

MAX_GROUP_MEMBERS = 1_000
"""Most members a consumer group may have."""

USER_STATUSES = ("active", "inactive")

PERMISSIONS = frozenset(
    {
        "manage_servers",
        "read_servers",
        "manage_users",
        "read_users",
        "manage_streams",
        "read_streams",
        "manage_topics",
        "read_topics",
        "poll_messages",
        "send_messages",
    }
)
"""The permission strings a user may hold."""

# Command type -> (required fields, optional fields), "type" excluded. This
# table is the single source of truth for which fields a command accepts.
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "create_stream": (("name",), ()),
    "update_stream": (("stream", "name"), ()),
    "delete_stream": (("stream",), ()),
    "create_topic": (("stream", "name", "partitions"), ("retention_seconds",)),
    "update_topic": (("stream", "topic"), ("partitions", "retention_seconds")),
    "delete_topic": (("stream", "topic"), ()),
    "create_user": (("username",), ("status", "permissions")),
    "update_user": (("username",), ("status", "permissions")),
    "delete_user": (("username",), ()),
    "create_consumer_group": (("stream", "topic", "name"), ()),
    "delete_consumer_group": (("stream", "topic", "group"), ()),
    "join_consumer_group": (("stream", "topic", "group", "member"), ()),
    "leave_consumer_group": (("stream", "topic", "group", "member"), ()),
}

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


# --- command field validation ---------------------------------------------


def _check_shape(command: Mapping[str, Any]) -> str:
    """Check that ``command`` has exactly the fields its type allows; return the type."""
    ctype: str = command["type"]
    required, optional = COMMANDS[ctype]
    for key in command:
        if not isinstance(key, str):
            raise InvalidCommand(f"{ctype}: field names must be strings, got {key!r}")
    unknown = sorted(set(command) - {"type", *required, *optional})
    if unknown:
        allowed = ", ".join([*required, *optional])
        raise InvalidCommand(
            f"{ctype}: unknown field(s) {', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    missing = [field for field in required if field not in command]
    if missing:
        raise InvalidCommand(f"{ctype}: missing required field(s) {', '.join(map(repr, missing))}")
    return ctype


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _get_str(command: Mapping[str, Any], field: str) -> str:
    value = command[field]
    if not isinstance(value, str):
        raise InvalidCommand(
            f"{command['type']}: field {field!r} must be a string, got {_type_name(value)}"
        )
    return value


def _get_int(command: Mapping[str, Any], field: str, low: int, high: int) -> int:
    value = command[field]
    # bool is an int subclass in Python but never a sensible count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCommand(
            f"{command['type']}: field {field!r} must be an integer, got {_type_name(value)}"
        )
    if not low <= value <= high:
        raise InvalidCommand(
            f"{command['type']}: field {field!r} must be between {low} and {high}, got {value}"
        )
    return value


def _get_name(command: Mapping[str, Any], field: str, what: str) -> str:
    """A stream/topic/group/member name: 1..64 chars of ``A-Za-z0-9._-``, starting alphanumeric."""
    name = _get_str(command, field)
    ctype = command["type"]
    if not name:
        raise InvalidCommand(f"{ctype}: {what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidCommand(
            f"{ctype}: {what} is {len(name)} characters long, the limit is {MAX_NAME_LENGTH}"
        )
    bad = sorted(set(name) - _NAME_CHARS)
    if bad:
        raise InvalidCommand(
            f"{ctype}: {what} {name!r} contains {', '.join(map(repr, bad))}; "
            "allowed are letters, digits, '.', '_' and '-'"
        )
    if not name[0].isalnum():
        raise InvalidCommand(f"{ctype}: {what} {name!r} must start with a letter or digit")
    return name


def _get_username(command: Mapping[str, Any]) -> str:
    """A username: 3..32 chars of ``a-z0-9._-``, starting with a lowercase letter."""
    name = _get_str(command, "username")
    ctype = command["type"]
    if not MIN_USERNAME_LENGTH <= len(name) <= MAX_USERNAME_LENGTH:
        raise InvalidCommand(
            f"{ctype}: username must be {MIN_USERNAME_LENGTH} to {MAX_USERNAME_LENGTH} "
            f"characters long, got {len(name)}"
        )
    bad = sorted(set(name) - _USERNAME_CHARS)
    if bad:
        raise InvalidCommand(
            f"{ctype}: username {name!r} contains {', '.join(map(repr, bad))}; "
            "allowed are lowercase letters, digits, '.', '_' and '-'"
        )
    if not ("a" <= name[0] <= "z"):
        raise InvalidCommand(f"{ctype}: username {name!r} must start with a lowercase letter")
    return name


def _get_status(command: Mapping[str, Any]) -> str:
    status = _get_str(command, "status")
    if status not in USER_STATUSES:
        raise InvalidCommand(
            f"{command['type']}: status must be one of {', '.join(USER_STATUSES)}, got {status!r}"
        )
    return status


def _get_permissions(command: Mapping[str, Any]) -> list[str]:
    """A list of distinct known permission strings, returned sorted (the canonical form)."""
    value = command["permissions"]
    ctype = command["type"]
    if not isinstance(value, list | tuple):
        raise InvalidCommand(
            f"{ctype}: field 'permissions' must be a list of strings, got {_type_name(value)}"
        )
    for item in value:
        if not isinstance(item, str):
            raise InvalidCommand(
                f"{ctype}: every permission must be a string, got {_type_name(item)}"
            )
    unknown = sorted(set(value) - PERMISSIONS)
    if unknown:
        raise InvalidCommand(
            f"{ctype}: unknown permission(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(PERMISSIONS))}"
        )
    if len(set(value)) != len(value):
        raise InvalidCommand(f"{ctype}: permissions must not repeat")
    return sorted(value)


def _copy_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """Copy one entity, including its list fields, so nothing is shared with the live state."""
    return {key: list(value) if isinstance(value, list) else value for key, value in entity.items()}


# --- a table of entities (shared by the four parts) -----------------------


class _Table(SubMachine):
    """A sub-machine holding one kind of entity: dicts with an ``"id"``.

    Keeps the entities by id, an index by natural key (name, or parent id
    and name), and a count of children per parent id for siblings that must
    refuse deleting a parent with children. Its snapshot is
    ``{"next_id": int, "items": [entity, ...]}`` with items sorted by id.
    """

    kind: ClassVar[str]
    entity_fields: ClassVar[frozenset[str]]

    def __init__(self) -> None:
        self._next_id = 1
        self._items: dict[int, dict[str, Any]] = {}
        self._index: dict[Hashable, int] = {}
        self._per_parent: dict[int, int] = {}

    @abstractmethod
    def _key(self, entity: Mapping[str, Any]) -> Hashable:
        """The natural key of ``entity``, unique within this table."""

    def _parent(self, entity: Mapping[str, Any]) -> int | None:
        """The id of the entity's parent in another table, if it has one."""
        return None

    def _check_entity(self, entity: Mapping[str, Any]) -> None:
        """Raise :class:`StateRestoreError` if a restored entity is malformed."""

    def __len__(self) -> int:
        return len(self._items)

    def _insert(self, op: int, fields: dict[str, Any]) -> dict[str, Any]:
        entity = {"id": self._next_id, **fields, "created_op": op}
        self._next_id += 1
        self._add(entity)
        return _copy_entity(entity)

    def _add(self, entity: dict[str, Any]) -> None:
        self._items[entity["id"]] = entity
        self._index[self._key(entity)] = entity["id"]
        parent = self._parent(entity)
        if parent is not None:
            self._per_parent[parent] = self._per_parent.get(parent, 0) + 1

    def _remove(self, entity_id: int) -> dict[str, Any]:
        entity = self._items.pop(entity_id)
        del self._index[self._key(entity)]
        parent = self._parent(entity)
        if parent is not None:
            left = self._per_parent[parent] - 1
            if left:
                self._per_parent[parent] = left
            else:
                del self._per_parent[parent]
        return entity

    def _rekey(self, entity_id: int, **changes: Any) -> None:
        """Change fields that are part of the natural key, keeping the index right."""
        entity = self._items[entity_id]
        del self._index[self._key(entity)]
        entity.update(changes)
        self._index[self._key(entity)] = entity_id

    def snapshot(self) -> dict[str, Any]:
        return {
            "next_id": self._next_id,
            "items": [_copy_entity(self._items[i]) for i in sorted(self._items)],
        }

    def restore(self, state: Any) -> None:
        # Build the new table aside and swap it in only when all of it is
        # valid, so a bad snapshot leaves this part unchanged.
        fresh = type(self)()
        if not isinstance(state, Mapping) or set(state) != {"next_id", "items"}:
            raise StateRestoreError(
                f"{self.name} state must be a map with 'next_id' and 'items'", part=self.name
            )
        next_id, items = state["next_id"], state["items"]
        if not isinstance(next_id, int) or not isinstance(items, list):
            raise StateRestoreError(
                f"{self.name} state: 'next_id' must be an int and 'items' a list", part=self.name
            )
        for item in items:
            if not isinstance(item, Mapping) or set(item) != self.entity_fields:
                raise StateRestoreError(
                    f"{self.name} state: every item must have exactly the fields "
                    f"{sorted(self.entity_fields)}, got {item!r}",
                    part=self.name,
                )
            entity = _copy_entity(item)
            entity_id = entity["id"]
            if not isinstance(entity_id, int) or not 0 < entity_id < next_id:
                raise StateRestoreError(
                    f"{self.name} state: id {entity_id!r} is not below next_id {next_id}",
                    part=self.name,
                )
            self._check_entity(entity)
            if entity_id in fresh._items or fresh._key(entity) in fresh._index:
                raise StateRestoreError(
                    f"{self.name} state: duplicate {self.kind} {entity!r}", part=self.name
                )
            fresh._add(entity)
        fresh._next_id = next_id
        self._next_id = fresh._next_id
        self._items = fresh._items
        self._index = fresh._index
        self._per_parent = fresh._per_parent


def _require_str_fields(table: _Table, entity: Mapping[str, Any], *fields: str) -> None:
    for field in fields:
        if not isinstance(entity[field], str):
            raise StateRestoreError(
                f"{table.name} state: field {field!r} of {entity!r} must be a string",
                part=table.name,
            )


def _require_int_fields(table: _Table, entity: Mapping[str, Any], *fields: str) -> None:
    for field in fields:
        if not isinstance(entity[field], int):
            raise StateRestoreError(
                f"{table.name} state: field {field!r} of {entity!r} must be an integer",
                part=table.name,
            )


# --- streams ---------------------------------------------------------------


class StreamsReader:
    """Read-only queries on the streams table, for sibling sub-machines."""

    __slots__ = ("_table",)

    def __init__(self, table: StreamsMachine):
        self._table = table

    def id_of(self, name: str) -> int | None:
        """The id of the stream called ``name``, or ``None``."""
        return self._table._index.get(name)

    def require(self, ctype: str, name: str) -> int:
        """The id of stream ``name``; :class:`InvalidCommand` if there is none."""
        stream_id = self.id_of(name)
        if stream_id is None:
            raise InvalidCommand(f"{ctype}: stream {name!r} does not exist")
        return stream_id


class StreamsMachine(_Table):
    """Streams: ``{"id", "name", "created_op"}``, names unique.

    A stream with topics cannot be deleted (see the module docstring).
    """

    name = "streams"
    kind = "stream"
    command_types = frozenset({"create_stream", "update_stream", "delete_stream"})
    entity_fields = frozenset({"id", "name", "created_op"})

    def _key(self, entity: Mapping[str, Any]) -> Hashable:
        name: str = entity["name"]
        return name

    def _check_entity(self, entity: Mapping[str, Any]) -> None:
        _require_str_fields(self, entity, "name")
        _require_int_fields(self, entity, "created_op")

    def reader(self) -> StreamsReader:
        return StreamsReader(self)

    def apply(self, op: int, command: Mapping[str, Any], siblings: Siblings) -> Any:
        ctype = _check_shape(command)
        if ctype == "create_stream":
            name = _get_name(command, "name", "stream name")
            if name in self._index:
                raise InvalidCommand(f"{ctype}: stream {name!r} already exists")
            return self._insert(op, {"name": name})
        streams = StreamsReader(self)
        stream_id = streams.require(ctype, _get_name(command, "stream", "stream name"))
        if ctype == "update_stream":
            new_name = _get_name(command, "name", "new stream name")
            if new_name != self._items[stream_id]["name"] and new_name in self._index:
                raise InvalidCommand(f"{ctype}: stream {new_name!r} already exists")
            self._rekey(stream_id, name=new_name)
            return _copy_entity(self._items[stream_id])
        # delete_stream
        topics = siblings.get("topics", TopicsReader).count_in_stream(stream_id)
        if topics:
            raise InvalidCommand(
                f"{ctype}: stream {command['stream']!r} still has {topics} topic(s); "
                "delete them first"
            )
        return self._remove(stream_id)


# --- topics ----------------------------------------------------------------


class TopicsReader:
    """Read-only queries on the topics table, for sibling sub-machines."""

    __slots__ = ("_table",)

    def __init__(self, table: TopicsMachine):
        self._table = table

    def id_of(self, stream_id: int, name: str) -> int | None:
        """The id of topic ``name`` in stream ``stream_id``, or ``None``."""
        return self._table._index.get((stream_id, name))

    def count_in_stream(self, stream_id: int) -> int:
        """How many topics stream ``stream_id`` has."""
        return self._table._per_parent.get(stream_id, 0)

    def require(self, ctype: str, siblings: Siblings, stream: str, topic: str) -> int:
        """The id of ``topic`` in ``stream``; :class:`InvalidCommand` if either is missing."""
        stream_id = siblings.get("streams", StreamsReader).require(ctype, stream)
        topic_id = self.id_of(stream_id, topic)
        if topic_id is None:
            raise InvalidCommand(f"{ctype}: topic {topic!r} does not exist in stream {stream!r}")
        return topic_id


class TopicsMachine(_Table):
    """Topics: ``{"id", "stream_id", "name", "partitions", "retention_seconds", "created_op"}``.

    Names are unique within a stream. Partitions are 1..``MAX_PARTITIONS`` and
    can only grow (shrinking would drop partitions that hold messages).
    ``retention_seconds`` is 0 (keep forever) to ``MAX_RETENTION_SECONDS``.
    A topic with consumer groups cannot be deleted.
    """

    name = "topics"
    kind = "topic"
    command_types = frozenset({"create_topic", "update_topic", "delete_topic"})
    entity_fields = frozenset(
        {"id", "stream_id", "name", "partitions", "retention_seconds", "created_op"}
    )

    def _key(self, entity: Mapping[str, Any]) -> Hashable:
        return (entity["stream_id"], entity["name"])

    def _parent(self, entity: Mapping[str, Any]) -> int | None:
        parent: int = entity["stream_id"]
        return parent

    def _check_entity(self, entity: Mapping[str, Any]) -> None:
        _require_str_fields(self, entity, "name")
        _require_int_fields(
            self, entity, "stream_id", "partitions", "retention_seconds", "created_op"
        )

    def reader(self) -> TopicsReader:
        return TopicsReader(self)

    def apply(self, op: int, command: Mapping[str, Any], siblings: Siblings) -> Any:
        ctype = _check_shape(command)
        streams = siblings.get("streams", StreamsReader)
        stream = _get_name(command, "stream", "stream name")
        if ctype == "create_topic":
            name = _get_name(command, "name", "topic name")
            partitions = _get_int(command, "partitions", 1, MAX_PARTITIONS)
            retention = 0
            if "retention_seconds" in command:
                retention = _get_int(command, "retention_seconds", 0, MAX_RETENTION_SECONDS)
            stream_id = streams.require(ctype, stream)
            if (stream_id, name) in self._index:
                raise InvalidCommand(f"{ctype}: topic {name!r} already exists in stream {stream!r}")
            return self._insert(
                op,
                {
                    "stream_id": stream_id,
                    "name": name,
                    "partitions": partitions,
                    "retention_seconds": retention,
                },
            )
        topic = _get_name(command, "topic", "topic name")
        if ctype == "update_topic":
            changes: dict[str, int] = {}
            if "partitions" in command:
                changes["partitions"] = _get_int(command, "partitions", 1, MAX_PARTITIONS)
            if "retention_seconds" in command:
                changes["retention_seconds"] = _get_int(
                    command, "retention_seconds", 0, MAX_RETENTION_SECONDS
                )
            if not changes:
                raise InvalidCommand(
                    f"{ctype}: nothing to update; give 'partitions' and/or 'retention_seconds'"
                )
            topic_id = TopicsReader(self).require(ctype, siblings, stream, topic)
            entity = self._items[topic_id]
            if changes.get("partitions", entity["partitions"]) < entity["partitions"]:
                raise InvalidCommand(
                    f"{ctype}: partitions can only grow; topic {topic!r} has "
                    f"{entity['partitions']}, asked for {changes['partitions']}"
                )
            entity.update(changes)
            return _copy_entity(entity)
        # delete_topic
        topic_id = TopicsReader(self).require(ctype, siblings, stream, topic)
        groups = siblings.get("consumer_groups", ConsumerGroupsReader).count_on_topic(topic_id)
        if groups:
            raise InvalidCommand(
                f"{ctype}: topic {topic!r} still has {groups} consumer group(s); delete them first"
            )
        return self._remove(topic_id)


# --- users -----------------------------------------------------------------


class UsersMachine(_Table):
    """Users: ``{"id", "username", "status", "permissions", "created_op"}``.

    Usernames are unique. ``status`` is ``"active"`` (the default) or
    ``"inactive"``; ``permissions`` is a sorted list of distinct strings from
    :data:`PERMISSIONS` (default empty); an update replaces the whole list.
    """

    name = "users"
    kind = "user"
    command_types = frozenset({"create_user", "update_user", "delete_user"})
    entity_fields = frozenset({"id", "username", "status", "permissions", "created_op"})

    def _key(self, entity: Mapping[str, Any]) -> Hashable:
        username: str = entity["username"]
        return username

    def _check_entity(self, entity: Mapping[str, Any]) -> None:
        _require_str_fields(self, entity, "username", "status")
        _require_int_fields(self, entity, "created_op")
        permissions = entity["permissions"]
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise StateRestoreError(
                f"users state: permissions of {entity!r} must be a list of strings",
                part=self.name,
            )

    def apply(self, op: int, command: Mapping[str, Any], siblings: Siblings) -> Any:
        ctype = _check_shape(command)
        username = _get_username(command)
        changes: dict[str, Any] = {}
        if "status" in command:
            changes["status"] = _get_status(command)
        if "permissions" in command:
            changes["permissions"] = _get_permissions(command)
        user_id = self._index.get(username)
        if ctype == "create_user":
            if user_id is not None:
                raise InvalidCommand(f"{ctype}: user {username!r} already exists")
            fields = {"username": username, "status": "active", "permissions": [], **changes}
            return self._insert(op, fields)
        if user_id is None:
            raise InvalidCommand(f"{ctype}: user {username!r} does not exist")
        if ctype == "update_user":
            if not changes:
                raise InvalidCommand(
                    f"{ctype}: nothing to update; give 'status' and/or 'permissions'"
                )
            self._items[user_id].update(changes)
            return _copy_entity(self._items[user_id])
        # delete_user
        return self._remove(user_id)


# --- consumer groups -------------------------------------------------------


class ConsumerGroupsReader:
    """Read-only queries on the consumer groups table, for sibling sub-machines."""

    __slots__ = ("_table",)

    def __init__(self, table: ConsumerGroupsMachine):
        self._table = table

    def count_on_topic(self, topic_id: int) -> int:
        """How many consumer groups topic ``topic_id`` has."""
        return self._table._per_parent.get(topic_id, 0)


class ConsumerGroupsMachine(_Table):
    """Consumer groups: ``{"id", "topic_id", "name", "members", "created_op"}``.

    Names are unique within a topic. ``members`` is a sorted list of distinct
    member names (at most :data:`MAX_GROUP_MEMBERS`); members join and leave
    one at a time. Deleting a group also removes its members (they are part
    of the group's own state).
    """

    name = "consumer_groups"
    kind = "consumer group"
    command_types = frozenset(
        {
            "create_consumer_group",
            "delete_consumer_group",
            "join_consumer_group",
            "leave_consumer_group",
        }
    )
    entity_fields = frozenset({"id", "topic_id", "name", "members", "created_op"})

    def _key(self, entity: Mapping[str, Any]) -> Hashable:
        return (entity["topic_id"], entity["name"])

    def _parent(self, entity: Mapping[str, Any]) -> int | None:
        parent: int = entity["topic_id"]
        return parent

    def _check_entity(self, entity: Mapping[str, Any]) -> None:
        _require_str_fields(self, entity, "name")
        _require_int_fields(self, entity, "topic_id", "created_op")
        members = entity["members"]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise StateRestoreError(
                f"consumer_groups state: members of {entity!r} must be a list of strings",
                part=self.name,
            )

    def reader(self) -> ConsumerGroupsReader:
        return ConsumerGroupsReader(self)

    def apply(self, op: int, command: Mapping[str, Any], siblings: Siblings) -> Any:
        ctype = _check_shape(command)
        stream = _get_name(command, "stream", "stream name")
        topic = _get_name(command, "topic", "topic name")
        topics = siblings.get("topics", TopicsReader)
        if ctype == "create_consumer_group":
            name = _get_name(command, "name", "consumer group name")
            topic_id = topics.require(ctype, siblings, stream, topic)
            if (topic_id, name) in self._index:
                raise InvalidCommand(
                    f"{ctype}: consumer group {name!r} already exists on topic {topic!r}"
                )
            return self._insert(op, {"topic_id": topic_id, "name": name, "members": []})
        group = _get_name(command, "group", "consumer group name")
        member = None
        if ctype != "delete_consumer_group":
            member = _get_name(command, "member", "member name")
        topic_id = topics.require(ctype, siblings, stream, topic)
        group_id = self._index.get((topic_id, group))
        if group_id is None:
            raise InvalidCommand(
                f"{ctype}: consumer group {group!r} does not exist on topic {topic!r}"
            )
        if ctype == "delete_consumer_group":
            return self._remove(group_id)
        entity = self._items[group_id]
        members: list[str] = entity["members"]
        if ctype == "join_consumer_group":
            if member in members:
                raise InvalidCommand(f"{ctype}: {member!r} is already a member of {group!r}")
            if len(members) >= MAX_GROUP_MEMBERS:
                raise InvalidCommand(
                    f"{ctype}: consumer group {group!r} is full ({MAX_GROUP_MEMBERS} members)"
                )
            entity["members"] = sorted([*members, member])
        else:  # leave_consumer_group
            if member not in members:
                raise InvalidCommand(f"{ctype}: {member!r} is not a member of {group!r}")
            entity["members"] = [m for m in members if m != member]
        return _copy_entity(entity)


# --- the machine -------------------------------------------------------------


class MetadataStateMachine(MuxStateMachine):
    """The metadata plane of a message streaming server (name ``"metadata"``, version 1).

    A mux of :class:`StreamsMachine`, :class:`TopicsMachine`,
    :class:`UsersMachine` and :class:`ConsumerGroupsMachine`. The commands and
    their fields are listed in :data:`COMMANDS`; each returns the affected
    entity as a dict (for deletes: the entity as it was).
    """

    name: ClassVar[str] = "metadata"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.streams = StreamsMachine()
        self.topics = TopicsMachine()
        self.users = UsersMachine()
        self.consumer_groups = ConsumerGroupsMachine()
        super().__init__([self.streams, self.topics, self.users, self.consumer_groups])

    def describe(self) -> dict[str, int]:
        """Counts per kind: streams, topics, partitions, users (and active ones),
        consumer groups and group members."""
        topics = self.topics._items.values()
        users = self.users._items.values()
        groups = self.consumer_groups._items.values()
        return {
            "streams": len(self.streams),
            "topics": len(self.topics),
            "partitions": sum(t["partitions"] for t in topics),
            "users": len(self.users),
            "active_users": sum(1 for u in users if u["status"] == "active"),
            "consumer_groups": len(self.consumer_groups),
            "group_members": sum(len(g["members"]) for g in groups),
        }
