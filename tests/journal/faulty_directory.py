"""A Directory wrapper for fault tests: failing fsyncs/writes/unlinks, and a gate on sync.

It wraps any Directory (usually a MemoryDirectory) and passes everything
through, except that it can raise ``OSError`` from file ``sync``/``write_at``
or directory ``unlink``/``sync`` after a countdown, and can block file syncs
on a ``threading.Event`` (it then reports ``blocking=True`` so ``run_io``
runs the batch in a worker thread, letting a second task run meanwhile).
"""

from __future__ import annotations

import errno
import threading

from trio_replica.storage import Directory, ForwardingDirectory, ForwardingStorage, Storage


class Faults:
    """Countdowns: ``None`` never fails; ``n`` lets n calls pass, then every call fails."""

    def __init__(self) -> None:
        self.file_sync: int | None = None
        self.file_write: int | None = None
        self.dir_sync: int | None = None
        self.unlink: int | None = None
        self.gate: threading.Event | None = None
        self.in_sync = threading.Event()
        self.calls: list[str] = []

    def hit(self, what: str) -> None:
        self.calls.append(what)
        left = getattr(self, what)
        if left is None:
            return
        if left <= 0:
            raise OSError(errno.EIO, f"injected {what} failure")
        setattr(self, what, left - 1)


class FaultyFile(ForwardingStorage):
    def __init__(self, inner: Storage, faults: Faults) -> None:
        super().__init__(inner)
        self._faults = faults

    def write_at(self, offset: int, data: bytes) -> None:
        self._faults.hit("file_write")
        self.inner.write_at(offset, data)

    def append(self, data: bytes) -> int:
        self._faults.hit("file_write")
        return self.inner.append(data)

    def sync(self) -> None:
        self._faults.in_sync.set()
        if self._faults.gate is not None:
            self._faults.gate.wait(10)
        self._faults.hit("file_sync")
        self.inner.sync()


class FaultyDirectory(ForwardingDirectory):
    def __init__(self, inner: Directory, faults: Faults | None = None) -> None:
        super().__init__(inner)
        self.faults = faults or Faults()

    def wrap_file(self, storage: Storage) -> Storage:
        return FaultyFile(storage, self.faults)

    def wrap_directory(self, directory: Directory) -> Directory:
        return FaultyDirectory(directory, self.faults)

    @property
    def blocking(self) -> bool:
        return self.faults.gate is not None or self.inner.blocking

    def unlink(self, name: str) -> None:
        self.faults.hit("unlink")
        self.inner.unlink(name)

    def sync(self) -> None:
        self.faults.hit("dir_sync")
        self.inner.sync()
