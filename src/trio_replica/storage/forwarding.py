"""Base classes for storage wrappers that change a few operations.

Fault injection, fsync counting and deliberately broken variants (for
proving that crash tests catch bugs) all wrap a real :class:`Directory` and
alter one or two calls. :class:`ForwardingDirectory` and
:class:`ForwardingStorage` pass every call through, and keep the wrapping
going down the tree: files opened and subdirectories entered through a
wrapper are wrapped too (override :meth:`ForwardingDirectory.wrap_file` and
:meth:`ForwardingDirectory.wrap_directory` to choose how).
"""

from __future__ import annotations

from .base import Directory, DirectoryLock, Storage

__all__ = ["ForwardingDirectory", "ForwardingStorage"]


class ForwardingStorage:
    """A :class:`Storage` that passes every call to ``inner``."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @property
    def path(self) -> str:
        return self.inner.path

    def read_at(self, offset: int, size: int) -> bytes:
        return self.inner.read_at(offset, size)

    def write_at(self, offset: int, data: bytes) -> None:
        self.inner.write_at(offset, data)

    def append(self, data: bytes) -> int:
        return self.inner.append(data)

    def truncate(self, size: int) -> None:
        self.inner.truncate(size)

    def sync(self) -> None:
        self.inner.sync()

    def size(self) -> int:
        return self.inner.size()

    def drop_cache(self) -> None:
        self.inner.drop_cache()

    def link_count(self) -> int:
        return self.inner.link_count()

    def close(self) -> None:
        self.inner.close()


class ForwardingDirectory:
    """A :class:`Directory` that passes every call to ``inner``.

    :meth:`open` returns ``self.wrap_file(file)`` and :meth:`subdir` returns
    ``self.wrap_directory(subdirectory)``; by default files are returned
    unwrapped and subdirectories are wrapped in the same class, which must
    then accept ``(inner)`` as its only required argument, or override
    :meth:`wrap_directory`.
    """

    def __init__(self, inner: Directory) -> None:
        self.inner = inner

    def wrap_file(self, storage: Storage) -> Storage:
        """Wrap a file opened through this directory (default: unwrapped)."""
        return storage

    def wrap_directory(self, directory: Directory) -> Directory:
        """Wrap a subdirectory entered through this directory (default: same class)."""
        return type(self)(directory)

    @property
    def blocking(self) -> bool:
        return self.inner.blocking

    @property
    def path(self) -> str:
        return self.inner.path

    def path_of(self, name: str) -> str:
        return self.inner.path_of(name)

    def open(self, name: str, *, create: bool = False) -> Storage:
        return self.wrap_file(self.inner.open(name, create=create))

    def listdir(self) -> list[str]:
        return self.inner.listdir()

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def is_dir(self, name: str) -> bool:
        return self.inner.is_dir(name)

    def rename(self, src: str, dst: str) -> None:
        self.inner.rename(src, dst)

    def unlink(self, name: str) -> None:
        self.inner.unlink(name)

    def sync(self) -> None:
        self.inner.sync()

    def random_bytes(self, n: int) -> bytes:
        return self.inner.random_bytes(n)

    def subdir(self, name: str, *, create: bool = False) -> Directory:
        return self.wrap_directory(self.inner.subdir(name, create=create))

    def lock(self, name: str) -> DirectoryLock:
        return self.inner.lock(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
