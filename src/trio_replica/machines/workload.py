"""Generated command streams for the metadata state machine (demos and benchmarks).

:func:`metadata_workload` turns a ``random.Random`` and a client id into an
endless, realistic sequence of metadata commands: mostly creates and
updates, some deletes, and a few commands that are invalid on purpose.

Each client works in its own namespace (its streams are named
``c<client>-s<n>``, its users ``c<client>.u<n>``), so the commands of
different clients never depend on each other and many clients can submit
concurrently, in any interleaving. Within one client, every command meant to
be valid is valid provided the client's earlier commands were applied in
order; :func:`metadata_steps` says which commands are meant to fail.

The generator only models its own namespace; it never looks at results.
Its size stays bounded (caps per kind): when a cap is reached it deletes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from .metadata import MAX_PARTITIONS, PERMISSIONS

__all__ = ["WorkloadStep", "metadata_steps", "metadata_workload"]

_PERMISSIONS = sorted(PERMISSIONS)


@attrs.frozen
class WorkloadStep:
    """One generated command and whether the generator meant it to be accepted."""

    command: dict[str, Any]
    valid: bool


@attrs.define
class _Topic:
    partitions: int
    retention_seconds: int
    groups: dict[str, list[str]] = attrs.Factory(dict)


@attrs.define
class _Client:
    """What one client believes its namespace holds (its own commands, applied in order)."""

    rng: random.Random
    client_id: int
    max_streams: int
    max_topics: int
    max_users: int
    max_groups: int
    max_members: int
    seq: int = 0
    streams: dict[str, dict[str, _Topic]] = attrs.Factory(dict)
    users: dict[str, dict[str, Any]] = attrs.Factory(dict)

    def fresh(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq}"

    def stream_name(self) -> str:
        return self.fresh(f"c{self.client_id}-s")

    # -- queries on the model -------------------------------------------

    def topics(self) -> list[tuple[str, str, _Topic]]:
        return [(s, t, topic) for s, ts in self.streams.items() for t, topic in ts.items()]

    def groups(self) -> list[tuple[str, str, str, list[str]]]:
        return [
            (s, t, g, members)
            for s, t, topic in self.topics()
            for g, members in topic.groups.items()
        ]

    def permissions(self) -> list[str]:
        return sorted(self.rng.sample(_PERMISSIONS, self.rng.randint(0, 4)))

    # -- valid commands: each updates the model as the machine will ----------

    def create_stream(self) -> dict[str, Any]:
        name = self.stream_name()
        self.streams[name] = {}
        return {"type": "create_stream", "name": name}

    def update_stream(self) -> dict[str, Any]:
        old = self.rng.choice(list(self.streams))
        new = self.stream_name()
        self.streams[new] = self.streams.pop(old)
        return {"type": "update_stream", "stream": old, "name": new}

    def delete_stream(self) -> dict[str, Any]:
        name = self.rng.choice([s for s, ts in self.streams.items() if not ts])
        del self.streams[name]
        return {"type": "delete_stream", "stream": name}

    def create_topic(self) -> dict[str, Any]:
        stream = self.rng.choice([s for s, ts in self.streams.items() if len(ts) < self.max_topics])
        name = self.fresh("t")
        partitions = self.rng.choice([1, 1, 2, 3, 4, 8, 16])
        command: dict[str, Any] = {
            "type": "create_topic",
            "stream": stream,
            "name": name,
            "partitions": partitions,
        }
        retention = 0
        if self.rng.random() < 0.5:
            retention = self.rng.choice([3600, 86400, 7 * 86400])
            command["retention_seconds"] = retention
        self.streams[stream][name] = _Topic(partitions, retention)
        return command

    def update_topic(self) -> dict[str, Any]:
        stream, name, topic = self.rng.choice(self.topics())
        command: dict[str, Any] = {"type": "update_topic", "stream": stream, "topic": name}
        if self.rng.random() < 0.7:
            topic.partitions = min(MAX_PARTITIONS, topic.partitions + self.rng.randint(0, 4))
            command["partitions"] = topic.partitions
        if "partitions" not in command or self.rng.random() < 0.3:
            topic.retention_seconds = self.rng.choice([0, 3600, 86400])
            command["retention_seconds"] = topic.retention_seconds
        return command

    def delete_topic(self) -> dict[str, Any]:
        stream, name, _ = self.rng.choice([x for x in self.topics() if not x[2].groups])
        del self.streams[stream][name]
        return {"type": "delete_topic", "stream": stream, "topic": name}

    def create_user(self) -> dict[str, Any]:
        username = self.fresh(f"c{self.client_id}.u")
        command: dict[str, Any] = {"type": "create_user", "username": username}
        user = {"status": "active", "permissions": self.permissions()}
        if user["permissions"]:
            command["permissions"] = user["permissions"]
        if self.rng.random() < 0.2:
            user["status"] = command["status"] = "inactive"
        self.users[username] = user
        return command

    def update_user(self) -> dict[str, Any]:
        username = self.rng.choice(list(self.users))
        if self.rng.random() < 0.5:
            status = self.rng.choice(["active", "inactive"])
            self.users[username]["status"] = status
            return {"type": "update_user", "username": username, "status": status}
        permissions = self.permissions()
        self.users[username]["permissions"] = permissions
        return {"type": "update_user", "username": username, "permissions": permissions}

    def delete_user(self) -> dict[str, Any]:
        username = self.rng.choice(list(self.users))
        del self.users[username]
        return {"type": "delete_user", "username": username}

    def create_group(self) -> dict[str, Any]:
        stream, topic, model = self.rng.choice(
            [x for x in self.topics() if len(x[2].groups) < self.max_groups]
        )
        name = self.fresh("g")
        model.groups[name] = []
        return {"type": "create_consumer_group", "stream": stream, "topic": topic, "name": name}

    def join_group(self) -> dict[str, Any]:
        stream, topic, group, members = self.rng.choice(
            [x for x in self.groups() if len(x[3]) < self.max_members]
        )
        member = self.fresh("m")
        members.append(member)
        return {
            "type": "join_consumer_group",
            "stream": stream,
            "topic": topic,
            "group": group,
            "member": member,
        }

    def leave_group(self) -> dict[str, Any]:
        stream, topic, group, members = self.rng.choice([x for x in self.groups() if x[3]])
        member = self.rng.choice(members)
        members.remove(member)
        return {
            "type": "leave_consumer_group",
            "stream": stream,
            "topic": topic,
            "group": group,
            "member": member,
        }

    def delete_group(self) -> dict[str, Any]:
        stream, topic, group, _ = self.rng.choice(self.groups())
        del self.streams[stream][topic].groups[group]
        return {"type": "delete_consumer_group", "stream": stream, "topic": topic, "group": group}

    def valid_actions(self) -> list[tuple[float, Callable[[], dict[str, Any]]]]:
        """The valid commands possible now, with weights: creates and updates
        dominate until a cap is reached, then deletes take over."""
        topics = self.topics()
        groups = self.groups()
        full = len(self.streams) >= self.max_streams
        actions: list[tuple[float, Callable[[], dict[str, Any]]]] = []

        def add(weight: float, possible: bool, action: Callable[[], dict[str, Any]]) -> None:
            if possible:
                actions.append((weight, action))

        add(3, not full, self.create_stream)
        add(1, bool(self.streams), self.update_stream)
        add(3 if full else 0.5, any(not ts for ts in self.streams.values()), self.delete_stream)
        add(5, any(len(ts) < self.max_topics for ts in self.streams.values()), self.create_topic)
        add(3, bool(topics), self.update_topic)
        add(2 if full else 1, any(not t.groups for _, _, t in topics), self.delete_topic)
        add(2, len(self.users) < self.max_users, self.create_user)
        add(2, bool(self.users), self.update_user)
        add(2 if len(self.users) >= self.max_users else 0.5, bool(self.users), self.delete_user)
        add(2, any(len(t.groups) < self.max_groups for _, _, t in topics), self.create_group)
        add(4, any(len(g[3]) < self.max_members for g in groups), self.join_group)
        add(2, any(g[3] for g in groups), self.leave_group)
        add(1.5 if full else 0.7, bool(groups), self.delete_group)
        return actions

    # -- invalid commands: each is rejected whatever else happened; the model is unchanged -----

    def invalid(self) -> dict[str, Any]:
        rng = self.rng
        cid = self.client_id
        # Built eagerly: fresh names only advance the counter, never the model.
        choices: list[dict[str, Any]] = [
            {"type": "create_widget", "name": self.fresh("w")},
            {"type": "create_stream", "name": f"c{cid} bad name!"},
            {"type": "create_stream", "name": self.stream_name(), "colour": "red"},
            {"type": "create_user", "username": f"X{cid}"},
            {"type": "create_topic", "stream": f"c{cid}-missing", "name": "t", "partitions": 1},
        ]
        if self.streams:
            stream = rng.choice(list(self.streams))
            choices += [
                {"type": "create_stream", "name": stream},
                {"type": "create_topic", "stream": stream, "name": "t0", "partitions": 0},
                {"type": "create_topic", "stream": stream, "name": "t0", "partitions": "3"},
            ]
        with_topics = [s for s, ts in self.streams.items() if ts]
        if with_topics:
            choices.append({"type": "delete_stream", "stream": rng.choice(with_topics)})
        shrinkable = [x for x in self.topics() if x[2].partitions > 1]
        if shrinkable:
            stream, topic, model = rng.choice(shrinkable)
            choices.append(
                {
                    "type": "update_topic",
                    "stream": stream,
                    "topic": topic,
                    "partitions": model.partitions - 1,
                }
            )
        joined = [x for x in self.groups() if x[3]]
        if joined:
            stream, topic, group, members = rng.choice(joined)
            choices.append(
                {
                    "type": "join_consumer_group",
                    "stream": stream,
                    "topic": topic,
                    "group": group,
                    "member": rng.choice(members),
                }
            )
        return rng.choice(choices)


def metadata_steps(
    rng: random.Random,
    client_id: int,
    *,
    invalid_ratio: float = 0.05,
    max_streams: int = 8,
    max_topics_per_stream: int = 4,
    max_users: int = 6,
    max_groups_per_topic: int = 2,
    max_members: int = 8,
) -> Iterator[WorkloadStep]:
    """Yield an endless sequence of :class:`WorkloadStep` for client ``client_id``.

    About ``invalid_ratio`` of the steps are commands the metadata machine
    must reject (``valid=False``); the rest are accepted when this client's
    steps are applied in order, interleaved with any other clients' steps.
    The sequence depends only on ``rng``'s state and ``client_id``.
    """
    if client_id < 0:
        raise ValueError(f"client_id must be >= 0, got {client_id}")
    client = _Client(
        rng,
        client_id,
        max_streams=max_streams,
        max_topics=max_topics_per_stream,
        max_users=max_users,
        max_groups=max_groups_per_topic,
        max_members=max_members,
    )
    while True:
        if rng.random() < invalid_ratio:
            yield WorkloadStep(client.invalid(), valid=False)
            continue
        actions = client.valid_actions()
        weights = [weight for weight, _ in actions]
        action = rng.choices([a for _, a in actions], weights=weights)[0]
        yield WorkloadStep(action(), valid=True)


def metadata_workload(
    rng: random.Random, client_id: int, *, invalid_ratio: float = 0.05
) -> Iterator[dict[str, Any]]:
    """Yield an endless sequence of metadata commands for client ``client_id``.

    The commands of :func:`metadata_steps`, without the validity labels:
    use ``itertools.islice`` to take as many as needed. Commands of
    different clients are independent (separate namespaces).
    """
    for step in metadata_steps(rng, client_id, invalid_ratio=invalid_ratio):
        yield step.command
