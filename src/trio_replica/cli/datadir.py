"""Opening a data directory for the read-only tools, without writing a byte.

``inspect`` and ``verify`` must never change a data directory, not even to
create a lock file, yet must refuse one that a running replica is writing
(they would report its in-flight batch as a torn tail). So they take a
*shared* ``flock`` on the existing ``LOCK`` file opened read-only: it
conflicts with a replica's exclusive lock in both directions, lets two
readers run at once, and changes neither bytes nor mtimes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import DirectoryLockedError
from ..layout import LOCK_NAME, SNAPSHOT_DIR, WAL_DIR
from ..storage import OsDirectory
from .errors import UsageError

__all__ = ["LOCK_NAME", "SNAPSHOT_DIR", "WAL_DIR", "open_data_dir", "read_lock"]


def open_data_dir(path: str, *, read_only: bool = False) -> OsDirectory:
    """Return the data directory at ``path``, checked to look like a replica's.

    Raises :class:`UsageError` for a missing path, a file, or a directory
    that has neither a ``wal/`` nor a ``snapshots/`` subdirectory. With
    ``read_only`` (inspect, verify) files are opened read-only, so a
    read-only copy or mount can be checked.
    """
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise UsageError(f"{path} is not a directory")
    if not any(os.path.isdir(os.path.join(path, sub)) for sub in (WAL_DIR, SNAPSHOT_DIR)):
        raise UsageError(
            f"{path} is not a replica data directory (it has no {WAL_DIR}/ "
            f"or {SNAPSHOT_DIR}/ subdirectory)"
        )
    return OsDirectory(path, read_only=read_only)


@contextmanager
def read_lock(directory: OsDirectory) -> Iterator[None]:
    """Hold a shared lock on ``directory`` while reading it; never writes.

    Raises :class:`~trio_replica.errors.DirectoryLockedError` when a replica
    (or a repair) holds the directory. A directory without a ``LOCK`` file
    has never been opened by a replica, so there is nothing to exclude.
    """
    lock_path = directory.path_of(LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryLockedError(
                f"data directory {directory.path} is in use by a running replica "
                f"(lock file {lock_path} is held); stop it first, or copy the "
                "directory and look at the copy",
                path=directory.path,
                stage="lock",
            ) from None
        yield
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)
