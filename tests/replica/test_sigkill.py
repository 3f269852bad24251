"""A real crash test: SIGKILL a replica process at random moments, recover, go on.

Each round a child process (``sigkill_child.py``) opens the same data
directory, recovers, and runs 16 concurrent submitters plus periodic
checkpoints, printing every acknowledged (op, value). The parent kills it
with SIGKILL at a seeded random moment (sometimes while it is still
recovering), then recovers the directory itself and checks invariants 1
and 2 against everything the child ever acknowledged:

* the recovered history is exactly ops 1..k (``History.apply`` refuses any
  other op, live and in replay), with k >= the last acked op;
* every acked (op, value) is there, and the history recovered after the
  previous round is a prefix of this one (nothing durable is ever lost);
* per submitter and round, the values present are its commands 0..m with m
  the last acked one or the one after it (the single command it had in
  flight): nothing unacked but that, nothing twice.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import trio
from replica_machines import History
from sigkill_child import OPTIONS

from trio_replica import RecoveryReport, open_replica

CHILD = Path(__file__).with_name("sigkill_child.py")
ROUNDS = 22
SEED = 20261125


class ChildRun:
    """One child process and the lines it printed (read by a thread, so the
    child never blocks on a full pipe)."""

    def __init__(self, data: Path, round_no: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(data), str(round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):
                break  # a line cut by the kill (cannot happen with one write, but be safe)
            line = raw.decode()
            self.lines.append(line)
            if line.startswith("ready"):
                self.ready.set()

    def kill(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read().decode()


def recover_history(data: Path) -> tuple[list[int], RecoveryReport]:
    async def recover() -> tuple[list[int], RecoveryReport]:
        async with open_replica(data, History(), **OPTIONS) as replica:
            machine = replica.machine
            assert isinstance(machine, History)
            return list(machine.values), replica.recovery

    return trio.run(recover)


@pytest.mark.slow
def test_sigkill_at_random_moments_recovers_every_acked_op(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    acked: dict[int, int] = {}
    history: list[int] = []
    kills_before_ready = torn_tails = temp_files_left = 0
    started = time.monotonic()
    for round_no in range(1, ROUNDS + 1):
        child = ChildRun(data, round_no)
        if rng.random() < 0.2:
            # Kill it early: maybe during startup, recovery or its first batches.
            time.sleep(rng.uniform(0.05, 0.6))
        else:
            assert child.ready.wait(timeout=60), "child did not start"
            time.sleep(rng.uniform(0.02, 0.5))
        kills_before_ready += not child.ready.is_set()
        returncode, stderr = child.kill()
        assert returncode == -signal.SIGKILL, f"child exited on its own ({returncode}): {stderr}"

        for line in child.lines:
            if line.startswith("ack "):
                _, op, value = line.split()
                assert int(op) not in acked, f"op {op} acked twice"
                acked[int(op)] = int(value)
            elif line.startswith("ready "):
                # The child recovered at least everything acked before.
                assert int(line.split()[1]) >= max(acked, default=0)

        leftovers = [p.name for p in (data / "snapshots").glob("*.tmp")] if data.exists() else []
        temp_files_left += bool(leftovers)
        recovered, report = recover_history(data)
        torn_tails += report.bytes_truncated > 0
        assert recovered[: len(history)] == history, "a durable op changed or vanished"
        assert len(recovered) >= max(acked, default=0)
        for op, value in acked.items():
            assert recovered[op - 1] == value, (
                f"acked op {op}={value}, recovered {recovered[op - 1]}"
            )
        check_in_flight(recovered, acked)
        history = recovered
    elapsed = time.monotonic() - started
    assert len(acked) > 1000, "the child should have acked plenty of ops"
    assert len(history) >= len(acked)
    print(
        f"{ROUNDS} SIGKILL rounds in {elapsed:.1f}s: {len(acked)} acked ops, "
        f"{len(history)} recovered, {kills_before_ready} kills before ready, "
        f"{torn_tails} torn tails cut, {temp_files_left} kills mid-snapshot"
    )


def check_in_flight(recovered: list[int], acked: dict[int, int]) -> None:
    """Per (round, submitter): commands 0..m present in order, m <= last acked + 1."""
    present: dict[tuple[int, int], list[int]] = defaultdict(list)
    for value in recovered:
        round_no, rest = divmod(value, 1_000_000)
        task, i = divmod(rest, 10_000)
        present[(round_no, task)].append(i)
    last_acked: dict[tuple[int, int], int] = {}
    for value in acked.values():
        round_no, rest = divmod(value, 1_000_000)
        task, i = divmod(rest, 10_000)
        last_acked[(round_no, task)] = max(i, last_acked.get((round_no, task), -1))
    for key, indexes in present.items():
        assert indexes == list(range(len(indexes))), f"submitter {key}: {indexes[:10]}..."
        assert len(indexes) - 1 <= last_acked.get(key, -1) + 1, (
            f"submitter {key} has {len(indexes)} durable commands, last acked "
            f"{last_acked.get(key)}: more than one was in flight"
        )
