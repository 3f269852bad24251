"""Real files: positional I/O on file descriptors, fsync done right.

Durability on this platform:

* Linux and most Unixes: ``fdatasync`` for file data and size.
* macOS: ``fcntl(F_FULLFSYNC)``, because plain ``fsync`` there does not
  flush the drive's write cache.
* Directory entries (create, rename, unlink) are made durable by fsyncing
  the directory's own file descriptor.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
from pathlib import Path

from ..errors import DirectoryLockedError, LockError, NotRegularFileError, StorageError

__all__ = ["OsDirectory", "OsFile", "OsLock", "full_sync", "is_held", "read_holder"]

_FULLFSYNC = getattr(fcntl, "F_FULLFSYNC", None)


def full_sync(fd: int) -> None:
    """Make the data (and size) of ``fd`` durable, the strongest way the OS offers."""
    if sys.platform == "darwin" and _FULLFSYNC is not None:
        fcntl.fcntl(fd, _FULLFSYNC)
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - platforms without fdatasync
        os.fsync(fd)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        # A directory is synced with fsync (metadata is the point here).
        if sys.platform == "darwin" and _FULLFSYNC is not None:
            fcntl.fcntl(fd, _FULLFSYNC)
        else:
            os.fsync(fd)
    finally:
        os.close(fd)


class OsFile:
    """One real file, opened read-write, accessed with pread/pwrite."""

    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd: int | None = fd
        self._size = os.fstat(fd).st_size

    @property
    def path(self) -> str:
        return self._path

    def _require_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"file {self._path} is closed")
        return self._fd

    def read_at(self, offset: int, size: int) -> bytes:
        fd = self._require_fd()
        chunks: list[bytes] = []
        remaining = size
        while remaining > 0:
            chunk = os.pread(fd, remaining, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def write_at(self, offset: int, data: bytes) -> None:
        fd = self._require_fd()
        view = memoryview(data)
        position = offset
        while view:
            written = os.pwrite(fd, view, position)
            view = view[written:]
            position += written
        self._size = max(self._size, offset + len(data))

    def append(self, data: bytes) -> int:
        offset = self._size
        self.write_at(offset, data)
        return offset

    def truncate(self, size: int) -> None:
        os.ftruncate(self._require_fd(), size)
        self._size = size

    def sync(self) -> None:
        full_sync(self._require_fd())

    def size(self) -> int:
        return self._size

    def drop_cache(self) -> None:
        advise = getattr(os, "posix_fadvise", None)
        if advise is not None:
            advise(self._require_fd(), 0, 0, os.POSIX_FADV_DONTNEED)
        # Re-read the size: it may have been set by pages that are gone.
        self._size = os.fstat(self._require_fd()).st_size

    def link_count(self) -> int:
        return os.fstat(self._require_fd()).st_nlink

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


_LOCK_ATTEMPTS = 20
_LOCK_RETRY_SECONDS = 0.005


class OsLock:
    """An exclusive ``flock`` on the data directory's own descriptor.

    The lock is on the directory inode, not on a file in it, so removing,
    replacing or recreating ``LOCK`` (an operator clearing a "stale lock")
    never lets a second opener in. ``flock`` locks belong to the open file
    description, so a second opener in the same process is refused exactly
    like another process.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def read_holder(path: str) -> str | None:
    """What the lock file at ``path`` says about its holder (``"pid 123"``), or None.

    Never blocks (a FIFO named LOCK is not read) and never raises.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return text or None


def _write_holder(path: str) -> None:
    # Advisory: it only lets the next opener's error say who holds the
    # directory. The lock itself does not depend on this file, so a LOCK
    # that cannot be written (read-only file system, a directory in its
    # place) is no error.
    try:
        fd = os.open(
            path,
            os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
            0o644,
        )
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def is_held(path: str) -> bool:
    """Whether a replica (or repair) holds the data directory at ``path`` now.

    For the read-only tools: a shared ``flock`` probe, released at once, so
    it never keeps a replica from starting (an opener retries for about
    0.1 s before it gives up). Never writes. ``OSError`` if the directory
    cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class OsDirectory:
    """A real directory on the local file system.

    With ``read_only=True`` files are opened ``O_RDONLY`` (so tools that only
    read work on a read-only copy or mount, and cannot write by accident) and
    every operation that would change the directory raises ``PermissionError``.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self._path = os.fspath(Path(path))
        self._read_only = read_only

    @property
    def read_only(self) -> bool:
        """Whether this directory refuses every change."""
        return self._read_only

    def _check_writable(self, what: str, name: str) -> None:
        if self._read_only:
            raise PermissionError(
                errno.EROFS, f"{what} refused: directory opened read-only", self._child(name)
            )

    @classmethod
    def open_path(cls, path: str | os.PathLike[str], *, create: bool) -> OsDirectory:
        """Open directory ``path``; with ``create`` make it (and parents) durably.

        Blocking: call from a worker thread or before the event loop runs.
        """
        p = Path(path)
        if p.is_dir():
            return cls(p)
        if p.exists():
            raise StorageError(f"{p} exists and is not a directory", path=str(p), stage="open")
        if not create:
            raise StorageError(f"directory {p} does not exist", path=str(p), stage="open")
        missing = []
        probe = p
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        p.mkdir(parents=True, exist_ok=True)
        # Make every new entry durable in its parent, innermost parent last.
        for new in reversed(missing):
            _sync_dir(str(new.parent))
        return cls(p)

    @property
    def blocking(self) -> bool:
        return True

    @property
    def path(self) -> str:
        return self._path

    def path_of(self, name: str) -> str:
        return os.path.join(self._path, name)

    def _child(self, name: str) -> str:
        if not name or "/" in name or name in (".", "..") or os.sep in name:
            raise ValueError(f"invalid file name {name!r}")
        return os.path.join(self._path, name)

    def open(self, name: str, *, create: bool = False) -> OsFile:
        path = self._child(name)
        if create:
            self._check_writable("create", name)
        access = os.O_RDONLY if self._read_only else os.O_RDWR
        flags = access | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        # O_NONBLOCK: opening a FIFO named like a data file must not block
        # (it has no effect on regular files); anything but a regular file is
        # refused by name before a byte is read.
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o644)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise NotRegularFileError(
                    f"{path} is not a regular file ({_kind(mode)}); refusing to read it",
                    path=path,
                    stage="open",
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return OsFile(path, fd)

    def listdir(self) -> list[str]:
        return sorted(os.listdir(self._path))

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._child(name))

    def is_dir(self, name: str) -> bool:
        return os.path.isdir(self._child(name))

    def rename(self, src: str, dst: str) -> None:
        self._check_writable("rename", src)
        os.replace(self._child(src), self._child(dst))

    def unlink(self, name: str) -> None:
        self._check_writable("unlink", name)
        os.unlink(self._child(name))

    def sync(self) -> None:
        _sync_dir(self._path)

    def subdir(self, name: str, *, create: bool = False) -> OsDirectory:
        path = self._child(name)
        if os.path.isdir(path):
            return OsDirectory(path, read_only=self._read_only)
        if not create:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        self._check_writable("mkdir", name)
        os.mkdir(path)
        self.sync()
        return OsDirectory(path)

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def lock(self, name: str) -> OsLock:
        """Take the exclusive lock on this directory; note the holder in file ``name``.

        Raises :class:`DirectoryLockedError` (with ``holder`` when the
        holder noted it) when another opener has it, and
        :class:`~trio_replica.errors.LockError` when the directory cannot be
        opened or locked at all. Retries for about 0.1 s, so the momentary
        shared probe of a read-only tool (:func:`is_held`) never refuses it.
        """
        self._check_writable("lock", name)
        path = self._child(name)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._path, flags)
        except OSError as exc:
            raise LockError(
                f"cannot open data directory {self._path} to lock it: {exc}",
                path=self._path,
                stage="lock",
            ) from exc
        try:
            for attempt in range(_LOCK_ATTEMPTS):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == _LOCK_ATTEMPTS - 1:
                        holder = read_holder(path)
                        who = f" ({holder}, as noted in {path})" if holder else ""
                        raise DirectoryLockedError(
                            f"data directory {self._path} is in use by another replica or "
                            f"process{who}",
                            path=self._path,
                            stage="lock",
                            holder=holder,
                        ) from None
                    time.sleep(_LOCK_RETRY_SECONDS)
                except OSError as exc:
                    raise LockError(
                        f"cannot lock data directory {self._path}: {exc}",
                        path=self._path,
                        stage="lock",
                    ) from exc
        except BaseException:
            os.close(fd)
            raise
        _write_holder(path)
        return OsLock(fd)

    def __repr__(self) -> str:
        return f"OsDirectory({self._path!r})"
