"""Blocking snapshot file operations on a :class:`~trio_replica.storage.Directory`.

Each public function here is one *batch*: the store runs it with
:func:`~trio_replica.storage.run_io`, so the worker-thread hop is paid once
per persist, scan or load, and the encoding and decoding of big states run
off the Trio thread together with the file I/O. Everything touches files
only through the ``Directory`` and ``Storage`` protocols, so the same code
runs on real files, in memory and on a simulated disk.

The functions never raise for a bad *file*: they report it as a
:class:`SnapshotInfo` with ``valid=False`` and the reason, or return the
persist stage that failed as a value, so that the store can update what it
knows on the Trio thread before raising.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from ..errors import (
    SnapshotDirSyncError,
    SnapshotError,
    SnapshotRenameError,
    SnapshotSyncError,
    SnapshotWriteError,
)
from ..layout import SNAPSHOT_DIR
from ..storage import Directory, Storage
from .snapshot import SnapshotInfo
from .snapshot_format import (
    CHECKSUM_SIZE,
    FIXED_HEADER_SIZE,
    FixedHeader,
    SnapshotFormatError,
    check_machine,
    decode_body,
    encode_header,
    encode_state,
    parse_fixed_header,
    parse_snapshot_name,
    parse_temp_name,
    snapshot_name,
    temp_name,
    verify_checksum,
)

__all__ = [
    "READ_CHUNK_SIZE",
    "SNAPSHOT_SUBDIR",
    "MachineCheck",
    "PersistOutcome",
    "PersistPlan",
    "ScanResult",
    "LoadScan",
    "inspect_snapshot",
    "load_newest",
    "scan_and_load",
    "persist_snapshot",
    "scan_snapshots",
]

SNAPSHOT_SUBDIR = SNAPSHOT_DIR
"""The snapshot store's subdirectory of the data directory."""

READ_CHUNK_SIZE = 1 << 20
"""Chunk size for checksumming a file without holding all of it in memory."""


@attrs.frozen
class MachineCheck:
    """The state machine a snapshot must belong to (``None``: do not check).

    With ``oldest_version`` set, a snapshot of any version from it up to
    ``version`` belongs (the machine upgrades older states at restore).
    """

    name: str | None = None
    version: int | None = None
    oldest_version: int | None = None


# --- reading -------------------------------------------------------------


def _body_chunks(storage: Storage, header: FixedHeader) -> Iterator[bytes]:
    offset = header.body_offset
    end = header.file_size
    while offset < end:
        chunk = storage.read_at(offset, min(READ_CHUNK_SIZE, end - offset))
        if not chunk:
            return  # the file shrank under us: verify_checksum reports it truncated
        yield chunk
        offset += len(chunk)


def _read_verified(
    storage: Storage, *, op: int, machine: MachineCheck, decode: bool
) -> tuple[FixedHeader, str, Any]:
    path = storage.path
    size = storage.size()
    fixed_bytes = storage.read_at(0, FIXED_HEADER_SIZE)
    # Every length below is checked against the real file size first, so no
    # read is ever sized by a corrupt field.
    header = parse_fixed_header(fixed_bytes, file_size=size, path=path)
    rest = storage.read_at(FIXED_HEADER_SIZE, header.name_size + CHECKSUM_SIZE)
    prefix = fixed_bytes + rest[: header.name_size]
    checksum = rest[header.name_size :]
    body = b""
    if decode:
        body = storage.read_at(header.body_offset, header.body_size)
        chunks: Sequence[bytes] | Iterator[bytes] = [body]
    else:
        chunks = _body_chunks(storage, header)
    # The checksum is verified before a single body byte is decoded.
    name = verify_checksum(header, prefix, checksum, chunks, path=path)
    check_machine(
        header,
        name,
        expected_op=op,
        expected_name=machine.name,
        expected_version=machine.version,
        oldest_version=machine.oldest_version,
        path=path,
    )
    state = decode_body(body, path=path, op=op) if decode else None
    return header, name, state


