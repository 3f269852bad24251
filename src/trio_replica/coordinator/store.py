"""The snapshot store: atomic, checksummed snapshots in ``<data>/snapshots``.

:class:`SnapshotStore` owns the snapshot directory of one data directory
(invariant 6, docs/invariants.md). It keeps a catalog of the files there, persists new
snapshots atomically, loads the newest valid one, and deletes old ones past
its ``keep`` limit. :func:`verify_snapshots` is the read-only check the CLI
uses.
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType

import trio

from ..errors import (
    ClosedError,
    SnapshotDirSyncError,
    SnapshotError,
    SnapshotRenameError,
)
from ..storage import Directory, DirectoryLike, open_directory, run_io
from .snapshot import Snapshot, SnapshotInfo
from .snapshot_files import (
    LoadScan,
    MachineCheck,
    PersistOutcome,
    PersistPlan,
    ScanResult,
    load_newest,
    persist_snapshot,
    scan_and_load,
    scan_snapshots,
)
from .snapshot_format import (
    MAX_MACHINE_NAME_BYTES,
    MAX_MACHINE_VERSION,
    MAX_OP,
    UNBOUND,
    snapshot_name,
    temp_name,
)

__all__ = [
    "InvalidSnapshotOpError",
    "NoValidSnapshotError",
    "SnapshotStore",
    "verify_snapshots",
]

logger = logging.getLogger("trio_replica.snapshots")


class InvalidSnapshotOpError(SnapshotError):
    """A persist was refused before anything was written: the op is negative,
    too large, or not newer than the latest persisted snapshot."""


class NoValidSnapshotError(SnapshotError):
    """The snapshot directory holds snapshot files, but none of them is valid.

    This is not an empty store: state that was snapshotted (and whose journal
    may have been compacted) cannot be restored. ``invalid`` lists every file
    and why it was refused.
    """

    def __init__(self, message: str, *, path: str, invalid: tuple[SnapshotInfo, ...]):
        super().__init__(message, path=path)
        self.invalid = invalid


class SnapshotStore:
    """Atomic, checksummed snapshots of one state machine in ``<data>/snapshots``.

    ``directory`` is the DATA directory (a path or a
    :class:`~trio_replica.storage.Directory`); the store uses and creates its
    ``snapshots`` subdirectory. It does not take the data directory's lock:
    the replica (or the caller) holds it. Every snapshot records
    ``machine_name`` and ``machine_version``, and only snapshots with the same
    pair are loaded; with ``oldest_machine_version``, also snapshots of that
    machine written by versions from it up to ``machine_version`` (the
    loaded :class:`Snapshot` says which version wrote it, for the machine's
    ``upgrade_snapshot``). Every snapshot also records ``directory_id`` (the data
    directory's identity) and the journal's chain checksum at its op, asked
    of ``chain_checksum(op)`` (without it the snapshot is written unbound,
    and recovery never loads an unbound snapshot).

    The constructor does no I/O. The first call (or :meth:`open`) scans the
    directory: leftover temporary files of an interrupted persist are deleted
    (never loaded), and every snapshot file is verified (header and checksum,
    read in bounded chunks) to build the catalog that :meth:`list`,
    :attr:`latest_op` and :attr:`oldest_retained_op` report.

    Retention: after each persist the newest ``keep`` valid snapshots are
    kept, and every snapshot file older than the oldest of them is deleted
    (invalid ones included: they can never be loaded in preference to a newer
    valid one). Invalid files newer than that are left for inspection and
    skipped by :meth:`load_latest`.

    The journal must be kept back to :attr:`oldest_retained_op`, the op of
    the oldest *valid* retained snapshot: if the newest snapshot is found
    corrupt at a restart, :meth:`load_latest` falls back to an older one, and
    replaying the journal from there must not meet a gap.

    One task owns a store; concurrent calls are serialized.
    """

    def __init__(
        self,
        directory: DirectoryLike,
        *,
        keep: int = 2,
        machine_name: str = "",
        machine_version: int = 0,
        directory_id: bytes = UNBOUND,
        chain_checksum: Callable[[int], Awaitable[bytes]] | None = None,
        oldest_machine_version: int | None = None,
    ) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        if not isinstance(machine_name, str):
            raise TypeError(f"machine_name must be a str, got {type(machine_name).__name__}")
        if len(machine_name.encode("utf-8")) > MAX_MACHINE_NAME_BYTES:
            raise ValueError(f"machine_name is longer than {MAX_MACHINE_NAME_BYTES} UTF-8 bytes")
        if (
            isinstance(machine_version, bool)
            or not isinstance(machine_version, int)
            or not 0 <= machine_version <= MAX_MACHINE_VERSION
        ):
            raise ValueError(
                f"machine_version must be an int in 0..{MAX_MACHINE_VERSION}, "
                f"got {machine_version!r}"
            )
        if len(directory_id) != 16:
            raise ValueError("directory_id must be 16 bytes")
        self._directory_id = directory_id
        self._chain_checksum = chain_checksum
        self._target = directory
        self._keep = keep
        self._machine_name = machine_name
        self._machine_version = machine_version
        if oldest_machine_version is not None and not (
            0 <= oldest_machine_version <= machine_version
        ):
            raise ValueError(
                f"oldest_machine_version must be in 0..machine_version ({machine_version}), "
                f"got {oldest_machine_version!r}"
            )
        self._machine = MachineCheck(machine_name, machine_version, oldest_machine_version)
        self._lock = trio.Lock()
        self._closed = False
        self._dir: Directory | None = None
        self._catalog: dict[int, SnapshotInfo] = {}
        # (op, header) of a complete, durable temp file whose rename failed.
        self._pending_rename: tuple[int, bytes] | None = None
        # A snapshot that was renamed into place but whose directory fsync
        # failed: it may not survive a crash, so persisting it again is allowed.
        self._undurable_op: int | None = None
        # Valid snapshots deleted by retention whose directory fsync failed:
        # they may reappear after a crash, so they still count as retained.
        self._unsynced_deletes: set[int] = set()
        self._last_load_skipped: tuple[SnapshotInfo, ...] = ()

    # --- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Scan the snapshot directory (creating it) and build the catalog.

        Idempotent; :meth:`persist` and :meth:`load_latest` call it lazily.
        Leftover temporary files are removed here. Invalid snapshot files are
        logged (warning, naming the file and reason) and kept in the catalog
        as invalid.
        """
        async with self._lock:
            await self._open_locked()

    async def _open_locked(self) -> Directory:
        self._check_open()
        if self._dir is not None:
            return self._dir
        data = await open_directory(self._target, create=True)
        try:
            result = await run_io(
                data,
                partial(
                    scan_snapshots,
                    data,
                    machine=self._machine,
                    create=True,
                    remove_temps=True,
                    decode=False,
                ),
            )
        except OSError as exc:
            # Creating or listing the directory failed (a bad file is never
            # an OSError here: it is recorded as invalid).
            raise SnapshotError(
                f"cannot open the snapshot directory in {data.path}: {exc}", path=data.path
            ) from exc
        assert result is not None  # create=True always yields a directory
        return self._take_catalog(result)

    def _take_catalog(self, result: ScanResult) -> Directory:
        """Adopt a directory scan as the catalog, logging what it found."""
        for message in result.cleanup_errors:
            logger.warning("%s (left in place; it is never loaded)", message)
        for name in result.removed_temps:
            logger.info("removed leftover snapshot temp file %s", result.directory.path_of(name))
        for info in result.entries:
            if not info.valid:
                logger.warning(
                    "snapshot file %s is invalid and will not be loaded: %s",
                    info.path,
                    info.reason,
                )
        self._catalog = {info.op: info for info in result.entries}
        self._dir = result.directory
        return self._dir

    async def aclose(self) -> None:
        """Close the store; later calls raise :class:`~trio_replica.errors.ClosedError`.

        Every persist that returned is durable, so there is nothing to flush.
        Idempotent.
        """
        self._closed = True
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> SnapshotStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the snapshot store is closed")

    # --- catalog ---------------------------------------------------------

    def list(self) -> builtins.list[SnapshotInfo]:
        """Every snapshot file known from the last scan, persist or load, newest first.

        Empty before the first scan. Invalid files are listed with
        ``valid=False`` and the reason.
        """
        return [self._catalog[op] for op in sorted(self._catalog, reverse=True)]

    @property
    def latest_op(self) -> int | None:
        """Op of the newest valid snapshot (None: none known)."""
        valid = [op for op, info in self._catalog.items() if info.valid]
        return max(valid) if valid else None

    @property
    def oldest_retained_op(self) -> int | None:
        """Op of the oldest valid retained snapshot (None: none known).

        The journal must be kept back to this op so that falling back from a
        corrupt newest snapshot to this one never meets a gap. A snapshot
        whose deletion is not yet durable (the directory fsync after its
        unlink failed) still counts, since it may reappear after a crash.
        """
        valid = {op for op, info in self._catalog.items() if info.valid}
        valid |= self._unsynced_deletes
        return min(valid) if valid else None

    @property
    def last_load_skipped(self) -> tuple[SnapshotInfo, ...]:
        """The invalid snapshot files newer than the one the last
        :meth:`load_latest` returned (what it had to skip)."""
        return self._last_load_skipped

    # --- persist ---------------------------------------------------------

    async def persist(self, snapshot: Snapshot) -> SnapshotInfo:
        """Write ``snapshot`` atomically and durably; return its info.

        The op must be newer than :attr:`latest_op` (else
        :class:`InvalidSnapshotOpError`, nothing written). In one batch off the
        Trio thread: the state is CBOR-encoded (a state CBOR cannot represent
        raises :class:`~trio_replica.coordinator.SnapshotEncodeError` before
        anything is written), written to ``<op>.snapshot.tmp``, fsynced,
        renamed to ``<op>.snapshot`` and the directory fsynced. Each stage's
        failure has its own error class (``retryable`` says what to do):

        * :class:`~trio_replica.errors.SnapshotWriteError`,
          :class:`~trio_replica.errors.SnapshotSyncError`: the temp file was
          discarded; start over.
        * :class:`~trio_replica.errors.SnapshotRenameError` (retryable): the
          temp file is complete and durable; calling ``persist`` again with
          the same snapshot only retries the rename.
        * :class:`~trio_replica.errors.SnapshotDirSyncError`: the snapshot is
          in place but may not survive a crash; persisting the same snapshot
          again is allowed (and is how to start over).

        Then snapshots beyond ``keep`` are deleted. A failed delete (or the
        directory fsync after it) does not fail this persist: it is logged as
        a warning and retried by the next persist, and the file keeps
        counting in :attr:`oldest_retained_op` until its deletion is durable.
        """
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"expected a Snapshot, got {type(snapshot).__name__}")
        op = snapshot.op
        if isinstance(op, bool) or not isinstance(op, int):
            raise InvalidSnapshotOpError(f"snapshot op must be an int, got {op!r}")
        if not 0 <= op <= MAX_OP:
            raise InvalidSnapshotOpError(f"snapshot op {op} is not in 0..{MAX_OP}", op=op)
        async with self._lock:
            directory = await self._open_locked()
            latest = self.latest_op
            if latest is not None and (op < latest or (op == latest and op != self._undurable_op)):
                raise InvalidSnapshotOpError(
                    f"snapshot op {op} is not newer than the latest persisted snapshot "
                    f"(op {latest})",
                    op=op,
                )
            chain = UNBOUND
            if self._chain_checksum is not None:
                chain = await self._chain_checksum(op)
            plan = self._plan(op, chain)
            outcome = await run_io(
                directory, partial(persist_snapshot, directory, snapshot.state, plan)
            )
            return self._record(op, outcome)

    def _plan(self, op: int, chain: bytes) -> PersistPlan:
        pending_header: bytes | None = None
        discard: tuple[str, ...] = ()
        if self._pending_rename is not None:
            pending_op, header = self._pending_rename
            if pending_op == op:
                pending_header = header
            else:
                discard = (temp_name(pending_op),)
        # Retention as it will be once the new snapshot is durable: keep the
        # newest `keep` valid ones, delete every file older than the oldest kept.
        valid = sorted({o for o, info in self._catalog.items() if info.valid} | {op}, reverse=True)
        oldest_kept = valid[: self._keep][-1]
        delete = tuple((o, snapshot_name(o)) for o in sorted(self._catalog) if o < oldest_kept)
        return PersistPlan(
            op=op,
            machine_name=self._machine_name,
            machine_version=self._machine_version,
            directory_id=self._directory_id,
            chain_checksum=chain,
            pending_header=pending_header,
            discard_temps=discard,
            delete=delete,
            resync_deletes=bool(self._unsynced_deletes),
        )

    def _record(self, op: int, outcome: PersistOutcome) -> SnapshotInfo:
        """Update the catalog from a persist batch's outcome; raise its error."""
        error = outcome.error
        if error is not None:
            if isinstance(error, SnapshotRenameError):
                self._pending_rename = (op, outcome.header)
            else:
                self._pending_rename = None
            if isinstance(error, SnapshotDirSyncError):
                assert outcome.info is not None
                self._catalog[op] = outcome.info
                self._undurable_op = op
            raise error
        info = outcome.info
        assert info is not None
        self._pending_rename = None
        self._undurable_op = None
        self._catalog[op] = info
        if outcome.deletes_synced:
            self._unsynced_deletes.clear()
        for old_op in outcome.deleted:
            old = self._catalog.pop(old_op, None)
            if not outcome.deletes_synced and old is not None and old.valid:
                self._unsynced_deletes.add(old_op)
        if outcome.deletes_sync_error is not None:
            logger.warning(
                "%s; the deleted snapshots may reappear after a crash "
                "(retried at the next persist)",
                outcome.deletes_sync_error,
            )
        for _, message in outcome.delete_errors:
            logger.warning("%s (retried at the next persist)", message)
        return info

    # --- load ------------------------------------------------------------

    async def load_latest(self) -> Snapshot | None:
        """The newest valid snapshot, or None when there are no snapshot files.

        Each candidate is read, its checksum verified and only then decoded,
        off the Trio thread. A file that fails is skipped with a warning
        naming it and the reason, and the next older one is tried. When there
        are snapshot files but none is valid, raises
        :class:`NoValidSnapshotError`: a store that had snapshots is not empty.
        """
        async with self._lock:
            self._check_open()
            if self._dir is None:
                # First use: one pass builds the catalog and loads, so the
                # loaded file is read, hashed and decoded once.
                data = await open_directory(self._target, create=True)
                try:
                    loaded = await run_io(
                        data, partial(scan_and_load, data, machine=self._machine, create=True)
                    )
                except OSError as exc:
                    raise SnapshotError(
                        f"cannot open the snapshot directory in {data.path}: {exc}",
                        path=data.path,
                    ) from exc
                assert loaded is not None  # create=True always yields a directory
                return self._adopt_locked(loaded)
            directory = self._dir
            if not self._catalog:
                self._last_load_skipped = ()
                return None
            candidates = [
                op for op in sorted(self._catalog, reverse=True) if self._catalog[op].valid
            ]
            info, state, failed = await run_io(
                directory, partial(load_newest, directory, candidates, machine=self._machine)
            )
            return self._loaded(directory, info, state, failed)

    def adopt(self, loaded: LoadScan) -> Snapshot | None:
        """Take a blocking :func:`~.snapshot_files.scan_and_load` of this store's
        data directory as this store's open and first :meth:`load_latest`.

        For a caller that had to load the snapshot in a worker thread before
        the store could be built (recovery does, under the data directory's
        lock, to replay the journal in the same pass that verifies it).
        Returns and raises what :meth:`load_latest` would. Only before the
        store is opened (else ``RuntimeError``).
        """
        self._check_open()
        if self._dir is not None:
            raise RuntimeError("the snapshot store is already open")
        return self._adopt_locked(loaded)

    def _adopt_locked(self, loaded: LoadScan) -> Snapshot | None:
        # Every refused file is in the catalog with its reason, and was
        # logged as it was adopted: nothing more to record for ``failed``.
        directory = self._take_catalog(loaded.scan)
        if not self._catalog:
            self._last_load_skipped = ()
            return None
        return self._loaded(directory, loaded.info, loaded.state, [])

    def _loaded(
        self,
        directory: Directory,
        info: SnapshotInfo | None,
        state: object,
        failed: builtins.list[SnapshotInfo],
    ) -> Snapshot | None:
        """Record what a load found; the :class:`Snapshot`, or raise when none is valid."""
        for bad in failed:
            self._catalog[bad.op] = bad
            logger.warning(
                "skipping snapshot file %s: %s; falling back to an older snapshot",
                bad.path,
                bad.reason,
            )
        if info is None:
            invalid = tuple(self.list())
            details = "; ".join(f"{i.path}: {i.reason}" for i in invalid)
            self._last_load_skipped = invalid
            raise NoValidSnapshotError(
                f"no valid snapshot in {directory.path} "
                f"({len(invalid)} snapshot file(s), all invalid: {details})",
                path=directory.path,
                invalid=invalid,
            )
        self._catalog[info.op] = info
        skipped = tuple(i for i in self.list() if i.op > info.op)
        self._last_load_skipped = skipped
        if skipped:
            logger.warning(
                "loaded snapshot %s (op %d) after skipping %d newer invalid snapshot(s): %s",
                info.path,
                info.op,
                len(skipped),
                ", ".join(f"{i.path} ({i.reason})" for i in skipped),
            )
        return Snapshot(
            info.op,
            state,
            chain_checksum=info.chain_checksum,
            machine_version=info.machine_version,
        )

    async def load(self, op: int) -> Snapshot:
        """The snapshot of exactly ``op`` (a cluster replica restarts from the
        one its view state names, never from a newer one it does not vouch for).

        Raises :class:`NoValidSnapshotError` when there is no valid snapshot
        file of that op (missing, or failing verification: ``invalid`` says why).
        """
        async with self._lock:
            directory = await self._open_locked()
            info, state, failed = await run_io(
                directory, partial(load_newest, directory, [op], machine=self._machine)
            )
            if info is None:
                for bad in failed:
                    self._catalog[bad.op] = bad
                details = "; ".join(f"{i.path}: {i.reason}" for i in failed) or "no such file"
                raise NoValidSnapshotError(
                    f"no valid snapshot of op {op} in {directory.path} ({details})",
                    path=directory.path,
                    invalid=tuple(failed),
                )
            self._catalog[info.op] = info
            return Snapshot(
                info.op,
                state,
                chain_checksum=info.chain_checksum,
                machine_version=info.machine_version,
            )

    def __repr__(self) -> str:
        where = self._dir.path if self._dir is not None else _describe(self._target)
        return f"SnapshotStore({where!r}, keep={self._keep})"


def _describe(target: DirectoryLike) -> str:
    if isinstance(target, (str, os.PathLike)):
        return os.fspath(target)
    return target.path


def verify_snapshots(
    data_dir: Directory,
    *,
    machine_name: str | None = None,
    machine_version: int | None = None,
) -> list[SnapshotInfo]:
    """Verify every snapshot file under ``data_dir``/snapshots; never writes.

    Blocking (for the CLI, or a worker thread). Each file is checked fully:
    header, exact length, checksum, and that its body decodes; with
    ``machine_name``/``machine_version`` also that it belongs to that state
    machine. Memory is bounded by the largest snapshot. Leftover temporary
    files are not snapshots and are not listed. Returns newest first; an
    empty list when there is no snapshot directory.
    """
    result = scan_snapshots(
        data_dir,
        machine=MachineCheck(machine_name, machine_version),
        create=False,
        remove_temps=False,
        decode=True,
    )
    return [] if result is None else result.entries
