"""The names inside a data directory, declared once.

``<data>/LOCK`` is the lock file every opener takes, ``<data>/superblock``
the directory's identity and journal-end evidence (``superblock.tmp`` while
a new one is written), ``<data>/wal/`` holds the journal's segments and
``<data>/snapshots/`` the snapshot files (see docs/format.md for what each
file holds). Every module that names one of them imports it from here.
"""

from __future__ import annotations

__all__ = ["LOCK_NAME", "SNAPSHOT_DIR", "SUPERBLOCK_NAME", "SUPERBLOCK_TEMP_NAME", "WAL_DIR"]

LOCK_NAME = "LOCK"
"""The lock file in the data directory."""

SUPERBLOCK_NAME = "superblock"
"""The directory's identity and journal-end evidence (``journal/superblock.py``)."""

SUPERBLOCK_TEMP_NAME = "superblock.tmp"
"""Where a new superblock is written before it atomically replaces the old one."""

WAL_DIR = "wal"
"""The journal's subdirectory."""

SNAPSHOT_DIR = "snapshots"
"""The snapshot store's subdirectory."""
