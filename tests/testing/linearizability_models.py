"""Sequential models and history builders shared by the linearizability tests.

``Register`` and ``KeyValue`` are small user-style state machines; the
project's own ``Counter`` and ``MetadataStateMachine`` are used as they are.
``concurrent_history`` produces histories that are linearizable by
construction: every operation takes effect at a drawn instant inside its
interval (or, for an unknown outcome, possibly never), applied to a real
state machine in that order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from trio_replica import InvalidCommand, StateMachine
from trio_replica.testing import Operation, Outcome, Rejected


class Register(StateMachine):
    """One value, initially ``None``: ``{"write": v}`` -> None, ``{"read": None}``
    -> the value, ``{"cas": [old, new]}`` -> None or rejected."""

    name = "register"
    version = 1

    def __init__(self) -> None:
        self.value: Any = None

    def apply(self, op: int, command: Any) -> Any:
        if "write" in command:
            self.value = command["write"]
            return None
        if "read" in command:
            return self.value
        old, new = command["cas"]
        if self.value != old:
            raise InvalidCommand(f"value is {self.value!r}, not {old!r}")
        self.value = new
        return None

    def snapshot(self) -> Any:
        return {"value": self.value}

    def restore(self, state: Any) -> None:
        self.value = state["value"]


class KeyValue(StateMachine):
    """A map: ``{"put": k, "value": v}`` -> the previous value,
    ``{"get": k}`` -> the value, ``{"append": k, "value": s}`` -> the new
    string, ``{"swap": [k1, k2]}`` (two keys) -> None."""

    name = "kv"
    version = 1

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, op: int, command: Any) -> Any:
        if "get" in command:
            return self.data.get(command["get"])
        if "put" in command:
            previous = self.data.get(command["put"])
            self.data[command["put"]] = command["value"]
            return previous
        if "append" in command:
            key = command["append"]
            self.data[key] = self.data.get(key, "") + command["value"]
            return self.data[key]
        first, second = command["swap"]
        a, b = self.data.get(first), self.data.get(second)
        for key, value in ((first, b), (second, a)):
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        return None

    def snapshot(self) -> Any:
        return dict(self.data)

    def restore(self, state: Any) -> None:
        self.data = dict(state)


def kv_keys(command: Any) -> Hashable:
    """The partition function of ``KeyValue``."""
    if "swap" in command:
        return frozenset(command["swap"])
    return command.get("get", command.get("put", command.get("append")))


UNKNOWN = object()
"""Marks an operation with unknown outcome in :func:`history`."""


def history(*specs: tuple[Any, ...]) -> list[Operation]:
    """Operations from ``(client, command, invoked, completed, result)``:
    ``completed`` None (or result :data:`UNKNOWN`) means unknown outcome, a
    :class:`Rejected` result a rejection."""
    built = []
    for client, command, invoked, completed, result in specs:
        if completed is None or result is UNKNOWN:
            built.append(Operation(client, command, invoked, None, Outcome.UNKNOWN))
        elif isinstance(result, Rejected):
            built.append(Operation(client, command, invoked, completed, Outcome.REJECTED, result))
        else:
            built.append(Operation(client, command, invoked, completed, Outcome.OK, result))
    return built


def apply_command(machine: StateMachine, op: int, command: Any) -> Any:
    """``machine.apply``, with a rejection turned into :class:`Rejected`."""
    try:
        return machine.apply(op, command)
    except InvalidCommand as error:
        return Rejected(str(error))


def concurrent_history(
    rng: random.Random,
    factory: Callable[[], StateMachine],
    commands: Sequence[Any],
    *,
    clients: int,
    unknown: float = 0.0,
    failed: float = 0.0,
) -> list[Operation]:
    """Run ``commands`` from ``clients`` concurrent clients against a real
    machine; every operation takes effect at one instant inside its interval.

    Each client issues its commands one after another with random gaps and
    durations. With probability ``unknown`` the client never learns the
    outcome (the command takes effect anyway or never, at random), with
    probability ``failed`` it learns that the command was never applied.
    The result is linearizable by construction.
    """
    free = [rng.random() for _ in range(clients)]
    drawn = []
    for command in commands:
        client = min(range(clients), key=free.__getitem__)
        invoked = free[client]
        point = invoked + rng.expovariate(1.0)
        completed = point + rng.expovariate(1.0)
        free[client] = completed + rng.expovariate(2.0)
        fate = rng.random()
        if fate < unknown:
            kind = "unknown" if rng.random() < 0.5 else "unknown-never"
        elif fate < unknown + failed:
            kind = "failed"
        else:
            kind = "known"
        drawn.append((client, command, invoked, point, completed, kind))
    # Integer times: the rank of each instant among all invocations and completions.
    instants = sorted(x for d in drawn for x in (d[2], d[4]))
    rank = {x: i for i, x in enumerate(instants)}
    machine = factory()
    results: dict[int, Any] = {}
    order = sorted(range(len(drawn)), key=lambda i: drawn[i][3])
    op = 0
    for i in order:
        if drawn[i][5] in ("known", "unknown"):
            op += 1
            results[i] = apply_command(machine, op, drawn[i][1])
    built = []
    for i, (client, command, invoked, _, completed, kind) in enumerate(drawn):
        start, end = rank[invoked], rank[completed]
        if kind == "known":
            result = results[i]
            outcome = Outcome.REJECTED if isinstance(result, Rejected) else Outcome.OK
            built.append(Operation(client, command, start, end, outcome, result))
        elif kind == "failed":
            built.append(Operation(client, command, start, end, Outcome.FAILED))
        else:
            built.append(Operation(client, command, start, None, Outcome.UNKNOWN))
    return built


def brute_force_linearizable(
    operations: Sequence[Operation], factory: Callable[[], StateMachine]
) -> bool:
    """The definition, checked by enumeration (tiny histories only): some
    subset of the unknown operations plus all known ones, in some order that
    respects real time, reproduces every known result."""
    known = [o for o in operations if o.outcome in (Outcome.OK, Outcome.REJECTED)]
    unknown = [o for o in operations if o.outcome is Outcome.UNKNOWN]
    for size in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, size):
            candidates = known + list(chosen)
            for order in itertools.permutations(candidates):
                if _respects_real_time(order) and _reproduces(order, factory):
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    for position, later in enumerate(order):
        for earlier in order[position + 1 :]:
            # `earlier` is placed after `later`: wrong if it completed before
            # `later` was invoked.
            if earlier.completed is not None and earlier.completed < later.invoked:
                return False
    return True


def _reproduces(order: Sequence[Operation], factory: Callable[[], StateMachine]) -> bool:
    machine = factory()
    for op, operation in enumerate(order, start=1):
        result = apply_command(machine, op, operation.command)
        if operation.outcome is not Outcome.UNKNOWN and result != operation.result:
            return False
    return True
