"""Opening a data directory for the read-only tools, without writing a byte.

``inspect`` and ``verify`` never change a data directory, not even a lock
file, and never keep a replica from starting: they take no lock. Whether a
replica holds the directory is asked with a momentary shared ``flock``
probe on the directory itself (released at once; an opener retries for
about 0.1 s, so it never meets it). While a replica runs, what a reader
sees is advisory (files change under it: the in-flight batch looks like a
torn tail), and the tools say so.
"""

from __future__ import annotations

import os

from ..layout import LOCK_NAME, SNAPSHOT_DIR, SUPERBLOCK_NAME, WAL_DIR
from ..storage import OsDirectory
from ..storage.osfs import is_held, read_holder
from .errors import UsageError

__all__ = ["LOCK_NAME", "SNAPSHOT_DIR", "WAL_DIR", "open_data_dir", "running_note"]


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
    if not any(os.path.isdir(os.path.join(path, sub)) for sub in (WAL_DIR, SNAPSHOT_DIR)) and (
        not os.path.lexists(os.path.join(path, SUPERBLOCK_NAME))
    ):
        raise UsageError(
            f"{path} is not a replica data directory (it has no {WAL_DIR}/ "
            f"or {SNAPSHOT_DIR}/ subdirectory)"
        )
    return OsDirectory(path, read_only=read_only)


def running_note(directory: OsDirectory) -> str | None:
    """A note saying the view is advisory when a replica holds ``directory``, else None."""
    try:
        held = is_held(directory.path)
    except OSError:
        return None
    if not held:
        return None
    holder = read_holder(directory.path_of(LOCK_NAME))
    who = f" ({holder})" if holder else ""
    return (
        f"note: data directory {directory.path} is in use by a running replica{who}; "
        "this is an advisory view: files change while they are read, so the newest "
        "batch may look torn and files may come and go"
    )
