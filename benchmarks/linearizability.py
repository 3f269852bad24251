"""How long the linearizability checker takes on a large key-value history.

    python benchmarks/linearizability.py [--ops 20000] [--clients 64] [--keys 64]
        [--unknown 0.02] [--values 16] [--seed 1] [--time-limit 120]

Builds a history by really running a key-value ``StateMachine``: clients
issue gets, puts and compare-and-sets one after another on random keys, and
each operation takes effect at a random instant inside its interval; a
fraction ``--unknown`` of them never report back (half of those took
effect, half did not). The history is then checked with the same machine as
the model, partitioned by key, and checked again after corrupting one read
(the time to find and narrow the violation); both once more with gets named
as read-only (``read_only=``). The machine ignores op numbers, so the model
is ``MachineModel(KeyValue, uses_op=False)``. Prints one line per check.
``--keys`` may be a comma-separated list to see how per-key concurrency
(clients / keys) drives the cost. Writes draw from ``--values`` distinct
values: fewer values make wrong orders survive longer and the search harder.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import attrs

from trio_replica import InvalidCommand, StateMachine
from trio_replica.testing import (
    MachineModel,
    Operation,
    Outcome,
    Rejected,
    check_linearizability,
)


class KeyValue(StateMachine):
    """get / put / cas on string keys; a failed cas is rejected."""

    name = "bench-kv"
    version = 1

    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    def apply(self, op: int, command: Any) -> Any:
        kind, key = command["op"], command["key"]
        if kind == "get":
            return self.data.get(key)
        if kind == "put":
            self.data[key] = command["value"]
            return None
        if self.data.get(key) != command["old"]:
            raise InvalidCommand(f"{key} is {self.data.get(key)!r}, not {command['old']!r}")
        self.data[key] = command["new"]
        return None

    def snapshot(self) -> dict[str, int]:
        return dict(self.data)

    def restore(self, state: Any) -> None:
        self.data = dict(state)


def is_read(command: Any) -> bool:
    return bool(command["op"] == "get")


def key_of(command: Any) -> str:
    key: str = command["key"]
    return key


def build_history(
    *, ops: int, clients: int, keys: int, unknown: float, values: int, seed: int
) -> list[Operation]:
    rng = random.Random(seed)
    free = [rng.random() for _ in range(clients)]
    drawn = []
    for _ in range(ops):
        client = min(range(clients), key=free.__getitem__)
        invoked = free[client]
        point = invoked + rng.expovariate(1.0)
        completed = point + rng.expovariate(1.0)
        free[client] = completed + rng.expovariate(2.0)
        key = f"k{rng.randrange(keys)}"
        roll = rng.random()
        if roll < 0.5:
            command: dict[str, Any] = {"op": "get", "key": key}
        elif roll < 0.9:
            command = {"op": "put", "key": key, "value": rng.randrange(values)}
        else:
            command = {"op": "cas", "key": key, "old": rng.randrange(values), "new": 0}
        lost = rng.random() < unknown
        applied = not lost or rng.random() < 0.5
        drawn.append((client, command, invoked, point, completed, lost, applied))
    rank = {x: i for i, x in enumerate(sorted(x for d in drawn for x in (d[2], d[4])))}
    machine = KeyValue()
    results: dict[int, Any] = {}
    for op, i in enumerate(sorted(range(ops), key=lambda i: drawn[i][3]), start=1):
        if drawn[i][6]:
            try:
                results[i] = machine.apply(op, drawn[i][1])
            except InvalidCommand as error:
                results[i] = Rejected(str(error))
    history = []
    for i, (client, command, invoked, _, completed, lost, _) in enumerate(drawn):
        if lost:
            history.append(Operation(client, command, rank[invoked], None, Outcome.UNKNOWN))
        else:
            result = results[i]
            outcome = Outcome.REJECTED if isinstance(result, Rejected) else Outcome.OK
            history.append(
                Operation(client, command, rank[invoked], rank[completed], outcome, result)
            )
    return history


def corrupt_one_read(history: list[Operation], seed: int) -> list[Operation]:
    """A copy with one read, late in the history, returning a value never written."""
    rng = random.Random(seed)
    reads = [
        i
        for i, o in enumerate(history)
        if o.outcome is Outcome.OK and o.command["op"] == "get" and i > len(history) // 2
    ]
    index = rng.choice(reads)
    corrupted = list(history)
    corrupted[index] = attrs.evolve(history[index], result=-1)
    return corrupted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--keys", default="64", help="keys, or a comma-separated list")
    parser.add_argument("--unknown", type=float, default=0.02, help="fraction never answered")
    parser.add_argument("--values", type=int, default=16, help="distinct values written")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per check")
    args = parser.parse_args()
    for keys in [int(k) for k in args.keys.split(",")]:
        started = time.perf_counter()
        history = build_history(
            ops=args.ops,
            clients=args.clients,
            keys=keys,
            unknown=args.unknown,
            values=args.values,
            seed=args.seed,
        )
        built = time.perf_counter() - started
        unknown = sum(o.outcome is Outcome.UNKNOWN for o in history)
        print(
            f"{len(history)} ops, {args.clients} clients, {keys} keys, {unknown} unknown, "
            f"{args.values} values (built in {built:.2f} s)"
        )
        for label, checked, read_only in (
            ("as recorded", history, None),
            ("one read corrupted", corrupt_one_read(history, args.seed), None),
            ("as recorded, reads named", history, is_read),
            ("one read corrupted, reads named", corrupt_one_read(history, args.seed), is_read),
        ):
            started = time.perf_counter()
            result = check_linearizability(
                checked,
                MachineModel(KeyValue, uses_op=False),
                partition=key_of,
                read_only=read_only,
                max_steps=None,
                time_limit=args.time_limit,
            )
            seconds = time.perf_counter() - started
            print(
                f"  {label:>31}: {result.verdict.value} in {seconds:.2f} s "
                f"({result.steps} model steps, {result.partitions_checked}/"
                f"{result.partitions} partitions decided)"
            )


if __name__ == "__main__":
    main()
