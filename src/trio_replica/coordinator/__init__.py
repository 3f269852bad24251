"""Snapshots on disk: the atomic, checksummed snapshot store (invariant 6, docs/invariants.md).

:class:`SnapshotStore` persists :class:`Snapshot` values in
``<data>/snapshots`` and loads the newest valid one; ``snapshot_format``
holds the file format and ``store.verify_snapshots`` the read-only check.
The snapshot coordinator task (``task.py``) lives here, next to the state
it owns: the store.
"""

from __future__ import annotations

from ..errors import (
    SnapshotDirSyncError,
    SnapshotError,
    SnapshotRenameError,
    SnapshotSyncError,
    SnapshotWriteError,
)
from .snapshot import Snapshot, SnapshotInfo
from .snapshot_format import SnapshotEncodeError, SnapshotFormatError
from .store import InvalidSnapshotOpError, NoValidSnapshotError, SnapshotStore, verify_snapshots
from .task import SnapshotCoordinator
from .transfer import SnapshotTransferError

__all__ = [
    "InvalidSnapshotOpError",
    "NoValidSnapshotError",
    "Snapshot",
    "SnapshotCoordinator",
    "SnapshotDirSyncError",
    "SnapshotEncodeError",
    "SnapshotError",
    "SnapshotFormatError",
    "SnapshotInfo",
    "SnapshotRenameError",
    "SnapshotStore",
    "SnapshotSyncError",
    "SnapshotTransferError",
    "SnapshotWriteError",
    "verify_snapshots",
]
