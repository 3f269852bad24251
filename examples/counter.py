"""The smallest complete replica: a counter that survives restarts.

A state machine is three methods (apply, snapshot, restore) and a name.
``open_replica`` recovers it from its data directory (newest snapshot, then
the journal after it) and runs it; ``submit`` returns once the command is
durable on disk and applied.

    python examples/counter.py              # a short demonstration in a temporary directory
    python examples/counter.py --dir DIR    # keep the data: each run adds to the total
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import trio

from trio_replica import InvalidCommand, StateMachine, open_replica


class Counter(StateMachine):
    """Adds integers. Commands are ``{"add": n}``; the result is the new total."""

    name = "example-counter"
    version = 1

    def __init__(self) -> None:
        self.total = 0

    def apply(self, op: int, command: Any) -> int:
        """Apply one durable command; the return value goes back to the submitter."""
        # Reject before changing anything: replay must reject it the same way.
        if not isinstance(command, dict) or type(command.get("add")) is not int:
            raise InvalidCommand(f"expected {{'add': <int>}}, got {command!r}")
        self.total += command["add"]
        return self.total

    def snapshot(self) -> dict[str, int]:
        """A copy of the whole state, written to disk by the replica every so often."""
        return {"total": self.total}

    def restore(self, state: Any) -> None:
        """Start over from a value ``snapshot`` returned (at recovery)."""
        self.total = state["total"]


async def run(directory: str) -> None:
    """Add 1..200 from 10 concurrent clients, reject one bad command, reopen."""
    counter = Counter()
    async with open_replica(directory, counter, snapshot_every=50) as replica:
        start = counter.total
        # A RecoveryReport prints as one readable line.
        print(f"opened {directory}: total {start}; {replica.recovery}")

        async def client(first: int) -> None:
            """Add ``first`` .. ``first + 19``, one durable submit at a time."""
            for n in range(first, first + 20):
                await replica.submit({"add": n})  # durable and applied when it returns

        async with trio.open_nursery() as nursery:
            for first in range(1, 201, 20):
                nursery.start_soon(client, first)
        try:
            await replica.submit({"add": "one"})
        except InvalidCommand as exc:
            print(f"rejected, and still serving: {exc}")
        total = counter.total
        print(f"10 clients added 1..200: total {total} at op {replica.applied_op}")
        assert total == start + sum(range(1, 201))

    # Open it again: recovery loads the newest snapshot and replays the rest.
    counter = Counter()
    async with open_replica(directory, counter, snapshot_every=50) as replica:
        print(f"reopened: total {counter.total}; {replica.recovery}")
        assert counter.total == total


def main() -> None:
    """Run the demonstration in ``--dir`` or in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="data directory to use (default: a temporary one)")
    args = parser.parse_args()
    if args.dir:
        trio.run(run, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="counter-") as tmp:
        trio.run(run, tmp)


if __name__ == "__main__":
    main()
