"""trio-replica: replicated state machines on Trio.

A checksummed write-ahead journal, atomic snapshots, crash recovery and
compaction, with a replica that runs its parts as tasks in one nursery.
"""

from __future__ import annotations

import logging

from .cluster.checkpoint import StateDivergenceError
from .cluster.checkpoint_store import CheckpointMismatchError, CheckpointMissingError

# Every error a program may meet is importable from here (and from the module
# that defines it); tests/docs/test_api.py keeps this list complete.
from .cluster.client import SessionEvictedError
from .cluster.errors import ClusterError, ProtocolInvariantError
from .cluster.storage import ClusterIdentityError
from .cluster.tcp import AddressError, FrameError
from .cluster.tcp_codec import MessageDecodeError
from .cluster.tls import TlsConfigError, TlsIdentityError
from .codec import UndecodableError, UnencodableError
from .coordinator import (
    InvalidSnapshotOpError,
    NoValidSnapshotError,
    SnapshotEncodeError,
    SnapshotFormatError,
    SnapshotTransferError,
)
from .errors import (
    BodyTooLargeError,
    ClosedError,
    CommandEncodingError,
    CorruptionError,
    DirectoryLockedError,
    FatalStorageError,
    ForeignDataError,
    FormatError,
    InvalidAppendError,
    InvalidCommand,
    JournalError,
    JournalFull,
    LockError,
    MachineVersionError,
    NotRegularFileError,
    ReplicaError,
    ReplicaKindError,
    ReplicaStoppedError,
    SnapshotDirSyncError,
    SnapshotError,
    SnapshotRenameError,
    SnapshotSyncError,
    SnapshotWriteError,
    StateMachineError,
    StorageError,
)
from .journal import CompactedError, InvalidWatermarkError, JournalBusyError, OpNotFoundError
from .journal.superblock import UnsupportedFormatError
from .replica import (
    Applied,
    BatchRejectedError,
    CommandTooLargeError,
    InvalidSettingError,
    RecoveryReport,
    Replica,
    ReplicaClosedError,
    ReplicaStats,
    open_replica,
    serve_replica,
)
from .stm import StateMachine
from .stm.mux import StateRestoreError

__all__ = [
    "Applied",
    "BodyTooLargeError",
    "ClosedError",
    "ClusterError",
    "ClusterIdentityError",
    "CheckpointMismatchError",
    "CheckpointMissingError",
    "StateDivergenceError",
    "SessionEvictedError",
    "AddressError",
    "FrameError",
    "MessageDecodeError",
    "TlsConfigError",
    "TlsIdentityError",
    "CommandEncodingError",
    "BatchRejectedError",
    "CommandTooLargeError",
    "CompactedError",
    "CorruptionError",
    "DirectoryLockedError",
    "FatalStorageError",
    "ForeignDataError",
    "FormatError",
    "InvalidAppendError",
    "LockError",
    "MachineVersionError",
    "NotRegularFileError",
    "UnsupportedFormatError",
    "InvalidCommand",
    "InvalidSettingError",
    "InvalidSnapshotOpError",
    "InvalidWatermarkError",
    "JournalBusyError",
    "JournalError",
    "JournalFull",
    "NoValidSnapshotError",
    "OpNotFoundError",
    "ProtocolInvariantError",
    "RecoveryReport",
    "Replica",
    "ReplicaClosedError",
    "ReplicaError",
    "ReplicaKindError",
    "ReplicaStats",
    "ReplicaStoppedError",
    "SnapshotDirSyncError",
    "SnapshotEncodeError",
    "SnapshotError",
    "SnapshotTransferError",
    "SnapshotFormatError",
    "SnapshotRenameError",
    "SnapshotSyncError",
    "SnapshotWriteError",
    "StateMachine",
    "StateMachineError",
    "StateRestoreError",
    "StorageError",
    "UndecodableError",
    "UnencodableError",
    "open_replica",
    "serve_replica",
]

# A library logs, the application decides where to: without this, Python's
# last-resort handler would print our warnings to stderr unasked.
logging.getLogger("trio_replica").addHandler(logging.NullHandler())

__version__ = "0.1.0"
"""The package version: written only here (the build reads it from this line)."""
