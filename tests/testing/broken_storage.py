"""Deliberately broken storage, to show the crash checks catch real bugs.

Each wrapper is a ``Directory`` over a :class:`SimulatedDisk` directory that
silently skips one kind of fsync, turning correct code into the classic bug:

* :class:`SkipFileSync`: file fsyncs do nothing, so a journal on it acks
  before its data is durable;
* :class:`SkipDirSync`: directory fsyncs do nothing, so a snapshot store on
  it renames into place without making the rename durable.

``only`` restricts the bug to subdirectories with that name (``"wal"``,
``"snapshots"``), so the rest of the code under test keeps working.
"""

from __future__ import annotations

from trio_replica.storage import Directory, ForwardingDirectory, ForwardingStorage, Storage


class _NoSyncFile(ForwardingStorage):
    def sync(self) -> None:
        pass  # the bug: claims durability without asking the disk


class _Wrapper(ForwardingDirectory):
    skip_file_sync = False
    skip_dir_sync = False

    def __init__(self, inner: Directory, *, only: str | None = None, active: bool = True) -> None:
        super().__init__(inner)
        self._only = only
        self._active = active and only is None

    def wrap_file(self, storage: Storage) -> Storage:
        return _NoSyncFile(storage) if self._active and self.skip_file_sync else storage

    def sync(self) -> None:
        if not (self._active and self.skip_dir_sync):
            self.inner.sync()

    def subdir(self, name: str, *, create: bool = False) -> Directory:
        inner = self.inner.subdir(name, create=create)
        return type(self)(inner, only=None, active=self._active or name == self._only)


class SkipFileSync(_Wrapper):
    """A Directory whose files' fsync does nothing."""

    skip_file_sync = True


class SkipDirSync(_Wrapper):
    """A Directory whose own fsync (making renames, creates, unlinks durable) does nothing."""

    skip_dir_sync = True