def inspect_snapshot(
    directory: Directory,
    name: str,
    *,
    machine: MachineCheck,
    decode: bool,
    op: int | None = None,
) -> tuple[SnapshotInfo, Any]:
    """Verify snapshot file ``name`` fully; with ``decode`` also decode its body.

    Returns the file's :class:`SnapshotInfo` (``valid=False`` with the reason
    when any check fails, an unreadable file included) and the decoded state
    (``None`` unless ``decode`` and valid). Without ``decode`` the body is
    checksummed in chunks, so memory stays bounded by the chunk size.
    ``op``: the op the file must hold, for a file whose name is not a
    snapshot name (a fetched temp file); by default the name's.
    """
    if op is None:
        op = parse_snapshot_name(name)
    if op is None:
        raise ValueError(f"{name!r} is not a snapshot file name")
    path = directory.path_of(name)
    size = 0
    machine_name: str | None = None
    machine_version: int | None = None
    try:
        storage = directory.open(name)
        try:
            size = storage.size()
            header, machine_name, state = _read_verified(
                storage, op=op, machine=machine, decode=decode
            )
            machine_version = header.machine_version
        finally:
            storage.close()
    except SnapshotFormatError as exc:
        return SnapshotInfo(op, path, size, False, exc.reason), None
    except OSError as exc:
        return SnapshotInfo(op, path, size, False, f"unreadable: {exc}"), None
    return (
        SnapshotInfo(
            op,
            path,
            size,
            True,
            None,
            machine_name,
            machine_version,
            header.directory_id,
            header.chain_checksum,
        ),
        state,
    )


@attrs.frozen
class ScanResult:
    """What a scan of the snapshot directory found."""

    directory: Directory
    entries: list[SnapshotInfo]
    """Every snapshot file, newest first, with its validity."""
    removed_temps: list[str]
    """Leftover temporary files that were removed."""
    cleanup_errors: list[str]
    """Failures while removing leftovers (they stay harmless: never loaded)."""


def scan_snapshots(
    data: Directory,
    *,
    machine: MachineCheck,
    create: bool,
    remove_temps: bool,
    decode: bool,
    inspect: bool = True,
) -> ScanResult | None:
    """Find and verify every snapshot file under ``data``/snapshots.

    ``create`` makes the subdirectory (durably) when missing; without it a
    missing subdirectory returns None. ``remove_temps`` deletes leftover
    ``*.snapshot.tmp`` files (a persist that crashed before its rename) and
    fsyncs the directory: they are never loaded, whatever they hold.
    ``inspect=False`` only does that (``entries`` is then empty).
    """
    if not create and not data.is_dir(SNAPSHOT_SUBDIR):
        return None
    directory = data.subdir(SNAPSHOT_SUBDIR, create=create)
    names = directory.listdir()
    removed: list[str] = []
    errors: list[str] = []
    if remove_temps:
        for name in names:
            if parse_temp_name(name) is None:
                continue
            try:
                directory.unlink(name)
            except OSError as exc:
                errors.append(f"cannot remove {directory.path_of(name)}: {exc}")
            else:
                removed.append(name)
        if removed:
            try:
                directory.sync()
            except OSError as exc:
                errors.append(f"cannot fsync {directory.path} after removing temp files: {exc}")
    if not inspect:
        return ScanResult(directory, [], removed, errors)
    entries = [
        inspect_snapshot(directory, name, machine=machine, decode=decode)[0]
        for name in names
        if parse_snapshot_name(name) is not None
    ]
    entries.sort(key=lambda info: info.op, reverse=True)
    return ScanResult(directory, entries, removed, errors)


def load_newest(
    directory: Directory, ops: Sequence[int], *, machine: MachineCheck
) -> tuple[SnapshotInfo | None, Any, list[SnapshotInfo]]:
    """Load the first of ``ops`` (newest first) whose file verifies and decodes.

    Returns its info (None when none did), its state, and the infos of the
    files that failed on the way, so the caller can log and record them.
    """
    failed: list[SnapshotInfo] = []
    for op in ops:
        info, state = inspect_snapshot(directory, snapshot_name(op), machine=machine, decode=True)
        if info.valid:
            return info, state, failed
        failed.append(info)
    return None, None, failed


