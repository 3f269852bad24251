"""Storage: the seam between trio-replica and a disk.

:class:`Storage` and :class:`Directory` are the protocols; :class:`OsDirectory`
is the real file system, :class:`MemoryDirectory` an in-memory one, and
:func:`run_io` runs a batch of blocking calls off the Trio thread.
:func:`open_directory` turns what a user passes (a path or a ``Directory``)
into a ``Directory``.
"""

from __future__ import annotations

import os

import trio

from .base import Directory, DirectoryLock, Storage
from .io import run_io
from .memory import InProcessLock, MemoryDirectory, MemoryFile
from .osfs import OsDirectory, OsFile, full_sync

__all__ = [
    "Directory",
    "DirectoryLike",
    "DirectoryLock",
    "InProcessLock",
    "MemoryDirectory",
    "MemoryFile",
    "OsDirectory",
    "OsFile",
    "Storage",
    "full_sync",
    "open_directory",
    "run_io",
]

DirectoryLike = str | os.PathLike[str] | Directory
"""What the public API accepts as a data directory: a path or a :class:`Directory`."""


async def open_directory(target: DirectoryLike, *, create: bool) -> Directory:
    """Resolve ``target`` to a :class:`Directory`.

    A path is opened as an :class:`OsDirectory` (created durably, with its
    parents, when ``create`` is true) in a worker thread. A ``Directory``
    (for example a :class:`~trio_replica.testing.SimulatedDisk`) is used as is.
    """
    if not isinstance(target, (str, os.PathLike)):
        if isinstance(target, Directory):
            return target
        raise TypeError(f"expected a path or a Directory, got {type(target).__name__}")
    path = target
    return await trio.to_thread.run_sync(lambda: OsDirectory.open_path(path, create=create))
