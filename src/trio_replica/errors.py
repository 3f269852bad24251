"""The exception hierarchy of trio-replica.

Every error the library raises on purpose derives from :class:`ReplicaError`,
so ``except ReplicaError`` catches all of them and nothing else. Each class
carries the facts a user needs to act on it (file, offset, op, stage) as
attributes, not only inside the message text.

Modules may define narrower subclasses next to the code that raises them, but
they always derive from one of the classes here.
"""

from __future__ import annotations

__all__ = [
    "BodyTooLargeError",
    "ClosedError",
    "CommandEncodingError",
    "CorruptionError",
    "DirectoryLockedError",
    "FatalStorageError",
    "ForeignDataError",
    "FormatError",
    "InvalidAppendError",
    "InvalidCommand",
    "JournalError",
    "JournalFull",
    "LockError",
    "MachineVersionError",
    "NotRegularFileError",
    "ReplicaError",
    "ReplicaKindError",
    "ReplicaStoppedError",
    "SnapshotDirSyncError",
    "SnapshotError",
    "SnapshotRenameError",
    "SnapshotSyncError",
    "SnapshotWriteError",
    "StateMachineError",
    "StorageError",
]


class ReplicaError(Exception):
    """Base class of every error raised on purpose by trio-replica."""


# --- storage -------------------------------------------------------------


class StorageError(ReplicaError):
    """An I/O operation on a data directory failed.

    ``path`` names the file or directory, ``stage`` the operation
    (``"open"``, ``"write"``, ``"sync"``, ...). The original ``OSError`` is
    chained as ``__cause__``.
    """

    def __init__(self, message: str, *, path: str | None = None, stage: str | None = None):
        super().__init__(message)
        self.path = path
        self.stage = stage


class FatalStorageError(StorageError):
    """A write or fsync failed, so the page cache can no longer be trusted.

    After this the owner (journal, replica) refuses all further use: retrying
    an fsync after a failure can report success for data that was dropped.
    The failed batch's outcome is unknown: none of its ops was acknowledged,
    and after a restart each may or may not be there (the journal cuts the
    segment back to its last durable size, and recovery reads the tail from
    the device, not from the page cache, then makes it durable before
    acknowledging anything new). Restart the process and let recovery
    decide what is durable.
    """


class DirectoryLockedError(StorageError):
    """The data directory is locked by another opener (another process, or
    another replica/journal in this process). ``holder`` says who, when the
    holder wrote it down (``"pid 1234"``), else None."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        stage: str | None = None,
        holder: str | None = None,
    ):
        super().__init__(message, path=path, stage=stage)
        self.holder = holder


class LockError(StorageError):
    """The data directory's lock could not be taken for a reason other than
    another holder: the directory is not writable, the file system is
    read-only, or ``LOCK`` is not a regular file. ``path`` names it."""


class NotRegularFileError(StorageError, OSError):
    """An entry named like a data file (segment, snapshot, superblock) is not
    a regular file: a FIFO, a directory, a device. It is refused by name and
    never read, so nothing blocks on it. Also an ``OSError``, so code that
    handles unreadable files handles it too."""


class ReplicaKindError(ReplicaError):
    """The data directory ``path`` belongs to a member of a cluster (replica
    ``replica`` of ``replica_count``): ``open_replica`` (a single replica)
    refuses it, since its journal holds prepares whose commit only the
    cluster knows. Nothing was changed. Open it with ``open_cluster_replica``
    (the reverse, a single replica's directory opened as a cluster member, is
    refused with ``ClusterIdentityError``)."""

    def __init__(self, message: str, *, path: str, replica: int, replica_count: int):
        super().__init__(message)
        self.path = path
        self.replica = replica
        self.replica_count = replica_count


class ClosedError(ReplicaError):
    """The object (journal, store, replica) was used after it was closed."""


# --- journal -------------------------------------------------------------


class JournalError(ReplicaError):
    """Base class of journal errors."""


class CorruptionError(JournalError):
    """A record or file failed verification in a way that is not a torn tail.

    Raised instead of silently dropping data. ``path`` and ``offset`` locate
    the bad bytes; ``op`` is the op that was expected there (or found there);
    ``reason`` says what check failed.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        op: int | None = None,
    ):
        where = []
        if path is not None:
            where.append(f"file {path}")
        if offset is not None:
            where.append(f"offset {offset}")
        if op is not None:
            where.append(f"op {op}")
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{reason}{suffix}")
        self.reason = reason
        self.path = path
        self.offset = offset
        self.op = op