@attrs.frozen
class LoadScan:
    """A scan of the snapshot directory that also loaded the newest valid snapshot.

    ``scan`` lists every file with its validity (the loaded one included);
    ``info`` and ``state`` are the loaded snapshot's (None: no file is
    valid, or there is none); ``failed`` the files newer than it that were
    refused on the way (they are in ``scan`` too).
    """

    scan: ScanResult
    info: SnapshotInfo | None
    state: Any
    failed: list[SnapshotInfo]


def scan_and_load(
    data: Directory, *, machine: MachineCheck, create: bool = True, remove_temps: bool = True
) -> LoadScan | None:
    """Build the catalog and load the newest valid snapshot, reading each file once.

    What :func:`scan_snapshots` followed by :func:`load_newest` does, without
    their second pass: files are inspected newest first; until one is
    valid, each is read whole, checksummed and decoded from the bytes that
    were checksummed (a file whose body does not decode is invalid, as
    :func:`load_newest` finds it); every older file is only checksummed, in
    chunks. So the snapshot that is loaded is hashed once and decoded once.
    ``create`` and ``remove_temps`` are :func:`scan_snapshots`'s (None: no
    subdirectory, and ``create`` is false).
    """
    listing = scan_snapshots(
        data, machine=machine, create=create, remove_temps=remove_temps, decode=False, inspect=False
    )
    if listing is None:
        return None
    directory = listing.directory
    names = sorted(
        (name for name in directory.listdir() if parse_snapshot_name(name) is not None),
        key=lambda name: parse_snapshot_name(name) or 0,
        reverse=True,
    )
    entries: list[SnapshotInfo] = []
    failed: list[SnapshotInfo] = []
    loaded: SnapshotInfo | None = None
    state: Any = None
    for name in names:
        info, value = inspect_snapshot(directory, name, machine=machine, decode=loaded is None)
        entries.append(info)
        if loaded is not None:
            continue
        if info.valid:
            loaded, state = info, value
        else:
            failed.append(info)
    result = ScanResult(directory, entries, listing.removed_temps, listing.cleanup_errors)
    return LoadScan(result, loaded, state, failed)


# --- writing -------------------------------------------------------------


@attrs.frozen
class PersistPlan:
    """Everything a persist batch needs, decided on the Trio thread."""

    op: int
    machine_name: str
    machine_version: int
    directory_id: bytes
    chain_checksum: bytes
    pending_header: bytes | None
    """Header of a durable temp file of this op left by a failed rename: when
    the new encoding has the same header (hence checksum), the file is reused
    and only the rename is retried."""
    discard_temps: tuple[str, ...]
    """Temp files of earlier failed persists to remove first."""
    delete: tuple[tuple[int, str], ...]
    """Old snapshots (op, file name) to delete once the new one is durable."""
    resync_deletes: bool
    """An earlier retention's directory fsync failed: fsync again."""


@attrs.frozen
class PersistOutcome:
    """How far a persist batch got.

    ``error`` is None when the snapshot is durable. ``header`` is what was
    written (kept to retry a failed rename). The retention fields say what
    happened to old snapshots; their failures never fail the persist.
    """

    info: SnapshotInfo | None
    error: SnapshotError | None
    header: bytes
    reused_temp: bool = False
    deleted: tuple[int, ...] = ()
    delete_errors: tuple[tuple[int, str], ...] = ()
    deletes_synced: bool = True
    deletes_sync_error: str | None = None


def _discard(directory: Directory, name: str) -> None:
    # Best effort: a temp file that survives is removed by the next open or
    # the next persist, and is never loaded in the meantime.
    with contextlib.suppress(OSError):
        directory.unlink(name)


