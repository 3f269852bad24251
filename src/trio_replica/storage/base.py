"""The storage protocols: what the journal and the snapshot store need from a disk.

Two small protocols keep every byte of I/O behind one seam, so the same
journal and snapshot code runs on real files, in memory, and on the
fault-injecting :class:`~trio_replica.testing.SimulatedDisk`:

* :class:`Storage` is one open file with positional I/O.
* :class:`Directory` is one directory of named files and subdirectories,
  with the directory-level operations whose durability matters (create,
  rename, unlink, directory fsync) and an exclusive lock.

Both are *synchronous*. Callers group the calls of one batch into a single
function and run it with :func:`trio_replica.storage.run_io`, which pays one
worker-thread hop per batch for a blocking implementation and none for an
in-memory one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Directory", "DirectoryLock", "Storage"]


class Storage(Protocol):
    """One open file. Not thread-safe: one batch at a time uses it."""

    @property
    def path(self) -> str:
        """A human-readable location of the file, for error messages."""
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``; shorter only at end of file."""
        ...

    def write_at(self, offset: int, data: bytes) -> None:
        """Write all of ``data`` at ``offset`` (extending the file if needed)."""
        ...

    def append(self, data: bytes) -> int:
        """Write ``data`` at the current end of file; return the offset it starts at."""
        ...

    def truncate(self, size: int) -> None:
        """Set the file's size to ``size`` (not durable until :meth:`sync`)."""
        ...

    def sync(self) -> None:
        """Make the file's data and size durable (fdatasync, F_FULLFSYNC on macOS).

        A failure raises ``OSError``; callers must treat it as fatal.
        """
        ...

    def size(self) -> int:
        """The current size of the file in bytes."""
        ...

    def drop_cache(self) -> None:
        """Drop the file's clean cached pages, so the next reads come from the device.

        On Linux ``posix_fadvise(POSIX_FADV_DONTNEED)``: after a failed fsync
        the kernel keeps the unwritten pages cached but marked clean, so a
        read would show bytes that are not on the disk; dropping them first
        makes recovery judge only what the disk holds. Dirty pages stay (and
        a later fsync makes them durable). Never changes the file.
        """
        ...

    def link_count(self) -> int:
        """How many directory entries name this file (0: it was unlinked while open)."""
        ...

    def close(self) -> None:
        """Release the file. Idempotent."""
        ...


class DirectoryLock(Protocol):
    """An exclusive lock on a directory, held until :meth:`release`."""

    def release(self) -> None:
        """Release the lock. Idempotent."""
        ...


@runtime_checkable
class Directory(Protocol):
    """A directory of named files and subdirectories.

    Names are single path components (no separators). Creating, renaming and
    unlinking a file is durable only after :meth:`sync` of this directory;
    callers that need it durable must call it (invariant 5, docs/invariants.md).
    """

    @property
    def blocking(self) -> bool:
        """True when calls block on real I/O and must run in a worker thread."""
        ...

    @property
    def path(self) -> str:
        """A human-readable location of the directory, for error messages."""
        ...

    def path_of(self, name: str) -> str:
        """The human-readable location of ``name`` inside this directory."""
        ...

    def open(self, name: str, *, create: bool = False) -> Storage:
        """Open file ``name`` for reading and writing.

        With ``create=True`` the file must not exist yet (``FileExistsError``)
        and is created empty; otherwise it must exist (``FileNotFoundError``).
        """
        ...

    def listdir(self) -> list[str]:
        """Names of the files and subdirectories, sorted."""
        ...

    def exists(self, name: str) -> bool:
        """Whether a file or subdirectory ``name`` exists."""
        ...

    def is_dir(self, name: str) -> bool:
        """Whether ``name`` exists and is a subdirectory."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename file ``src`` to ``dst``, replacing ``dst``."""
        ...

    def unlink(self, name: str) -> None:
        """Remove file ``name``."""
        ...

    def sync(self) -> None:
        """fsync the directory itself, making creates, renames and unlinks durable."""
        ...

    def subdir(self, name: str, *, create: bool = False) -> Directory:
        """The subdirectory ``name``.

        With ``create=True`` it is created when missing, and this directory is
        synced so that the new entry is durable. Without it, a missing
        subdirectory raises ``FileNotFoundError``.
        """
        ...

    def random_bytes(self, n: int) -> bytes:
        """``n`` random bytes, for identities made in this directory.

        ``os.urandom`` on real and memory directories; drawn from the seed on
        a :class:`~trio_replica.testing.SimulatedDisk`, so a simulated run
        (a new directory id included) replays exactly.
        """
        ...

    def lock(self, name: str) -> DirectoryLock:
        """Take an exclusive lock using lock file ``name`` in this directory.

        Raises :class:`~trio_replica.errors.DirectoryLockedError` when another
        holder (another process, or another opener in this process) has it.
        """
        ...
