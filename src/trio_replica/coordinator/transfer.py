"""State transfer of a snapshot file: serving chunks, and installing a fetched one.

A cluster replica that needs ops its peers have compacted fetches the
newest checkpoint's snapshot file from a peer, byte for byte (the file's own
checksum then proves the whole transfer end to end). The transfer is
pull-based: the installing replica asks for one chunk at a time
(``offset``, ``length``), so at most one chunk is in flight and a slow or
lost peer costs nothing but a retry of that chunk.

Serving (:func:`read_snapshot_chunk`) reads a chunk of a snapshot file and
its xxh3-128 checksum. Installing (:func:`install_snapshot`):

1. every chunk is verified as it arrives (its offset, its length, its
   checksum) and written at its offset into ``<op>.snapshot.tmp``;
   the first chunk's fixed header must already name the expected op and
   file size;
2. the temp file is fsynced, then read back from the disk and verified
   fully: header, exact size, the snapshot's own checksum, the state
   machine, the body decodes; then ``bound(state)`` (the prepare checksum
   at the op, which the snapshot's state records) must equal the prepare
   checksum a quorum vouched for;
3. the temp file is renamed to ``<op>.snapshot`` and the directory fsynced.

A crash at any point leaves either no snapshot file at the op (a temp file
is never loaded and is removed when the store opens) or the complete,
verified one: never a mix. Progress is not resumed from a half-written temp
file (its unsynced tail may be anything after a power loss); the transfer
starts over, which the caller's durable view state tells it to do. Every
failure raises :class:`SnapshotTransferError` naming the stage, and removes
the temp file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio
import xxhash

from ..errors import SnapshotError
from ..storage import Directory, DirectoryLike, Storage, open_directory, run_io
from .snapshot import Snapshot
from .snapshot_files import SNAPSHOT_SUBDIR, MachineCheck, inspect_snapshot
from .snapshot_format import (
    FIXED_HEADER_SIZE,
    SnapshotFormatError,
    parse_fixed_header,
    snapshot_name,
    temp_name,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "SnapshotChunk",
    "SnapshotTransferError",
    "TransferTarget",
    "chunk_checksum",
    "install_snapshot",
    "read_snapshot_chunk",
]

DEFAULT_CHUNK_BYTES = 256 * 1024
"""Bytes asked for per chunk: small enough for one network frame and one
bounded buffer, large enough that the per-chunk round trip is not the cost."""


class SnapshotTransferError(SnapshotError):
    """A snapshot transfer failed at ``stage`` (``"fetch"``, ``"chunk"``,
    ``"header"``, ``"write"``, ``"sync"``, ``"verify"``, ``"bound"``,
    ``"rename"``, ``"dir_sync"``, ``"serve"``); ``offset`` is the chunk's
    when one is to blame. Nothing was installed: the temp file was removed
    and the transfer may start over (from another peer)."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        path: str | None = None,
        op: int | None = None,
        offset: int | None = None,
    ):
        super().__init__(message, path=path, op=op)
        self.stage = stage
        self.offset = offset


@attrs.frozen
class TransferTarget:
    """What to install: the snapshot at ``op`` whose file is ``size`` bytes
    (as the serving peer announced it) and whose state records the prepare
    ``prepare_checksum`` at ``op`` (as a quorum vouched, never the serving
    peer alone)."""

    op: int
    size: int
    prepare_checksum: bytes


@attrs.frozen
class SnapshotChunk:
    """``data`` of the snapshot file at ``op``, from ``offset``, and the
    xxh3-128 ``checksum`` of ``data`` (:func:`chunk_checksum`)."""

    op: int
    offset: int
    data: bytes
    checksum: bytes


def chunk_checksum(data: bytes) -> bytes:
    """The checksum a chunk travels with (xxh3-128: it detects damage in
    transit; the file's own checksum proves the whole file at the end)."""
    return xxhash.xxh3_128_digest(data)


def read_snapshot_chunk(data: Directory, op: int, offset: int, length: int) -> SnapshotChunk:
    """Read up to ``length`` bytes of the snapshot file at ``op`` from ``offset``
    (blocking; for the serving peer, through ``run_io``).

    Raises :class:`SnapshotTransferError` (stage ``"serve"``) when the file is
    missing or unreadable, or ``offset`` is beyond its end.
    """
    if offset < 0 or length < 1:
        raise ValueError(f"bad chunk request: offset {offset}, length {length}")
    name = snapshot_name(op)
    try:
        directory = data.subdir(SNAPSHOT_SUBDIR)
        storage = directory.open(name)
    except OSError as exc:
        raise SnapshotTransferError(
            f"no snapshot file at op {op} to serve: {exc}", stage="serve", op=op
        ) from exc
    try:
        size = storage.size()
        if offset >= size:
            raise SnapshotTransferError(
                f"chunk at offset {offset} is beyond the snapshot file's {size} bytes",
                stage="serve",
                path=storage.path,
                op=op,
                offset=offset,
            )
        chunk = storage.read_at(offset, min(length, size - offset))
    except OSError as exc:
        raise SnapshotTransferError(
            f"reading the snapshot file failed: {exc}",
            stage="serve",
            path=storage.path,
            op=op,
            offset=offset,
        ) from exc
    finally:
        storage.close()
    return SnapshotChunk(op, offset, chunk, chunk_checksum(chunk))


Fetch = Callable[[int, int], Awaitable[SnapshotChunk]]
"""``fetch(offset, length)``: ask the serving peer for one chunk and wait for it."""


