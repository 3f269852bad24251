"""Lifecycle logging under the documented logger names; silent unless configured."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trio_replica import InvalidCommand, StateMachineError, open_replica
from trio_replica.machines import Counter
from trio_replica.testing import SimulatedDisk
from trio_replica.testing.simulate import SimulationConfig, run_simulation

LOGGERS = {
    "trio_replica.replica",
    "trio_replica.journal",
    "trio_replica.snapshots",
    "trio_replica.coordinator.task",
}


def _lines(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno == level]


async def test_a_replica_s_life_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_replica")
    disk = SimulatedDisk(seed=2)
    async with open_replica(disk, Counter(), snapshot_every=10, segment_bytes=600) as replica:
        for _ in range(50):
            await replica.submit({"add": 1})
    assert {r.name for r in caplog.records} <= LOGGERS
    [opened] = _lines(caplog, "trio_replica.replica", logging.INFO)[:1]
    assert opened.startswith("opened ") and "recovered an empty data directory" in opened
    assert _lines(caplog, "trio_replica.replica", logging.INFO)[-1].startswith("closed ")
    assert _lines(caplog, "trio_replica.replica", logging.INFO)[-1].endswith(" at op 50")
    persisted = _lines(caplog, "trio_replica.coordinator.task", logging.INFO)
    assert "snapshot at op 10 persisted (automatic)" in persisted and len(persisted) >= 4
    compacted = _lines(caplog, "trio_replica.journal", logging.INFO)
    assert compacted and all(line.startswith("compacted ") for line in compacted)
    created = _lines(caplog, "trio_replica.journal", logging.DEBUG)
    assert any(line.startswith("new segment ") for line in created)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    caplog.clear()
    async with open_replica(disk.clone(), Counter()):
        pass
    [reopened, closed] = _lines(caplog, "trio_replica.replica", logging.INFO)
    assert "recovered to op 50" in reopened and closed.endswith("at op 50")


class Buggy(Counter):
    name = "buggy"

    def apply(self, op: int, command: Any) -> int:
        if command == "boom":
            raise KeyError(command)  # a bug, not an InvalidCommand
        return super().apply(op, command)


async def test_a_failure_is_logged_at_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_replica")
    with pytest.raises(StateMachineError):
        async with open_replica(SimulatedDisk(seed=1), Buggy()) as replica:
            await replica.submit("boom")
    [line] = _lines(caplog, "trio_replica.replica", logging.ERROR)
    assert "stopped at op 1: StateMachineError:" in line


async def test_an_error_of_the_block_itself_is_not_a_replica_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_replica")
    with pytest.raises(InvalidCommand):
        async with open_replica(SimulatedDisk(seed=1), Counter()) as replica:
            await replica.submit({"add": "one"})  # rejected, and the block lets it escape
    assert not _lines(caplog, "trio_replica.replica", logging.ERROR)
    closing = _lines(caplog, "trio_replica.replica", logging.INFO)[-1]
    assert closing.endswith("at op 1: the block raised InvalidCommand")


def test_the_simulator_s_expected_torn_tails_are_not_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_replica")
    result = run_simulation(SimulationConfig(seed=8, ticks=2000))  # cuts torn tails
    assert result.violation is None and result.restarts > 0
    journal = [r for r in caplog.records if r.name == "trio_replica.journal"]
    assert any(r.getMessage().startswith("journal recovery:") for r in journal)
    assert not [r for r in journal if r.levelno >= logging.WARNING]


def test_without_logging_configured_nothing_reaches_stderr(tmp_path: Path) -> None:
    program = f"""
import trio
from trio_replica import open_replica
from trio_replica.machines import Counter

async def main():
    async with open_replica({str(tmp_path / "d")!r}, Counter()) as replica:
        await replica.submit({{"add": 1}})
    with open({str(tmp_path / "d" / "wal" / "00000000000000000001.wal")!r}, "ab") as f:
        f.write(b"torn tail garbage")  # recovery cuts it, with a WARNING
    async with open_replica({str(tmp_path / "d")!r}, Counter()) as replica:
        assert replica.recovery.bytes_truncated > 0
trio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
