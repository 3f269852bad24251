"""A fault-injecting directory and a counting directory, for tests.

:class:`FaultyDirectory` wraps any :class:`~trio_replica.storage.Directory`
(a :class:`~trio_replica.storage.MemoryDirectory`, a real
:class:`~trio_replica.storage.OsDirectory`, a
:class:`~trio_replica.testing.SimulatedDisk`) and passes every call
through, except what its :class:`FaultPlan` says. A plan holds rules, each
for one :data:`FaultOperation` and an optional path filter:

* :meth:`FaultPlan.fail`: raise ``OSError`` (``EIO`` unless told otherwise),
  after a countdown of calls that pass, a given number of times or forever,
  as a failing disk would;
* :meth:`FaultPlan.skip`: pretend the call succeeded without doing it, the
  classic durability bug (an fsync that does nothing), to prove that a check
  catches it;
* :meth:`FaultPlan.gate`: hold the call in a worker thread until the test
  opens the gate, so a test knows another task is inside that call; a gate
  nobody opens fails the call loudly after its timeout instead of hanging;
* :meth:`FaultPlan.kill`: kill the process at the k-th call from now
  (:class:`ProcessKilled`, a ``BaseException`` like a SIGKILL), optionally
  leaving half of a write behind; on a :class:`~trio_replica.testing.SimulatedDisk`
  the test then looks at what a restart finds (``clone()``: the page cache
  kept; ``crash_states``: what a power loss may leave).

Files opened and subdirectories entered through the wrapper are wrapped too
and share the plan. Every call is counted (:attr:`FaultPlan.counts`), so
:class:`CountingDirectory` is a faulty directory with an empty plan, and the
largest read is recorded (:attr:`FaultPlan.largest_read`), so a test can
show that a reader never reads more than a file holds.

Operations, with the path they are matched against:

========================  ============================================
``file_write``            ``write_at`` and ``append`` of a file (file path)
``file_sync``             ``sync`` of a file (file path)
``file_truncate``         ``truncate`` of a file (file path)
``create``                ``open(create=True)``, creating a file (file path)
``unlink``                ``unlink`` (the unlinked file's path)
``rename``                ``rename`` (the source's path)
``dir_sync``              ``sync`` of a directory (the directory's path)
========================  ============================================

A path filter matches a path that ends with it (``".snapshot.tmp"`` for
snapshot temp files) or has a directory of that name (``"wal"``: the
journal's directory and everything in it).
"""

from __future__ import annotations

import errno as errno_module
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import attrs
import trio

from ..storage import Directory, DirectoryLock, Storage

__all__ = [
    "ProcessKilled",
    "CountingDirectory",
    "FaultPlan",
    "FaultRule",
    "FaultyDirectory",
    "Gate",
    "FaultOperation",
]

FaultOperation = Literal[
    "file_write", "file_sync", "file_truncate", "create", "unlink", "rename", "dir_sync"
]
"""The operations a :class:`FaultPlan` can act on (see the module docstring)."""

_OPERATIONS = frozenset(FaultOperation.__args__)  # type: ignore[attr-defined]


class ProcessKilled(BaseException):
    """The simulated process was killed at this call (see :meth:`FaultPlan.kill`).

    A ``BaseException``, like the ``KeyboardInterrupt`` or the SIGKILL it
    stands for, so ``except Exception`` in the code under test cannot
    swallow it. ``operation`` and ``path`` name the call; ``torn`` says
    whether half of a write was left behind.
    """

    def __init__(self, operation: str, path: str, *, torn: bool) -> None:
        super().__init__(f"killed at {operation} {path}" + (" (torn)" if torn else ""))
        self.operation = operation
        self.path = path
        self.torn = torn


class Gate:
    """Holds the calls it matches until :meth:`open` (thread-safe).

    ``reached`` is set (in the Trio thread) when a call first arrives at the
    gate; a call still held after ``timeout`` seconds raises
    ``TimeoutError``, so a forgotten gate fails the test instead of hanging.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.reached = trio.Event()
        self._open = threading.Event()

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called."""
        return self._open.is_set()

    def open(self) -> None:
        """Let every held and future call through."""
        self._open.set()

    def _hold(self, what: str) -> None:
        if self._open.is_set():
            return
        try:
            trio.from_thread.run_sync(self.reached.set)
        except RuntimeError:
            # Not a worker thread: holding here would stall the Trio loop.
            raise RuntimeError(
                f"a gate can only hold a call made in a worker thread, not {what}: run it "
                "with run_io on the FaultyDirectory (blocking while it has a gate)"
            ) from None
        if not self._open.wait(self.timeout):
            raise TimeoutError(f"gate on {what} was not opened within {self.timeout} s")