class ForeignDataError(CorruptionError):
    """A file belongs to another data directory: its directory id, or the
    chain checksum a snapshot carries, is not this directory's. Nothing
    foreign is ever served; the file is named in ``path``."""


class FormatError(CorruptionError):
    """A file is not in a format this version understands: a foreign file
    (wrong magic) or a newer format version. Nothing is modified."""


class JournalFull(JournalError):
    """Appending would overwrite a ring slot whose op is not yet covered by a
    snapshot. Take a snapshot and call ``set_watermark`` to free slots."""

    def __init__(self, message: str, *, last_op: int, watermark: int, slot_count: int):
        super().__init__(message)
        self.last_op = last_op
        self.watermark = watermark
        self.slot_count = slot_count


class InvalidAppendError(JournalError):
    """An append was refused before anything was written (wrong op number,
    empty batch, wrong types). The journal is unchanged."""


class BodyTooLargeError(InvalidAppendError):
    """An entry body exceeds the journal's configured ``max_body_bytes``."""

    def __init__(self, message: str, *, op: int, size: int, limit: int):
        super().__init__(message)
        self.op = op
        self.size = size
        self.limit = limit


# --- snapshots -----------------------------------------------------------


class SnapshotError(ReplicaError):
    """Base class of snapshot store errors.

    ``retryable`` says whether the *same* operation may simply be retried
    (True), or must start over from the beginning (False).
    """

    retryable: bool = False

    def __init__(self, message: str, *, path: str | None = None, op: int | None = None):
        super().__init__(message)
        self.path = path
        self.op = op


class SnapshotWriteError(SnapshotError):
    """Writing the temporary snapshot file failed; it was discarded. Start
    the persist over."""

    retryable = False


class SnapshotSyncError(SnapshotError):
    """fsync of the temporary snapshot file failed; it was discarded. Start
    the persist over (never re-fsync the same file: the data may be gone)."""

    retryable = False


class SnapshotRenameError(SnapshotError):
    """Renaming the synced temporary file into place failed. The temporary
    file is intact and durable, so the rename may be retried as is."""

    retryable = True


class SnapshotDirSyncError(SnapshotError):
    """fsync of the snapshot directory after the rename failed: the new
    snapshot may or may not survive a crash. Directory fsync failures leave
    the directory's durability unknown; start the persist over."""

    retryable = False


# --- replica -------------------------------------------------------------


class InvalidCommand(ReplicaError):
    """Raised by a state machine's ``apply`` to reject a command.

    The state machine must not have changed any state when it raises this.
    The replica delivers it to the submitter and keeps serving; replay after
    a restart rejects the same command the same way.

    ``op`` is set by the replica before the error reaches the submitter: the
    op the rejected command was journaled as (``None`` outside a replica).
    """

    op: int | None = None

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CommandEncodingError(ReplicaError):
    """A submitted command could not be CBOR-encoded; nothing was journaled."""


class MachineVersionError(ReplicaError):
    """The state machine cannot act as ``version`` (its code is ``code_version``):
    a cluster committed a switch to a version this replica's code does not
    implement. The replica stops at that op (``op``, when known); run code
    that implements ``version`` and reopen it: it replays from its checkpoint
    and switches at the same op."""

    def __init__(self, message: str, *, version: int, code_version: int, op: int | None = None):
        super().__init__(message if op is None else f"{message} (op {op})")
        self.version = version
        self.code_version = code_version
        self.op = op


class StateMachineError(ReplicaError):
    """A state machine's ``apply`` raised something other than
    :class:`InvalidCommand`: a bug in the state machine. The replica stops,
    because its state may be half-applied. ``op`` is the op being applied."""

    def __init__(self, message: str, *, op: int):
        super().__init__(message)
        self.op = op


class ReplicaStoppedError(ReplicaError):
    """The replica stopped (closed, failed, or cancelled) before this
    request completed; the request's outcome may be unknown."""