async def install_snapshot(
    target_dir: DirectoryLike,
    target: TransferTarget,
    fetch: Fetch,
    *,
    machine: MachineCheck,
    bound: Callable[[Any], bytes],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Snapshot:
    """Fetch, verify and durably install the snapshot ``target`` in the data
    directory ``target_dir`` (steps and crash behaviour: module docstring).

    ``fetch`` is awaited for one chunk at a time, in order. ``machine`` is
    the state machine the snapshot must belong to; ``bound(state)`` returns
    the prepare checksum the decoded state records at its op. Returns the
    installed :class:`Snapshot` (decoded, so the applier restores it without
    reading it again). Raises :class:`SnapshotTransferError`; an error of
    ``fetch`` itself propagates unchanged (the caller's to retry), and the
    temp file is removed either way.
    """
    if chunk_bytes < FIXED_HEADER_SIZE:
        raise ValueError(f"chunk_bytes must be at least {FIXED_HEADER_SIZE}")
    op, size = target.op, target.size
    data = await open_directory(target_dir, create=False)
    directory = await run_io(data, partial(data.subdir, SNAPSHOT_SUBDIR, create=True))
    tmp, final = temp_name(op), snapshot_name(op)
    path = directory.path_of(tmp)

    def create() -> Storage:
        if directory.exists(tmp):
            directory.unlink(tmp)
        return directory.open(tmp, create=True)

    try:
        storage = await run_io(directory, create)
    except OSError as exc:
        raise SnapshotTransferError(
            f"cannot create {path}: {exc}", stage="write", path=path, op=op
        ) from exc
    installed = False
    try:
        offset = 0
        while offset < size:
            length = min(chunk_bytes, size - offset)
            chunk = await fetch(offset, length)
            _check_chunk(chunk, target, offset, length, path)
            if offset == 0:
                _check_first(chunk.data, target, path)
            try:
                await run_io(directory, partial(storage.write_at, offset, chunk.data))
            except OSError as exc:
                raise SnapshotTransferError(
                    f"writing {path} failed: {exc}", stage="write", path=path, op=op, offset=offset
                ) from exc
            offset += length
        try:
            await run_io(directory, storage.sync)
        except OSError as exc:
            raise SnapshotTransferError(
                f"fsync of {path} failed: {exc}", stage="sync", path=path, op=op
            ) from exc
        snapshot: Snapshot = await run_io(
            directory, partial(_verify_temp, directory, target, machine)
        )
        # Bound to the op a quorum vouched for: the state records its prepare.
        if bound(snapshot.state) != target.prepare_checksum:
            raise SnapshotTransferError(
                f"the snapshot at op {op} does not record the prepare a quorum vouched for",
                stage="bound",
                path=path,
                op=op,
            )
        await _rename(directory, tmp, final, op)
        installed = True
        return snapshot
    finally:
        with trio.CancelScope(shield=True):
            await run_io(directory, partial(_close_and_discard, directory, storage, tmp, installed))


def _check_chunk(
    chunk: SnapshotChunk, target: TransferTarget, offset: int, length: int, path: str
) -> None:
    problem = None
    if chunk.op != target.op or chunk.offset != offset:
        problem = f"answered op {chunk.op} offset {chunk.offset}, asked op {target.op} {offset}"
    elif len(chunk.data) != length:
        problem = f"{len(chunk.data)} bytes, asked {length}"
    elif chunk_checksum(chunk.data) != chunk.checksum:
        problem = "bad chunk checksum"
    if problem is not None:
        raise SnapshotTransferError(
            f"chunk at offset {offset} refused: {problem}",
            stage="chunk",
            path=path,
            op=target.op,
            offset=offset,
        )


def _check_first(head: bytes, target: TransferTarget, path: str) -> None:
    """Fail fast: the file's header must name the op and size we expect."""
    try:
        header = parse_fixed_header(head[:FIXED_HEADER_SIZE], file_size=target.size, path=path)
    except SnapshotFormatError as exc:
        raise SnapshotTransferError(
            f"the snapshot header is refused: {exc.reason}",
            stage="header",
            path=path,
            op=target.op,
            offset=0,
        ) from exc
    if header.op != target.op:
        raise SnapshotTransferError(
            f"the snapshot header says op {header.op}, expected {target.op}",
            stage="header",
            path=path,
            op=target.op,
            offset=0,
        )


def _verify_temp(directory: Directory, target: TransferTarget, machine: MachineCheck) -> Snapshot:
    """Read the durable temp file back and verify it fully (blocking)."""
    op = target.op
    tmp = temp_name(op)
    info, state = inspect_snapshot(directory, tmp, machine=machine, decode=True, op=op)
    if not info.valid:
        raise SnapshotTransferError(
            f"the fetched snapshot at op {op} does not verify: {info.reason}",
            stage="verify",
            path=info.path,
            op=op,
        )
    return Snapshot(
        op, state, chain_checksum=info.chain_checksum, machine_version=info.machine_version
    )


async def _rename(directory: Directory, tmp: str, final: str, op: int) -> None:
    try:
        await run_io(directory, partial(directory.rename, tmp, final))
    except OSError as exc:
        raise SnapshotTransferError(
            f"renaming {tmp} to {final} failed: {exc}",
            stage="rename",
            path=directory.path_of(tmp),
            op=op,
        ) from exc
    try:
        await run_io(directory, directory.sync)
    except OSError as exc:
        # The file may or may not survive a crash: remove it, so that what a
        # restart finds is never decided by chance; the transfer starts over.
        with contextlib.suppress(OSError):
            await run_io(directory, partial(directory.unlink, final))
        raise SnapshotTransferError(
            f"fsync of {directory.path} after renaming in {final} failed: {exc}",
            stage="dir_sync",
            path=directory.path,
            op=op,
        ) from exc


def _close_and_discard(directory: Directory, storage: Storage, tmp: str, installed: bool) -> None:
    storage.close()
    if not installed:
        with contextlib.suppress(OSError):
            if directory.exists(tmp):
                directory.unlink(tmp)
