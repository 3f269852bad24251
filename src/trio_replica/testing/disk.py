"""SimulatedDisk: an in-memory disk with a page cache, crashes and faults.

:class:`SimulatedDisk` is a :class:`~trio_replica.storage.Directory` (the
root directory of a simulated file system), so the journal, the snapshot
store and the replica accept it in place of a real directory. Unlike
:class:`~trio_replica.storage.MemoryDirectory` it keeps, for every file,
what is durable apart from what is only in the page cache, and for every
directory which entries are durable. :meth:`SimulatedDisk.crash` returns
one state a power loss could leave (see
:mod:`trio_replica.testing.persistence` for exactly which), and faults
are injected with given probabilities (:class:`Faults`) or at a chosen
place: faults in flight (bit flips on read or write, failing fsyncs) and
faults at rest (bit rot of durable data, latent sector errors, lost
writes). Every injected fault is recorded in :attr:`SimulatedDisk.fault_log`
as a :class:`FaultEvent`. Every random decision comes from
``random.Random`` seeded by the disk's seed, so a failing seed replays
exactly.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import random
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Literal

import attrs

from ..storage.memory import InProcessLock
from .persistence import (
    CrashSpace,
    DirNode,
    EntryOp,
    FileNode,
    Node,
    PendingTruncate,
    PendingWrite,
    apply_data_ops,
    tree_digest,
)

__all__ = [
    "DiskOperation",
    "FaultEvent",
    "FaultKind",
    "Faults",
    "SimulatedDirectory",
    "SimulatedDisk",
    "SimulatedFile",
    "derive_seed",
]


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``labels``, stable across runs
    and Python versions (``hash()`` of a string is not)."""
    text = "/".join([str(seed), *map(str, labels)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


@attrs.frozen
class Faults:
    """Probabilities of injected faults (all 0 by default).

    Faults in flight, each per call of the operation named:

    * ``read_bitflip``: a read returns its data with one bit flipped (the
      stored bytes stay intact), as a bad cable or controller would.
    * ``write_corruption``: a write stores its data with one bit flipped
      (and the flip persists), as misdirected or corrupted writes do.
    * ``read_error``: a read hits a latent sector error: one sector of the
      range becomes unreadable (``OSError(EIO)``) until it is rewritten.
    * ``fsync_failure``: a file or directory fsync raises ``OSError(EIO)``;
      the pending operations are dropped without becoming durable while the
      page cache keeps showing them (Linux behaviour), so a retried fsync
      would "succeed" without persisting them.
    * ``lost_write``: a write is lost by the drive: reads show it (the page
      cache has it) and the fsync that covers it succeeds, but its data
      never reaches the medium (an append's size change does: the new part
      reads as zeros). A power loss, or dropping the page cache, exposes
      the old bytes.
    * ``misdirected_write``: a write lands on the wrong place of the medium,
      where the previous write to the same file went (a drive writing to a
      stale address), overwriting what is there; its own place keeps what
      the medium had, as for a lost write. Reads show it where it was
      written until a power loss or a dropped cache. (A file's first write
      on a disk is never misdirected: there is no previous one.)

    Faults at rest, each per mutating disk operation (a tick; the time a
    byte stays on the disk is measured in ticks), striking durable data of
    any file, a byte or sector drawn in proportion to the files' durable
    sizes:

    * ``bit_rot``: one bit of durable data flips on the medium. The page
      cache keeps the bytes it read before (no eviction is modelled), so the
      flip shows after a crash (:meth:`SimulatedDisk.crash`) or a dropped
      cache; a process crash keeps the cache.
    * ``bad_sector``: one sector of durable data becomes unreadable (every
      read touching it fails with ``OSError(EIO)``) until it is rewritten;
      it survives crashes.

    The targeted forms are :meth:`SimulatedDisk.rot_bit`,
    :meth:`SimulatedDisk.rot_sector`, :meth:`SimulatedDisk.lose_writes` and
    :meth:`SimulatedDisk.misdirect_writes` (seeded placement inside a file
    or directory you name) and
    :meth:`SimulatedDisk.corrupt` / :meth:`SimulatedDisk.mark_bad_sector`
    (an exact offset). Content from another time or another history is put
    back only where a caller places it, from an image it kept:
    :meth:`SimulatedDisk.restore_file` (an operator restoring one file from
    a backup, or copying it from another copy of the data directory),
    :meth:`SimulatedDisk.stale_read` (the medium returning an older version
    of some blocks) and :meth:`SimulatedDisk.newer_writer` (bytes a newer
    version of the software wrote, read after a downgrade).
    """

    read_bitflip: float = attrs.field(default=0.0, validator=_probability)
    write_corruption: float = attrs.field(default=0.0, validator=_probability)
    read_error: float = attrs.field(default=0.0, validator=_probability)
    fsync_failure: float = attrs.field(default=0.0, validator=_probability)
    lost_write: float = attrs.field(default=0.0, validator=_probability)
    misdirected_write: float = attrs.field(default=0.0, validator=_probability)
    bit_rot: float = attrs.field(default=0.0, validator=_probability)
    bad_sector: float = attrs.field(default=0.0, validator=_probability)

    @property
    def damaging(self) -> bool:
        """Whether these faults can damage stored or read bytes (every fault
        but ``fsync_failure``, which only withholds durability)."""
        return any(
            (
                self.read_bitflip,
                self.write_corruption,
                self.read_error,
                self.lost_write,
                self.misdirected_write,
                self.bit_rot,
                self.bad_sector,
            )
        )


FaultKind = Literal[
    "read_bitflip",
    "write_corruption",
    "read_error",
    "fsync_failure",
    "lost_write",
    "misdirected_write",
    "bit_rot",
    "bad_sector",
    "restored_file",
    "stale_read",
    "newer_writer",
]
"""The kinds of injected fault: the names of the :class:`Faults` fields, and
of the targeted faults at rest that no probability draws (an older or
another history's content put back: :meth:`SimulatedDisk.restore_file`,
:meth:`SimulatedDisk.stale_read`; bytes a newer version of the software
wrote: :meth:`SimulatedDisk.newer_writer`)."""


@attrs.frozen
class FaultEvent:
    """One injected fault, as kept in :attr:`SimulatedDisk.fault_log`.

    ``kind`` names it (a :class:`Faults` field); ``path`` is the file's path
    relative to the disk root; ``offset`` and ``size`` the bytes it struck
    (a flipped bit: the byte, size 1, and ``bit`` 0..7; a bad sector: the
    sector; a lost write: the write; a misdirected write: where it landed;
    a failed fsync: offset 0, size 0);
    ``tick`` is :attr:`SimulatedDisk.operation_count` when it happened.
    """

    kind: FaultKind
    path: str
    offset: int
    size: int
    tick: int
    bit: int | None = None


@attrs.frozen
class DiskOperation:
    """One mutating operation, as passed to observers and kept in the log.

    ``kind`` is ``"create"``, ``"mkdir"``, ``"write"``, ``"truncate"``,
    ``"sync"`` (a file), ``"dirsync"``, ``"rename"`` or ``"unlink"``; ``path``
    is relative to the disk root; ``target`` is a rename's destination;
    ``failed`` is true for an fsync that raised an injected error.
    """

    index: int
    kind: str
    path: str
    offset: int | None = None
    size: int | None = None
    target: str | None = None
    failed: bool = False


def _eio(path: str, what: str) -> OSError:
    return OSError(errno.EIO, f"injected {what}", path)


class SimulatedFile:
    """An open file of a :class:`SimulatedDisk` (a :class:`~trio_replica.storage.Storage`)."""

    def __init__(self, disk: SimulatedDisk, node: FileNode, rel: str) -> None:
        self._disk = disk
        self._node = node
        self._rel = rel
        self._closed = False

    @property
    def path(self) -> str:
        return self._disk.display_path(self._rel)

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"file {self.path} is closed")

    def read_at(self, offset: int, size: int) -> bytes:
        self._check()
        node = self._node
        data = bytes(node.data[offset : offset + size])
        if not data:
            return data
        disk = self._disk
        sector = disk.sector_size
        first, last = offset // sector, (offset + len(data) - 1) // sector
        if disk._chance(disk.faults.read_error):
            bad = disk._fault_rng.randint(first, last)
            node.bad_sectors.add(bad)
            disk._note("read_error", self._rel, bad * sector, sector)
        if any(first <= s <= last for s in node.bad_sectors):
            disk.read_errors += 1
            raise _eio(self.path, "latent sector error")
        if disk._chance(disk.faults.read_bitflip):
            disk.bitflips += 1
            flipped, bit = _flip(data, disk._fault_rng)
            disk._note("read_bitflip", self._rel, offset + bit // 8, 1, bit % 8)
            return flipped
        return data

    def write_at(self, offset: int, data: bytes) -> None:
        self._check()
        if not data:
            return
        node = self._node
        disk = self._disk
        payload = bytes(data)
        if disk._chance(disk.faults.write_corruption):
            disk.bitflips += 1
            payload, bit = _flip(payload, disk._fault_rng)
            disk._note("write_corruption", self._rel, offset + bit // 8, 1, bit % 8)
        end = offset + len(payload)
        extends = end > len(node.data)
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:end] = payload
        lost = disk._lose(self._rel)
        previous, node.last_write = node.last_write, offset
        if lost:
            disk.lost_writes += 1
            disk._note("lost_write", self._rel, offset, len(payload))
        elif previous is not None and previous != offset and disk._misdirect(self._rel):
            # The drive stores the data where the previous write to this file
            # went; its own place keeps what the medium had (as for a lost
            # write). The page cache shows it where it was written.
            disk._note("misdirected_write", self._rel, previous, len(payload))
            node.pending.append(PendingWrite(offset, payload, extends, True))
            node.pending.append(PendingWrite(previous, payload, False))
            disk._record("write", self._rel, offset=offset, size=len(payload))
            return
        elif node.bad_sectors:
            # A drive remaps a bad sector when it is rewritten (a lost write
            # never reached it).
            sector = disk.sector_size
            first, last = offset // sector, (end - 1) // sector
            node.bad_sectors = {s for s in node.bad_sectors if not first <= s <= last}
        node.pending.append(PendingWrite(offset, payload, extends, lost))
        disk._record("write", self._rel, offset=offset, size=len(payload))

    def append(self, data: bytes) -> int:
        offset = len(self._node.data)
        self.write_at(offset, data)
        return offset

    def truncate(self, size: int) -> None:
        self._check()
        node = self._node
        if size < len(node.data):
            del node.data[size:]
        else:
            node.data.extend(bytes(size - len(node.data)))
        node.pending.append(PendingTruncate(size))
        self._disk._record("truncate", self._rel, size=size)

    def sync(self) -> None:
        self._check()
        node = self._node
        disk = self._disk
        if disk._chance(disk.faults.fsync_failure):
            node.pending.clear()
            disk._note("fsync_failure", self._rel, 0, 0)
            disk._record("sync", self._rel, failed=True)
            raise _eio(self.path, "fsync failure")
        node.durable = apply_data_ops(node.durable, node.pending)
        node.pending.clear()
        disk.fsync_count += 1
        disk._record("sync", self._rel)

    def size(self) -> int:
        self._check()
        return len(self._node.data)

    def drop_cache(self) -> None:
        """Clean pages are dropped: with nothing pending, reads show the durable bytes.

        This is what exposes a failed fsync's bytes as never written (the
        failed fsync left them visible but dropped their pending writes).
        Dirty pages (pending writes) stay, as on Linux.
        """
        self._check()
        node = self._node
        if not node.pending:
            node.data = bytearray(node.durable)

    def link_count(self) -> int:
        self._check()
        return self._disk._links_to(self._node)

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"SimulatedFile({self.path!r})"


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    """``data`` with one random bit flipped, and which bit (0..8*len-1)."""
    bit = rng.randrange(len(data) * 8)
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), bit


class SimulatedDirectory:
    """A directory of a :class:`SimulatedDisk` (a :class:`~trio_replica.storage.Directory`).

    Creates, renames and unlinks change what :meth:`listdir` shows at once
    but become durable only at :meth:`sync`.
    """

    def __init__(self, disk: SimulatedDisk | None, node: DirNode, rel: str) -> None:
        # The root directory is the disk itself and passes None.
        self._disk_ref = disk
        self._node = node
        self._rel = rel

    @property
    def _disk(self) -> SimulatedDisk:
        if self._disk_ref is None:
            assert isinstance(self, SimulatedDisk)
            return self
        return self._disk_ref

    @property
    def blocking(self) -> bool:
        """Always False: calls run inline (and deterministically) in ``run_io``."""
        return False

    @property
    def path(self) -> str:
        return self._disk.display_path(self._rel)

    def path_of(self, name: str) -> str:
        return self._disk.display_path(self._child_rel(name))

    def _child_rel(self, name: str) -> str:
        return f"{self._rel}/{name}" if self._rel else name

    @staticmethod
    def _valid(name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"invalid file name {name!r}")
        return name

    def _file(self, name: str) -> FileNode:
        node = self._node.entries.get(name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.path_of(name))
        if isinstance(node, DirNode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", self.path_of(name))
        return node

    def _link(self, name: str, node: Node, kind: str) -> None:
        self._node.entries[name] = node
        self._node.pending.append(EntryOp("link", name, node))
        self._disk._record(kind, self._child_rel(name))

    def open(self, name: str, *, create: bool = False) -> SimulatedFile:
        self._valid(name)
        if create:
            if name in self._node.entries:
                raise FileExistsError(errno.EEXIST, "file exists", self.path_of(name))
            node = FileNode()
            self._link(name, node, "create")
        else:
            node = self._file(name)
        return SimulatedFile(self._disk, node, self._child_rel(name))

    def listdir(self) -> list[str]:
        return sorted(self._node.entries)

    def exists(self, name: str) -> bool:
        return name in self._node.entries

    def is_dir(self, name: str) -> bool:
        return isinstance(self._node.entries.get(name), DirNode)

    def rename(self, src: str, dst: str) -> None:
        self._valid(dst)
        node = self._file(src)
        if isinstance(self._node.entries.get(dst), DirNode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", self.path_of(dst))
        del self._node.entries[src]
        self._node.entries[dst] = node
        self._node.pending.append(EntryOp("rename", dst, node, src))
        self._disk._record("rename", self._child_rel(src), target=self._child_rel(dst))

    def unlink(self, name: str) -> None:
        self._file(name)
        del self._node.entries[name]
        self._node.pending.append(EntryOp("unlink", name))
        self._disk._record("unlink", self._child_rel(name))

    def remove(self, name: str) -> None:
        """Remove the file or the whole directory tree ``name``, as ``rm -rf``
        does (an operator's act, not part of the ``Directory`` protocol):
        gone from :meth:`listdir` at once, durably at this directory's next
        :meth:`sync`."""
        if name not in self._node.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.path_of(name))
        del self._node.entries[name]
        self._node.pending.append(EntryOp("unlink", name))
        self._disk._record("unlink", self._child_rel(name))

    def sync(self) -> None:
        disk = self._disk
        if disk._chance(disk.faults.fsync_failure):
            self._node.pending.clear()
            disk._note("fsync_failure", self._rel, 0, 0)
            disk._record("dirsync", self._rel, failed=True)
            raise _eio(self.path, "directory fsync failure")
        self._node.durable = dict(self._node.entries)
        self._node.pending.clear()
        disk.fsync_count += 1
        disk._record("dirsync", self._rel)

    def subdir(self, name: str, *, create: bool = False) -> SimulatedDirectory:
        self._valid(name)
        node = self._node.entries.get(name)
        if isinstance(node, DirNode):
            return SimulatedDirectory(self._disk, node, self._child_rel(name))
        if node is not None:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", self.path_of(name))
        if not create:
            raise FileNotFoundError(errno.ENOENT, "no such directory", self.path_of(name))
        new = DirNode()
        self._link(name, new, "mkdir")
        # The protocol promises a durable new entry: sync this directory.
        self.sync()
        return SimulatedDirectory(self._disk, new, self._child_rel(name))

    def random_bytes(self, n: int) -> bytes:
        """Drawn from the disk's seed: a simulated run replays exactly."""
        return self._disk._id_rng.randbytes(n)

    def lock(self, name: str) -> InProcessLock:
        self._valid(name)
        lock = InProcessLock.acquire(self._node.locks, name, directory=self.path)
        if name not in self._node.entries:
            try:
                self._link(name, FileNode(), "create")
            except BaseException:
                lock.release()
                raise
        return lock

    def __repr__(self) -> str:
        return f"SimulatedDirectory({self.path!r})"


class Observation:
    """A callback registered by :meth:`SimulatedDisk.observe`; active until stopped.

    Registering happens in ``observe`` itself, so calling it without ``with``
    works too (it then observes until :meth:`stop`).
    """

    def __init__(
        self,
        observers: list[Callable[[DiskOperation], None]],
        callback: Callable[[DiskOperation], None],
    ) -> None:
        self._observers = observers
        self._callback: Callable[[DiskOperation], None] | None = callback

    @property
    def active(self) -> bool:
        """True until :meth:`stop` (or the end of the ``with`` block)."""
        return self._callback is not None

    def stop(self) -> None:
        """Stop calling the callback (idempotent)."""
        if self._callback is not None:
            self._observers.remove(self._callback)
            self._callback = None

    def __enter__(self) -> Observation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimulatedDisk(SimulatedDirectory):
    """The root directory of a simulated disk with a page cache.

    ``seed`` drives every random decision (faults, :meth:`crash`, garbage
    bytes). ``faults`` gives the probabilities of injected faults (none by
    default; the attribute may be replaced at any time, for example to turn
    faults on after setup). ``sector_size`` is the unit a write is torn at
    (512 like a real disk; a smaller one explores more tears than hardware
    produces). With ``reorder_directory_ops`` the pending operations of one
    directory may survive in any subset instead of only as a prefix.
    ``log_limit`` bounds :attr:`log` (memory stays bounded on long runs).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        faults: Faults | None = None,
        sector_size: int = 512,
        reorder_directory_ops: bool = False,
        log_limit: int = 100_000,
        _root: DirNode | None = None,
    ) -> None:
        if sector_size < 1:
            raise ValueError(f"sector_size must be positive, got {sector_size}")
        super().__init__(None, _root if _root is not None else DirNode(), "")
        self.seed = seed
        self.faults = faults if faults is not None else Faults()
        self.sector_size = sector_size
        self.reorder_directory_ops = reorder_directory_ops
        self.log_limit = log_limit
        self._fault_rng = random.Random(derive_seed(seed, "faults"))
        self._id_rng = random.Random(derive_seed(seed, "identity"))
        self._crashes = 0
        self._observers: list[Callable[[DiskOperation], None]] = []
        self.operation_count = 0
        """Mutating operations since this disk was made."""
        self.log: deque[DiskOperation] = deque(maxlen=log_limit)
        """The last ``log_limit`` mutating operations, oldest first."""
        self.fsync_count = 0
        """Successful file and directory fsyncs."""
        self.bitflips = 0
        """Injected bit flips (read and write corruption)."""
        self.read_errors = 0
        """Reads that failed with an (injected) latent sector error."""
        self.lost_writes = 0
        """Writes the drive lost (see ``Faults.lost_write`` and :meth:`lose_writes`)."""
        self.fault_log: deque[FaultEvent] = deque(maxlen=log_limit)
        """The last ``log_limit`` injected faults, oldest first: where each
        struck, to tell a test what damage to expect."""
        self._lose_orders: list[tuple[str, int]] = []
        self._misdirect_orders: list[tuple[str, int]] = []

    # --- bookkeeping ---------------------------------------------------

    def display_path(self, rel: str) -> str:
        """The human-readable path of ``rel`` (relative to the root)."""
        return f"sim:/{rel}" if rel else "sim:"

    def _chance(self, probability: float) -> bool:
        # No draw at probability 0, so turning faults off leaves the stream
        # (and thus every other decision) exactly as without faults.
        return probability > 0.0 and self._fault_rng.random() < probability

    def _record(
        self,
        kind: str,
        path: str,
        *,
        offset: int | None = None,
        size: int | None = None,
        target: str | None = None,
        failed: bool = False,
    ) -> None:
        op = DiskOperation(self.operation_count, kind, path, offset, size, target, failed)
        self.operation_count += 1
        self.log.append(op)
        # Faults at rest strike between operations, before any observer (a
        # crash taken by an observer) looks at the disk.
        if self._chance(self.faults.bit_rot):
            self._rot("bit_rot", None)
        if self._chance(self.faults.bad_sector):
            self._rot("bad_sector", None)
        for observer in list(self._observers):
            observer(op)

    def _note(
        self, kind: FaultKind, rel: str, offset: int, size: int, bit: int | None = None
    ) -> FaultEvent:
        event = FaultEvent(kind, rel, offset, size, self.operation_count, bit)
        self.fault_log.append(event)
        return event

    def _lose(self, rel: str) -> bool:
        """Whether the write to ``rel`` being made is lost (by order or by chance)."""
        for i, (within, left) in enumerate(self._lose_orders):
            if _within(rel, within):
                if left > 1:
                    self._lose_orders[i] = (within, left - 1)
                else:
                    del self._lose_orders[i]
                return True
        return self._chance(self.faults.lost_write)

    def _misdirect(self, rel: str) -> bool:
        """Whether the write to ``rel`` being made is misdirected (by order or by chance)."""
        for i, (within, left) in enumerate(self._misdirect_orders):
            if _within(rel, within):
                if left > 1:
                    self._misdirect_orders[i] = (within, left - 1)
                else:
                    del self._misdirect_orders[i]
                return True
        return self._chance(self.faults.misdirected_write)

    def _rot(self, kind: Literal["bit_rot", "bad_sector"], within: str | None) -> FaultEvent | None:
        sector = self.sector_size
        candidates: list[tuple[str, FileNode, int]] = []
        for rel, node in self._nodes():
            if isinstance(node, FileNode) and node.durable and _within(rel, within):
                units = (
                    len(node.durable) * 8 if kind == "bit_rot" else -(-len(node.durable) // sector)
                )
                candidates.append((rel, node, units))
        total = sum(units for _rel, _node, units in candidates)
        if not total:
            return None
        pick = self._fault_rng.randrange(total)
        chosen = 0
        while pick >= candidates[chosen][2]:
            pick -= candidates[chosen][2]
            chosen += 1
        rel, node, _units = candidates[chosen]
        if kind == "bad_sector":
            node.bad_sectors.add(pick)
            return self._note(kind, rel, pick * sector, sector)
        offset, bit = divmod(pick, 8)
        durable = bytearray(node.durable)
        durable[offset] ^= 1 << bit
        node.durable = bytes(durable)
        return self._note(kind, rel, offset, 1, bit)

    def observe(self, callback: Callable[[DiskOperation], None]) -> Observation:
        """Call ``callback(operation)`` after every mutating operation, from now on.

        Returns an :class:`Observation`: call its ``stop()``, or use it as
        ``with disk.observe(callback):`` to stop at the end of the block.
        Callbacks run synchronously, in the middle of the caller's I/O batch,
        so they see exactly the state a crash at that point would start from
        (this is how :class:`CrashRecorder` works)."""
        self._observers.append(callback)
        return Observation(self._observers, callback)

    # --- crashes -------------------------------------------------------

    def crash_space(self, *, garbage_seed: int | None = None) -> CrashSpace:
        """The space of every crash state of the disk as it is now."""
        return CrashSpace(
            self._node,
            sector_size=self.sector_size,
            reorder_directory_ops=self.reorder_directory_ops,
            garbage_seed=str(self.seed if garbage_seed is None else garbage_seed),
        )

    def crash(self) -> SimulatedDisk:
        """A NEW disk holding one state a power loss now could leave.

        The state is drawn from the crash space by this disk's seed and how
        many crashes were drawn before, so the n-th crash of a seed is always
        the same. This disk is not changed (except for that counter). The new
        disk has everything durable, no locks held, the same faults, and a
        seed derived from this one.
        """
        n = self._crashes
        self._crashes += 1
        space = self.crash_space(garbage_seed=derive_seed(self.seed, "garbage", n))
        index = random.Random(derive_seed(self.seed, "crash", n)).randrange(space.total)
        return self._child(space.build(index), derive_seed(self.seed, "child", n))

    def _child(self, root: DirNode, seed: int) -> SimulatedDisk:
        return SimulatedDisk(
            seed,
            faults=self.faults,
            sector_size=self.sector_size,
            reorder_directory_ops=self.reorder_directory_ops,
            log_limit=self.log_limit,
            _root=root,
        )

    def clone(self) -> SimulatedDisk:
        """A new disk holding exactly the current (page cache) state, all
        durable: what a clean shutdown leaves. Same seed and settings."""
        return SimulatedDisk(
            self.seed,
            faults=self.faults,
            sector_size=self.sector_size,
            reorder_directory_ops=self.reorder_directory_ops,
            log_limit=self.log_limit,
            _root=_copy(self._node),
        )

    def process_crash(self) -> SimulatedDisk:
        """A NEW disk holding the state a SIGKILL now leaves (this disk is unchanged).

        Unlike :meth:`crash` nothing is lost: the page cache stays (so bytes
        that were written but never fsynced, or whose fsync failed, are still
        visible), pending writes stay pending (a later :meth:`crash` of the
        new disk decides what of them survives), and no lock is held. What
        the killed process still does to this disk never reaches the new one.
        """
        root = copy.deepcopy(self._node)
        stack: list[Node] = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, DirNode):
                node.locks.clear()
                stack.extend(node.entries.values())
        n = self._crashes
        self._crashes += 1
        return self._child(root, derive_seed(self.seed, "process-child", n))

    def _links_to(self, target: FileNode) -> int:
        return sum(
            1
            for _rel, node in self._nodes()
            if isinstance(node, DirNode)
            for child in node.entries.values()
            if child is target
        )

    # --- inspection ----------------------------------------------------

    def _nodes(self) -> Iterator[tuple[str, Node]]:
        stack: list[tuple[str, Node]] = [("", self._node)]
        while stack:
            rel, node = stack.pop()
            yield rel, node
            if isinstance(node, DirNode):
                for name in sorted(node.entries, reverse=True):
                    stack.append((f"{rel}/{name}" if rel else name, node.entries[name]))

    def files(self) -> list[str]:
        """Paths (relative to the root) of every file visible now, sorted."""
        return sorted(rel for rel, node in self._nodes() if isinstance(node, FileNode))

    def snapshot_bytes(self, *, durable: bool = False) -> dict[str, bytes]:
        """Path -> content of every file: what reads return now, or with
        ``durable=True`` what is sure to survive (durable entries and data)."""
        if not durable:
            return {
                rel: bytes(node.data) for rel, node in self._nodes() if isinstance(node, FileNode)
            }
        out: dict[str, bytes] = {}
        stack: list[tuple[str, DirNode]] = [("", self._node)]
        while stack:
            rel, node = stack.pop()
            for name, child in node.durable.items():
                child_rel = f"{rel}/{name}" if rel else name
                if isinstance(child, DirNode):
                    stack.append((child_rel, child))
                else:
                    out[child_rel] = child.durable
        return dict(sorted(out.items()))

    def digest(self) -> str:
        """SHA-256 over every name and content visible now."""
        return tree_digest(self._node)

    def pending_operations(self) -> list[DiskOperation]:
        """The operations a crash now could lose: data operations of each file
        since its last fsync and entry operations of each directory since its
        last fsync (each described as in :attr:`log`, indices 0..n-1)."""
        out: list[DiskOperation] = []
        for rel, node in self._nodes():
            if isinstance(node, FileNode):
                for p in node.pending:
                    if isinstance(p, PendingWrite):
                        out.append(DiskOperation(len(out), "write", rel, p.offset, len(p.data)))
                    else:
                        out.append(DiskOperation(len(out), "truncate", rel, size=p.size))
            else:
                for e in node.pending:
                    path = f"{rel}/{e.name}" if rel else e.name
                    if e.kind == "rename":
                        src = f"{rel}/{e.src}" if rel else str(e.src)
                        out.append(DiskOperation(len(out), "rename", src, target=path))
                    elif e.kind == "link":
                        kind = "mkdir" if isinstance(e.node, DirNode) else "create"
                        out.append(DiskOperation(len(out), kind, path))
                    else:
                        out.append(DiskOperation(len(out), e.kind, path))
        return out

    @property
    def operations_since_sync(self) -> int:
        """How many operations a crash now could lose (see :meth:`pending_operations`)."""
        return len(self.pending_operations())

    def _lookup(self, path: str) -> FileNode:
        rel = _relative(path) or ""
        node: Node = self._node
        for part in rel.split("/"):
            if not isinstance(node, DirNode) or part not in node.entries:
                raise FileNotFoundError(errno.ENOENT, "no such file", self.display_path(rel))
            node = node.entries[part]
        if not isinstance(node, FileNode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", self.display_path(rel))
        return node

    # --- targeted faults -----------------------------------------------

    def rot_bit(self, within: str | None = None) -> FaultEvent | None:
        """Bit rot at rest: flip one bit of durable data on the medium, now.

        The bit is drawn from this disk's seed, uniformly over the durable
        bytes of the files under ``within`` (a file or directory path
        relative to the root, or as this disk displays it; None: the whole
        disk). As with ``Faults.bit_rot`` the page cache keeps the old byte:
        the flip shows after :meth:`crash` (or once the cache is dropped).
        Returns where it struck, or None when no durable byte is there.
        """
        return self._rot("bit_rot", _relative(within))

    def rot_sector(self, within: str | None = None) -> FaultEvent | None:
        """A latent sector error at rest: one durable sector under ``within``
        (drawn as in :meth:`rot_bit`) becomes unreadable, ``OSError(EIO)``
        on every read touching it, until it is rewritten; it survives
        crashes. Returns where it struck, or None when nothing is there."""
        return self._rot("bad_sector", _relative(within))

    def misdirect_writes(self, within: str | None = None, count: int = 1) -> None:
        """The next ``count`` writes to files under ``within`` (as in
        :meth:`rot_bit`) that have an earlier write on this disk are
        misdirected, as ``Faults.misdirected_write`` describes."""
        if count < 1:
            raise ValueError(f"count must be positive, got {count}")
        self._misdirect_orders.append((_relative(within) or "", count))

    def lose_writes(self, within: str | None = None, count: int = 1) -> None:
        """The next ``count`` writes to files under ``within`` (as in
        :meth:`rot_bit`) are lost, as ``Faults.lost_write`` describes: shown
        by reads and reported synced, never on the medium."""
        if count < 1:
            raise ValueError(f"count must be positive, got {count}")
        self._lose_orders.append((_relative(within) or "", count))

    def corrupt(self, path: str, offset: int, bit: int = 0) -> None:
        """Flip bit ``bit`` (0..7) of byte ``offset`` of file ``path`` on the
        media: both the durable content and the page cache change, as if the
        stored sector rotted. ``path`` is relative to the root (``"wal/x"``)
        or a path this disk displays (``"sim:/wal/x"``)."""
        if not 0 <= bit < 8:
            raise ValueError(f"bit must be in 0..7, got {bit}")
        node = self._lookup(path)
        if not 0 <= offset < len(node.data):
            raise ValueError(f"offset {offset} outside {path} (size {len(node.data)})")
        node.data[offset] ^= 1 << bit
        if offset < len(node.durable):
            durable = bytearray(node.durable)
            durable[offset] ^= 1 << bit
            node.durable = bytes(durable)
        self._note("bit_rot", _relative(path) or "", offset, 1, bit)

    def _put_at_rest(self, path: str, offset: int, data: bytes, *, truncate: bool) -> str:
        node = self._lookup(path)
        rel = _relative(path) or ""
        if truncate:
            content = bytearray(data)
        else:
            if not 0 <= offset <= len(node.durable):
                raise ValueError(f"offset {offset} outside {path} (size {len(node.durable)})")
            content = bytearray(node.durable)
            content[offset : offset + len(data)] = data
        # Put on the medium while the machine is down: the page cache holds
        # what the medium does, nothing is pending, the rewritten sectors
        # read again.
        node.durable = bytes(content)
        node.data = content
        node.pending = []
        if truncate:
            node.bad_sectors.clear()
        else:
            first = offset // self.sector_size
            end = -(-(offset + len(data)) // self.sector_size)
            node.bad_sectors -= set(range(first, end))
        return rel

    def restore_file(
        self, path: str, image: bytes, *, interrupted_at: int | None = None
    ) -> FaultEvent:
        """Put back an earlier image of file ``path`` (its whole content), at rest.

        What an operator does restoring one file from a backup, or copying
        it from another copy of this data directory (which carries the same
        directory identity, but another history after the copy was made).
        ``image`` is content the caller kept (for example
        ``disk.snapshot_bytes(durable=True)[path]`` at an earlier power
        loss, or a file of another simulated disk). Recorded as
        ``restored_file`` over the bytes restored.

        ``interrupted_at``: a restore in place (``rsync --inplace``, ``dd
        conv=notrunc``) that stopped after that many bytes (whole sectors):
        they are the image's, the rest of the file keeps its own bytes and
        size."""
        if interrupted_at is None:
            rel = self._put_at_rest(path, 0, image, truncate=True)
            return self._note("restored_file", rel, 0, len(image))
        if interrupted_at % self.sector_size or not 0 < interrupted_at <= len(image):
            raise ValueError(
                f"an interrupted restore stops at a sector boundary inside the image, "
                f"got {interrupted_at} of {len(image)} bytes"
            )
        if interrupted_at > len(self._lookup(path).durable):
            raise ValueError(f"bytes [0, {interrupted_at}) are not all in {path}")
        rel = self._put_at_rest(path, 0, image[:interrupted_at], truncate=False)
        return self._note("restored_file", rel, 0, interrupted_at)

    def stale_read(self, path: str, offset: int, old: bytes) -> FaultEvent:
        """The medium returns an older version of bytes ``[offset, offset +
        len(old))`` of ``path`` from now on: the later overwrites of those
        blocks never reached it (a lost write of an overwrite, or a
        remapped sector coming back with its old content; or a lost write
        to a block the file system had reused, which still holds what it
        held before, perhaps a deleted file's). ``old`` is what those
        sectors of the medium held earlier (content the caller kept);
        ``offset`` and
        the length must be whole sectors, as a drive returns them. Recorded
        as ``stale_read``."""
        if offset % self.sector_size or len(old) % self.sector_size or not old:
            raise ValueError(
                f"a stale read returns whole {self.sector_size}-byte sectors, "
                f"got offset {offset} and {len(old)} bytes"
            )
        if offset + len(old) > len(self._lookup(path).durable):
            raise ValueError(f"bytes [{offset}, {offset + len(old)}) are not all in {path}")
        rel = self._put_at_rest(path, offset, old, truncate=False)
        return self._note("stale_read", rel, offset, len(old))

    def newer_writer(self, path: str, offset: int, data: bytes) -> FaultEvent:
        """Bytes ``data`` at ``offset`` of ``path`` (up to its end at most)
        are what a newer version of the software wrote there: checksum-valid
        in the newer format, read after the operator downgraded. The caller
        builds ``data`` (for example records with a higher format version and
        their checksums recomputed). Recorded as ``newer_writer``."""
        if offset + len(data) > len(self._lookup(path).durable):
            raise ValueError(f"bytes [{offset}, {offset + len(data)}) are not all in {path}")
        rel = self._put_at_rest(path, offset, data, truncate=False)
        return self._note("newer_writer", rel, offset, len(data))

    def mark_bad_sector(self, path: str, offset: int) -> None:
        """Make the sector holding byte ``offset`` of ``path`` unreadable
        (``OSError(EIO)`` on read) until it is rewritten; it survives crashes."""
        sector = offset // self.sector_size
        self._lookup(path).bad_sectors.add(sector)
        self._note("bad_sector", _relative(path) or "", sector * self.sector_size, self.sector_size)

    def __repr__(self) -> str:
        return f"SimulatedDisk(seed={self.seed})"


def _relative(path: str | None) -> str | None:
    """``path`` relative to the disk root ("sim:/wal/x" and "wal/x/" -> "wal/x")."""
    return None if path is None else path.removeprefix("sim:").strip("/")


def _within(rel: str, within: str | None) -> bool:
    """Whether ``rel`` is ``within`` or inside it (None or "": everywhere)."""
    return not within or rel == within or rel.startswith(within + "/")


def _copy(root: DirNode) -> DirNode:
    copied: dict[int, Node] = {}

    def visit(node: Node) -> Node:
        if id(node) in copied:
            return copied[id(node)]
        if isinstance(node, FileNode):
            new_file = FileNode(bytes(node.data), node.bad_sectors)
            copied[id(node)] = new_file
            return new_file
        new_dir = DirNode()
        copied[id(node)] = new_dir
        for name in sorted(node.entries):
            new_dir.entries[name] = visit(node.entries[name])
        new_dir.durable = dict(new_dir.entries)
        return new_dir

    result = visit(root)
    assert isinstance(result, DirNode)
    return result
