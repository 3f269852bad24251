"""The demo's data directory: start empty, and never delete anything not ours.

The demo deletes its previous data on every run, so it must be sure what it
deletes. It marks each directory it creates with a ``DEMO`` file, and it
removes an existing directory only when that marker is there, everything
else in it is replica data (the names of :mod:`trio_replica.layout`:
``LOCK``, ``superblock``, ``wal/``, ``snapshots/``, the directories holding
plain files only), and no replica has it open. Anything else is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...layout import LOCK_NAME, SNAPSHOT_DIR, SUPERBLOCK_NAME, SUPERBLOCK_TEMP_NAME, WAL_DIR
from ...storage import OsDirectory
from ..errors import UsageError

__all__ = ["MARKER_NAME", "prepare_demo_dir"]

MARKER_NAME = "DEMO"
_MARKER_TEXT = (
    "This directory was created by `trio-replica demo`, which deletes it and\n"
    "starts over each time it runs with this directory.\n"
)
_REPLICA_ENTRIES = frozenset(
    {LOCK_NAME, SUPERBLOCK_NAME, SUPERBLOCK_TEMP_NAME, WAL_DIR, SNAPSHOT_DIR}
)


def _is_previous_demo(path: Path, entries: list[str]) -> bool:
    if MARKER_NAME not in entries or not set(entries) <= _REPLICA_ENTRIES | {MARKER_NAME}:
        return False
    for name in entries:
        entry = path / name
        if name in (WAL_DIR, SNAPSHOT_DIR):
            if entry.is_symlink() or not entry.is_dir():
                return False
            if any(child.is_symlink() or not child.is_file() for child in entry.iterdir()):
                return False
        elif entry.is_symlink() or not entry.is_file():
            return False
    return True


def prepare_demo_dir(path: Path) -> bool:
    """Make ``path`` an empty demo directory; return whether old demo data was removed.

    Raises :class:`~trio_replica.cli.errors.UsageError` for a path that is
    not a directory, or a non-empty directory the demo did not create, and
    :class:`~trio_replica.errors.DirectoryLockedError` when a replica is
    running in it.
    """
    removed = False
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"{path} exists and is not a directory")
    if path.exists():
        entries = sorted(os.listdir(path))
        if entries:
            if not _is_previous_demo(path, entries):
                shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
                raise UsageError(
                    f"refusing to delete {path}: it is not a directory the demo created "
                    f"(it holds: {shown}); pass --dir with a new or empty directory"
                )
            # The exclusive lock proves no replica is writing there now.
            lock = OsDirectory(path).lock(LOCK_NAME)
            try:
                shutil.rmtree(path)
            finally:
                lock.release()
            removed = True
    directory = OsDirectory.open_path(path, create=True)
    marker = directory.open(MARKER_NAME, create=True)
    try:
        marker.write_at(0, _MARKER_TEXT.encode())
        marker.sync()
    finally:
        marker.close()
    directory.sync()
    return removed
