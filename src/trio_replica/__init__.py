"""trio-replica: replicated state machines on Trio.

A checksummed write-ahead journal, atomic snapshots, crash recovery and
compaction, with a replica that runs its parts as tasks in one nursery.
"""

from __future__ import annotations

from .errors import (
    ClosedError,
    CommandEncodingError,
    CorruptionError,
    DirectoryLockedError,
    InvalidCommand,
    ReplicaError,
    ReplicaStoppedError,
    StateMachineError,
)
from .replica import Applied, RecoveryReport, Replica, open_replica
from .stm import StateMachine

__all__ = [
    "Applied",
    "ClosedError",
    "CommandEncodingError",
    "CorruptionError",
    "DirectoryLockedError",
    "InvalidCommand",
    "RecoveryReport",
    "Replica",
    "ReplicaError",
    "ReplicaStoppedError",
    "StateMachine",
    "StateMachineError",
    "open_replica",
]

__version__ = "0.1.0"
"""The package version: written only here (the build reads it from this line)."""
