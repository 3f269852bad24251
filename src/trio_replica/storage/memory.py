"""An in-memory directory tree: fast, deterministic, and without crashes.

Everything written is immediately "durable" (there is no page cache to lose).
For crash semantics use :class:`trio_replica.testing.SimulatedDisk`, which
models what a power loss may leave behind.
"""

from __future__ import annotations

import os

from ..errors import DirectoryLockedError

__all__ = ["InProcessLock", "MemoryDirectory", "MemoryFile"]


class MemoryFile:
    """A file whose bytes live in a shared ``bytearray``."""

    def __init__(self, path: str, data: bytearray) -> None:
        self._path = path
        self._data = data
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"file {self._path} is closed")

    def read_at(self, offset: int, size: int) -> bytes:
        self._check()
        return bytes(self._data[offset : offset + size])

    def write_at(self, offset: int, data: bytes) -> None:
        self._check()
        end = offset + len(data)
        if offset > len(self._data):
            self._data.extend(bytes(offset - len(self._data)))
        self._data[offset:end] = data

    def append(self, data: bytes) -> int:
        offset = len(self._data)
        self.write_at(offset, data)
        return offset

    def truncate(self, size: int) -> None:
        self._check()
        if size < len(self._data):
            del self._data[size:]
        else:
            self._data.extend(bytes(size - len(self._data)))

    def sync(self) -> None:
        self._check()

    def size(self) -> int:
        self._check()
        return len(self._data)

    def drop_cache(self) -> None:
        """Nothing is cached apart from the data itself: a no-op."""

    def link_count(self) -> int:
        """Always 1: a memory directory does not model unlinking an open file."""
        return 1

    def close(self) -> None:
        self._closed = True


class InProcessLock:
    """An exclusive lock on a name in a set of held names, for directories
    that live in this process (in memory, simulated). Released once."""

    def __init__(self, held: set[str], name: str) -> None:
        self._held = held
        self._name: str | None = name

    @classmethod
    def acquire(cls, held: set[str], name: str, *, directory: str) -> InProcessLock:
        """Take ``name`` in ``held``, or raise DirectoryLockedError if it is taken."""
        if name in held:
            raise DirectoryLockedError(
                f"data directory {directory} is in use (lock {name} is held)",
                path=directory,
                stage="lock",
            )
        held.add(name)
        return cls(held, name)

    def release(self) -> None:
        if self._name is not None:
            self._held.discard(self._name)
            self._name = None


class MemoryDirectory:
    """A directory of in-memory files and subdirectories."""

    def __init__(self, path: str = "mem:") -> None:
        self._path = path
        self._files: dict[str, bytearray] = {}
        self._dirs: dict[str, MemoryDirectory] = {}
        self._locks: set[str] = set()

    @property
    def blocking(self) -> bool:
        return False

    @property
    def path(self) -> str:
        return self._path

    def path_of(self, name: str) -> str:
        return f"{self._path.rstrip('/')}/{name}"

    def _valid(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"invalid file name {name!r}")
        return name

    def open(self, name: str, *, create: bool = False) -> MemoryFile:
        self._valid(name)
        if name in self._dirs:
            raise IsADirectoryError(self.path_of(name))
        if create:
            if name in self._files:
                raise FileExistsError(self.path_of(name))
            self._files[name] = bytearray()
        elif name not in self._files:
            raise FileNotFoundError(self.path_of(name))
        return MemoryFile(self.path_of(name), self._files[name])

    def listdir(self) -> list[str]:
        return sorted([*self._files, *self._dirs])

    def exists(self, name: str) -> bool:
        return name in self._files or name in self._dirs

    def is_dir(self, name: str) -> bool:
        return name in self._dirs

    def rename(self, src: str, dst: str) -> None:
        self._valid(dst)
        if src not in self._files:
            raise FileNotFoundError(self.path_of(src))
        self._files[dst] = self._files.pop(src)

    def unlink(self, name: str) -> None:
        if name not in self._files:
            raise FileNotFoundError(self.path_of(name))
        del self._files[name]

    def sync(self) -> None:
        pass

    def subdir(self, name: str, *, create: bool = False) -> MemoryDirectory:
        self._valid(name)
        if name in self._dirs:
            return self._dirs[name]
        if name in self._files:
            raise NotADirectoryError(self.path_of(name))
        if not create:
            raise FileNotFoundError(self.path_of(name))
        sub = MemoryDirectory(self.path_of(name))
        self._dirs[name] = sub
        return sub

    def random_bytes(self, n: int) -> bytes:
        """``os.urandom(n)``."""
        return os.urandom(n)

    def lock(self, name: str) -> InProcessLock:
        self._valid(name)
        lock = InProcessLock.acquire(self._locks, name, directory=self._path)
        self._files.setdefault(name, bytearray())
        return lock

    def __repr__(self) -> str:
        return f"MemoryDirectory({self._path!r})"
