"""The snapshot tests' disk: a SimulatedDisk seen through a FaultyDirectory.

The simulated disk keeps what the process sees and what is durable, and
enumerates what a power loss may leave; the faulty directory in front of it
records every mutating call (``plan.calls``), fails, kills or counts the
ones a test chooses, and records the largest read.
"""

from __future__ import annotations

from trio_replica.testing import FaultyDirectory, SimulatedDisk, crash_states
from trio_replica.testing.faults import FaultOperation

SNAPSHOTS = "snapshots"


def new_disk(seed: int = 1) -> FaultyDirectory:
    """An empty data directory on a fresh simulated disk."""
    return FaultyDirectory(SimulatedDisk(seed=seed))


def simulated(disk: FaultyDirectory) -> SimulatedDisk:
    """The simulated disk behind ``disk``."""
    inner = disk.inner
    assert isinstance(inner, SimulatedDisk)
    return inner


def restarted(disk: FaultyDirectory) -> FaultyDirectory:
    """What a restart after a process crash finds (the page cache survives),
    as a copy, so the test can go on with the original."""
    return FaultyDirectory(simulated(disk).clone())


def power_losses(disk: FaultyDirectory, max_states: int = 32) -> list[FaultyDirectory]:
    """What a power loss now may leave: the durable state first, then the
    state where everything pending landed, then torn and reordered ones."""
    return [
        FaultyDirectory(state) for state in crash_states(simulated(disk), max_states=max_states)
    ]


def durable_only(disk: FaultyDirectory) -> FaultyDirectory:
    """A power loss that kept only what was made durable."""
    return power_losses(disk, max_states=1)[0]


def every_restart(disk: FaultyDirectory) -> list[FaultyDirectory]:
    """The process-crash view followed by the power-loss states."""
    return [restarted(disk), *power_losses(disk)]


def put(disk: FaultyDirectory, name: str, content: bytes) -> None:
    """Make ``snapshots/name`` hold ``content`` durably, as damage or a stray
    file found at rest (not recorded as a call of the code under test)."""
    directory = simulated(disk).subdir(SNAPSHOTS, create=True)
    if directory.exists(name):
        file = directory.open(name)
        file.truncate(0)
    else:
        file = directory.open(name, create=True)
    file.write_at(0, content)
    file.sync()
    file.close()
    directory.sync()


def content(disk: FaultyDirectory, name: str, *, durable: bool = False) -> bytes:
    """The bytes of ``snapshots/name``: what a read returns now, or what is
    sure to survive a power loss."""
    return simulated(disk).snapshot_bytes(durable=durable)[f"{SNAPSHOTS}/{name}"]


def data_synced(disk: FaultyDirectory, name: str) -> bool:
    """Whether every write to ``snapshots/name`` was fsynced (nothing of its
    data is pending; its directory entry may still be)."""
    path = f"{SNAPSHOTS}/{name}"
    pending = simulated(disk).pending_operations()
    return not [op for op in pending if op.path == path and op.kind in ("write", "truncate")]


def names(disk: FaultyDirectory, *, durable: bool = False) -> list[str]:
    """The files in ``snapshots/``: visible now, or durable."""
    prefix = f"{SNAPSHOTS}/"
    files = simulated(disk).snapshot_bytes(durable=durable)
    return sorted(path[len(prefix) :] for path in files if path.startswith(prefix))


def fail_nth(disk: FaultyDirectory, operation: FaultOperation, n: int = 1) -> None:
    """Make only the ``n``-th call (1-based, from now) of ``operation`` fail."""
    disk.plan.fail(operation, after=n - 1, times=1)


def operations(disk: FaultyDirectory, start: int = 0) -> list[str]:
    """The operations of the calls recorded since ``start``."""
    return [operation for operation, _ in disk.plan.calls[start:]]
