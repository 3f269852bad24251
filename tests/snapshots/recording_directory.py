"""A test Directory that records every mutating step and can die or fail at one.

:class:`RecordingDirectory` is an in-memory directory tree that keeps, like a
real kernel, two views: what the running process sees (the page cache) and
what is durable (file contents as of their last fsync, directory entries as
of the directory's last fsync). Every mutating call is one numbered *step*
in :attr:`Recorder.steps`. A test can

* make the process die at step ``k`` (:class:`ProcessDied` is raised instead
  of performing it; a write can first be half performed, leaving a torn
  file), then build what a restart would find with :meth:`after_crash`:
  the process-crash view (everything the process did survives in the page
  cache) or a power-loss view (only what was fsynced, optionally with half of
  the unsynced data, optionally with the unsynced directory entries);
* make one step fail with ``OSError(EIO)`` (:attr:`Recorder.should_fail`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Literal

import attrs

from trio_replica.errors import DirectoryLockedError


class ProcessDied(BaseException):
    """The simulated process died at this step (a BaseException, like a kill)."""


@attrs.define
class Inode:
    data: bytearray
    synced: bytes = b""


@attrs.define
class Recorder:
    steps: list[str] = attrs.Factory(list)
    crash_at: int | None = None
    tear_on_crash: bool = False
    should_fail: Callable[[str, str], bool] | None = None
    largest_read: int = 0

    def step(self, kind: str, label: str, torn: Callable[[], None] | None = None) -> None:
        """Account for one mutating step; die or fail here when told to."""
        index = len(self.steps)
        if self.crash_at is not None and index >= self.crash_at:
            if torn is not None and self.tear_on_crash:
                torn()
                self.steps.append(f"{kind} {label} (torn)")
            raise ProcessDied(f"died at step {index}: {kind} {label}")
        if self.should_fail is not None and self.should_fail(kind, label):
            self.steps.append(f"{kind} {label} (EIO)")
            raise OSError(errno.EIO, f"injected I/O error: {kind}", label)
        self.steps.append(f"{kind} {label}")


class RecordingFile:
    def __init__(self, directory: RecordingDirectory, name: str, inode: Inode) -> None:
        self._dir = directory
        self._name = name
        self._inode = inode
        self._rec = directory.recorder

    @property
    def path(self) -> str:
        return self._dir.path_of(self._name)

    def read_at(self, offset: int, size: int) -> bytes:
        self._rec.largest_read = max(self._rec.largest_read, size)
        return bytes(self._inode.data[offset : offset + size])

    def _write(self, offset: int, data: bytes) -> None:
        buf = self._inode.data
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data

    def write_at(self, offset: int, data: bytes) -> None:
        half = bytes(data[: len(data) // 2])
        self._rec.step(
            "write", f"{self._name}@{offset}+{len(data)}", torn=lambda: self._write(offset, half)
        )
        self._write(offset, bytes(data))

    def append(self, data: bytes) -> int:
        offset = len(self._inode.data)
        self.write_at(offset, data)
        return offset

    def truncate(self, size: int) -> None:
        self._rec.step("truncate", f"{self._name} to {size}")
        del self._inode.data[size:]
        self._inode.data.extend(bytes(size - len(self._inode.data)))

    def sync(self) -> None:
        self._rec.step("fsync", self._name)
        self._inode.synced = bytes(self._inode.data)

    def size(self) -> int:
        return len(self._inode.data)

    def close(self) -> None:
        pass


class _Lock:
    def __init__(self, held: set[str], name: str) -> None:
        self._held = held
        self._name = name

    def release(self) -> None:
        self._held.discard(self._name)


DataView = Literal["volatile", "synced", "torn"]


class RecordingDirectory:
    """An in-memory Directory with a page cache view and a durable view."""

    def __init__(self, path: str = "rec:", recorder: Recorder | None = None) -> None:
        self._path = path
        self.recorder = recorder if recorder is not None else Recorder()
        self.entries: dict[str, Inode] = {}
        self.durable_entries: dict[str, Inode] = {}
        self.subdirs: dict[str, RecordingDirectory] = {}
        self.durable_subdirs: set[str] = set()
        self._locks: set[str] = set()

    # --- Directory protocol ----------------------------------------------

    @property
    def blocking(self) -> bool:
        return False

    @property
    def path(self) -> str:
        return self._path

    def path_of(self, name: str) -> str:
        return f"{self._path.rstrip('/')}/{name}"

    def open(self, name: str, *, create: bool = False) -> RecordingFile:
        if create:
            if name in self.entries or name in self.subdirs:
                raise FileExistsError(errno.EEXIST, "exists", self.path_of(name))
            self.recorder.step("create", name)
            self.entries[name] = Inode(bytearray())
        elif name not in self.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.path_of(name))
        return RecordingFile(self, name, self.entries[name])

    def listdir(self) -> list[str]:
        return sorted([*self.entries, *self.subdirs])

    def exists(self, name: str) -> bool:
        return name in self.entries or name in self.subdirs

    def is_dir(self, name: str) -> bool:
        return name in self.subdirs

    def rename(self, src: str, dst: str) -> None:
        if src not in self.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.path_of(src))
        self.recorder.step("rename", f"{src} -> {dst}")
        self.entries[dst] = self.entries.pop(src)

    def unlink(self, name: str) -> None:
        if name not in self.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.path_of(name))
        self.recorder.step("unlink", name)
        del self.entries[name]

    def sync(self) -> None:
        self.recorder.step("dirsync", self._path)
        self.durable_entries = dict(self.entries)
        self.durable_subdirs = set(self.subdirs)

    def subdir(self, name: str, *, create: bool = False) -> RecordingDirectory:
        if name in self.subdirs:
            return self.subdirs[name]
        if name in self.entries:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", self.path_of(name))
        if not create:
            raise FileNotFoundError(errno.ENOENT, "no such directory", self.path_of(name))
        self.recorder.step("mkdir", name)
        sub = RecordingDirectory(self.path_of(name), self.recorder)
        self.subdirs[name] = sub
        self.sync()  # the protocol: a created subdirectory is made durable
        return sub

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def lock(self, name: str) -> _Lock:
        if name in self._locks:
            raise DirectoryLockedError(f"{name} is held", path=self._path, stage="lock")
        self._locks.add(name)
        return _Lock(self._locks, name)

    # --- inspection and corruption, for tests ----------------------------

    def after_crash(
        self,
        *,
        entries: Literal["volatile", "durable"] = "volatile",
        data: DataView = "volatile",
    ) -> RecordingDirectory:
        """What a restart finds, as a new, fully synced tree with a new recorder.

        ``entries="volatile", data="volatile"`` is a process crash: the kernel
        still has everything. The other combinations are power losses:
        ``entries="durable"`` keeps only directory entries as of each
        directory's last fsync; ``data="synced"`` keeps only fsynced file
        contents, ``data="torn"`` additionally half of what was appended since.
        """
        return self._copy(entries, data, Recorder(), self._path)

    def _copy(
        self, entries: str, data: DataView, recorder: Recorder, path: str
    ) -> RecordingDirectory:
        new = RecordingDirectory(path, recorder)
        source = self.entries if entries == "volatile" else self.durable_entries
        for name, inode in source.items():
            if data == "volatile":
                content = bytes(inode.data)
            elif data == "synced":
                content = inode.synced
            else:
                content = _torn(inode)
            new.entries[name] = Inode(bytearray(content), content)
        names = self.subdirs if entries == "volatile" else self.durable_subdirs
        for name in names:
            new.subdirs[name] = self.subdirs[name]._copy(entries, data, recorder, new.path_of(name))
        new.durable_entries = dict(new.entries)
        new.durable_subdirs = set(new.subdirs)
        return new

    def file_bytes(self, name: str) -> bytes:
        return bytes(self.entries[name].data)

    def set_file_bytes(self, name: str, content: bytes) -> None:
        """Replace a file's bytes, durably and without recording a step (for
        injecting corruption that happened at rest)."""
        self.entries[name] = Inode(bytearray(content), content)
        self.durable_entries[name] = self.entries[name]

    def __repr__(self) -> str:
        return f"RecordingDirectory({self._path!r})"


def _torn(inode: Inode) -> bytes:
    # A power loss keeps the synced bytes and, for data appended after the
    # last fsync, some prefix of it: here half.
    current = bytes(inode.data)
    if current.startswith(inode.synced):
        extra = len(current) - len(inode.synced)
        return current[: len(inode.synced) + extra // 2]
    return inode.synced


def fail_nth(kind: str, n: int = 1) -> Callable[[str, str], bool]:
    """A ``should_fail`` that fails only the ``n``-th step of ``kind`` (1-based)."""
    seen = 0

    def should_fail(step_kind: str, label: str) -> bool:
        nonlocal seen
        if step_kind != kind:
            return False
        seen += 1
        return seen == n

    return should_fail