def _path_matches(path: str, where: str | None) -> bool:
    return where is None or path.endswith(where) or f"/{where}/" in path


@attrs.define
class FaultRule:
    """One rule of a :class:`FaultPlan`: what it does to which calls.

    ``after`` calls pass before it acts; then it acts ``times`` times
    (``None``: on every call from then on). With ``armed_by``, it acts only
    once a call of that operation matching ``where`` was made (an fsync
    that fails right after a deletion). ``hits`` counts the calls it acted
    on.
    """

    operation: FaultOperation
    action: Literal["fail", "skip", "gate"]
    where: str | None = None
    after: int = 0
    times: int | None = None
    errno: int = errno_module.EIO
    gate: Gate | None = None
    armed_by: FaultOperation | None = None
    hits: int = 0
    seen: int = 0
    armed: bool = False

    def matches(self, operation: str, path: str) -> bool:
        """Whether this rule acts on this call (and count the call if it matches)."""
        if not _path_matches(path, self.where):
            return False
        if operation == self.armed_by:
            self.armed = True
        if operation != self.operation or (self.armed_by is not None and not self.armed):
            return False
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.hits >= self.times):
            return False
        self.hits += 1
        return True


@attrs.define
class FaultPlan:
    """The rules a :class:`FaultyDirectory` tree applies, and what it counted.

    ``counts`` counts every call by operation; ``failures`` the calls made
    to fail; ``calls`` lists ``(operation, path)`` of every call, in order.
    """

    rules: list[FaultRule] = attrs.Factory(list)
    counts: Counter[str] = attrs.Factory(Counter)
    calls: list[tuple[str, str]] = attrs.Factory(list)
    failures: int = 0
    largest_read: int = 0
    _kill_in: int | None = None
    _kill_torn: bool = False

    def fail(
        self,
        operation: FaultOperation,
        *,
        where: str | None = None,
        after: int = 0,
        times: int | None = None,
        errno: int = errno_module.EIO,
        armed_by: FaultOperation | None = None,
    ) -> FaultRule:
        """Make matching calls raise ``OSError(errno)`` (see :class:`FaultRule`)."""
        return self._add(
            FaultRule(operation, "fail", where, after, times, errno, armed_by=armed_by)
        )

    def skip(self, operation: FaultOperation, *, where: str | None = None) -> FaultRule:
        """Make matching calls return without doing anything (a broken disk
        that acknowledges what it never did)."""
        return self._add(FaultRule(operation, "skip", where))

    def gate(
        self, operation: FaultOperation, *, where: str | None = None, timeout: float = 10.0
    ) -> Gate:
        """Hold matching calls until the returned gate is opened. The wrapped
        directory then reports ``blocking``, so its I/O runs in a worker
        thread and other tasks run meanwhile."""
        gate = Gate(timeout)
        self._add(FaultRule(operation, "gate", where, gate=gate))
        return gate

    def kill(self, *, after: int, torn: bool = False) -> None:
        """Let ``after`` calls (of any operation) pass, then raise
        :class:`ProcessKilled` at the next one instead of performing it.

        With ``torn``, a write killed this way first writes the first half
        of its data (a process killed in the middle of a ``write``).
        """
        if after < 0:
            raise ValueError(f"after must be at least 0, got {after}")
        self._kill_in = after
        self._kill_torn = torn

    def remove(self, rule: FaultRule) -> None:
        """Stop applying ``rule``."""
        self.rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule (the counts stay)."""
        self.rules.clear()

    @property
    def gated(self) -> bool:
        """Whether any rule is a gate (the directory must then run I/O in threads)."""
        return any(rule.action == "gate" for rule in self.rules)

    def check(self, operation: FaultOperation, path: str) -> bool:
        """Count the call and apply the rules; return False when it must be skipped."""
        if self._kill_in is not None:
            if self._kill_in == 0:
                self._kill_in = None
                torn = self._kill_torn and operation == "file_write"
                raise ProcessKilled(operation, path, torn=torn)
            self._kill_in -= 1
        self.counts[operation] += 1
        self.calls.append((operation, path))
        perform = True
        # Every rule sees the call (and counts or arms on it) before any acts.
        acting = [rule for rule in self.rules if rule.matches(operation, path)]
        for rule in acting:
            if rule.action == "gate":
                assert rule.gate is not None
                rule.gate._hold(f"{operation} {path}")
            elif rule.action == "skip":
                perform = False
            else:
                self.failures += 1
                raise OSError(rule.errno, f"injected {operation} failure", path)
        return perform

    @contextmanager
    def failing(
        self, operation: FaultOperation, *, where: str | None = None, times: int | None = None
    ) -> Iterator[FaultRule]:
        """Fail matching calls inside the ``with`` block only."""
        rule = self.fail(operation, where=where, times=times)
        try:
            yield rule
        finally:
            if rule in self.rules:
                self.remove(rule)

    def _add(self, rule: FaultRule) -> FaultRule:
        if rule.operation not in _OPERATIONS:
            raise ValueError(f"unknown operation {rule.operation!r}; one of {sorted(_OPERATIONS)}")
        self.rules.append(rule)
        return rule


class _FaultyFile:
    """A :class:`Storage` passing every call to ``inner`` through the plan."""

    def __init__(self, inner: Storage, plan: FaultPlan) -> None:
        self.inner = inner
        self._plan = plan

    @property
    def path(self) -> str:
        return self.inner.path

    def read_at(self, offset: int, size: int) -> bytes:
        self._plan.largest_read = max(self._plan.largest_read, size)
        return self.inner.read_at(offset, size)

    def write_at(self, offset: int, data: bytes) -> None:
        try:
            perform = self._plan.check("file_write", self.inner.path)
        except ProcessKilled as killed:
            if killed.torn:
                self.inner.write_at(offset, data[: len(data) // 2])
            raise
        if perform:
            self.inner.write_at(offset, data)

    def append(self, data: bytes) -> int:
        try:
            perform = self._plan.check("file_write", self.inner.path)
        except ProcessKilled as killed:
            if killed.torn:
                self.inner.append(data[: len(data) // 2])
            raise
        if perform:
            return self.inner.append(data)
        return self.inner.size()

    def truncate(self, size: int) -> None:
        if self._plan.check("file_truncate", self.inner.path):
            self.inner.truncate(size)

    def sync(self) -> None:
        if self._plan.check("file_sync", self.inner.path):
            self.inner.sync()

    def size(self) -> int:
        return self.inner.size()

    def drop_cache(self) -> None:
        self.inner.drop_cache()

    def link_count(self) -> int:
        return self.inner.link_count()

    def close(self) -> None:
        self.inner.close()


class FaultyDirectory:
    """A :class:`~trio_replica.storage.Directory` that applies a :class:`FaultPlan`.

    ``plan`` is shared by every file and subdirectory reached through this
    one. ``blocking`` is the inner directory's, or True while the plan has a
    gate (a gate can only hold a call that runs in a worker thread).
    """

    def __init__(self, inner: Directory, plan: FaultPlan | None = None) -> None:
        self.inner = inner
        self.plan = plan if plan is not None else FaultPlan()

    @property
    def blocking(self) -> bool:
        return self.plan.gated or self.inner.blocking

    @property
    def path(self) -> str:
        return self.inner.path

    def path_of(self, name: str) -> str:
        return self.inner.path_of(name)

    def open(self, name: str, *, create: bool = False) -> Storage:
        if create:
            self.plan.check("create", self.inner.path_of(name))
        return _FaultyFile(self.inner.open(name, create=create), self.plan)

    def listdir(self) -> list[str]:
        return self.inner.listdir()

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def is_dir(self, name: str) -> bool:
        return self.inner.is_dir(name)

    def rename(self, src: str, dst: str) -> None:
        if self.plan.check("rename", self.inner.path_of(src)):
            self.inner.rename(src, dst)

    def unlink(self, name: str) -> None:
        if self.plan.check("unlink", self.inner.path_of(name)):
            self.inner.unlink(name)

    def sync(self) -> None:
        if self.plan.check("dir_sync", self.inner.path):
            self.inner.sync()

    def subdir(self, name: str, *, create: bool = False) -> Directory:
        return type(self)(self.inner.subdir(name, create=create), self.plan)

    def random_bytes(self, n: int) -> bytes:
        return self.inner.random_bytes(n)

    def lock(self, name: str) -> DirectoryLock:
        return self.inner.lock(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class CountingDirectory(FaultyDirectory):
    """A :class:`FaultyDirectory` that only counts (its plan starts empty).

    ``file_syncs`` and ``dir_syncs`` are the fsyncs made through it (and
    everything reached through it) so far.
    """

    @property
    def file_syncs(self) -> int:
        """File fsyncs so far."""
        return self.plan.counts["file_sync"]

    @property
    def dir_syncs(self) -> int:
        """Directory fsyncs so far."""
        return self.plan.counts["dir_sync"]
