"""A bug in apply(): the replica stops, every recovery meets the op, and inspect shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_replica import StateMachine, StateMachineError, open_replica


class Fragile(StateMachine):
    """Keeps names; a name with a slash is a bug (it raises KeyError)."""

    name = "fragile"
    version = 1

    def __init__(self) -> None:
        self.names: list[str] = []

    def apply(self, op: int, command: Any) -> int:
        if "/" in command["name"]:
            raise KeyError(command["name"])  # the bug: not an InvalidCommand
        self.names.append(command["name"])
        return len(self.names)

    def snapshot(self) -> list[str]:
        return list(self.names)

    def restore(self, state: Any) -> None:
        self.names = list(state)


async def test_the_failing_op_is_named_and_inspect_shows_its_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(StateMachineError) as live:
        async with open_replica(data, Fragile()) as replica:
            await replica.submit({"name": "a"})
            await replica.submit({"name": "b/c", "why": "x" * 300})
    assert live.value.op == 2
    assert "every recovery will meet it" in str(live.value)
    assert "`trio-replica inspect DATA_DIR --op 2` shows its command" in str(live.value)

    # The op is durable: recovery meets it again, with the same guidance.
    with pytest.raises(StateMachineError) as replayed:
        async with open_replica(data, Fragile()):
            pass
    assert replayed.value.op == 2 and "replaying op 2" in str(replayed.value)

    shown = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "trio_replica", "inspect", str(data), "--op", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert shown.returncode == 0, shown.stderr
    command = shown.stdout.split("command:\n", 1)[1].rsplit("\n1 records listed", 1)[0]
    assert json.loads(command) == {"name": "b/c", "why": "x" * 300}  # whole, not cut