def _write_temp(directory: Directory, tmp: str, op: int, header: bytes, body: bytes) -> None:
    """Create, write and fsync the temp file; raise the stage's error."""
    path = directory.path_of(tmp)
    try:
        storage = directory.open(tmp, create=True)
    except OSError as exc:
        raise SnapshotWriteError(
            f"cannot create snapshot temp file {path}: {exc}", path=path, op=op
        ) from exc
    try:
        try:
            storage.write_at(0, header)
            storage.write_at(len(header), body)
        except OSError as exc:
            raise SnapshotWriteError(
                f"writing snapshot temp file {path} failed: {exc}", path=path, op=op
            ) from exc
        try:
            storage.sync()
        except OSError as exc:
            # Never fsync the same file again: after a failed fsync its dirty
            # pages may already be gone. The file is discarded instead.
            raise SnapshotSyncError(
                f"fsync of snapshot temp file {path} failed: {exc}", path=path, op=op
            ) from exc
    except SnapshotError:
        storage.close()
        _discard(directory, tmp)
        raise
    storage.close()


def persist_snapshot(directory: Directory, state: Any, plan: PersistPlan) -> PersistOutcome:
    """Encode ``state`` and make it the durable snapshot at ``plan.op``.

    The steps, each mapped to its own error: encode (nothing touched yet),
    create + write the temp file, fsync it, rename it into place, fsync the
    directory. Only then are old snapshots deleted (unlink + directory fsync).
    A failed encoding raises :class:`SnapshotEncodeError`; every other failure
    is returned in the outcome.
    """
    op = plan.op
    body = encode_state(state, op=op)
    header = encode_header(
        op=op,
        machine_name=plan.machine_name,
        machine_version=plan.machine_version,
        body=body,
        directory_id=plan.directory_id,
        chain_checksum=plan.chain_checksum,
    )
    tmp = temp_name(op)
    final = snapshot_name(op)
    for name in plan.discard_temps:
        _discard(directory, name)

    reused = plan.pending_header == header and directory.exists(tmp)
    if not reused:
        if directory.exists(tmp):
            _discard(directory, tmp)
        try:
            _write_temp(directory, tmp, op, header, body)
        except SnapshotError as exc:
            return PersistOutcome(None, exc, header)

    # The temp file is complete and durable: from here on a failure leaves it
    # in place, so the rename may be retried without rewriting anything.
    try:
        directory.rename(tmp, final)
    except OSError as exc:
        path = directory.path_of(tmp)
        rename_error = SnapshotRenameError(
            f"renaming snapshot temp file {path} to {final} failed: {exc}", path=path, op=op
        )
        rename_error.__cause__ = exc
        return PersistOutcome(None, rename_error, header, reused_temp=reused)

    info = SnapshotInfo(
        op,
        directory.path_of(final),
        len(header) + len(body),
        True,
        None,
        plan.machine_name,
        plan.machine_version,
        plan.directory_id,
        plan.chain_checksum,
    )
    try:
        directory.sync()
    except OSError as exc:
        sync_error = SnapshotDirSyncError(
            f"fsync of snapshot directory {directory.path} after renaming in {final} failed: {exc}",
            path=directory.path,
            op=op,
        )
        sync_error.__cause__ = exc
        return PersistOutcome(info, sync_error, header, reused_temp=reused)

    # The new snapshot is durable. Retention failures are reported, never
    # raised: the persist itself succeeded, and the next one retries them.
    deleted: list[int] = []
    delete_errors: list[tuple[int, str]] = []
    for old_op, name in plan.delete:
        try:
            directory.unlink(name)
        except FileNotFoundError:
            deleted.append(old_op)
        except OSError as exc:
            delete_errors.append((old_op, f"cannot delete {directory.path_of(name)}: {exc}"))
        else:
            deleted.append(old_op)
    synced = True
    deletes_sync_error: str | None = None
    if deleted or plan.resync_deletes:
        try:
            directory.sync()
        except OSError as exc:
            synced = False
            deletes_sync_error = (
                f"fsync of {directory.path} after deleting old snapshots failed: {exc}"
            )
    return PersistOutcome(
        info,
        None,
        header,
        reused_temp=reused,
        deleted=tuple(deleted),
        delete_errors=tuple(delete_errors),
        deletes_synced=synced,
        deletes_sync_error=deletes_sync_error,
    )
