"""Exit statuses of the ``trio-replica`` command, and turning errors into one line.

Every failure the command expects (a missing or foreign directory, a locked
one, a corrupted file, an I/O error) ends as ONE line on stderr,
``trio-replica: error: ...``, and a non-zero exit status that says which kind
of failure it was, so scripts can tell "the data is damaged" from "try again
later". A traceback is shown only for a bug in the command itself, and only
when ``TRIO_REPLICA_TRACEBACK=1`` asks for it.
"""

from __future__ import annotations

import enum
import os

from ..errors import (
    CorruptionError,
    DirectoryLockedError,
    ReplicaError,
    SnapshotError,
    StorageError,
)

__all__ = [
    "PROGRAM",
    "CommandError",
    "ExitStatus",
    "UsageError",
    "describe_error",
    "traceback_requested",
]

PROGRAM = "trio-replica"


class ExitStatus(enum.IntEnum):
    """What the exit status of ``trio-replica`` means."""

    OK = 0
    """Done; for ``verify``: everything checked is clean."""
    PROBLEM = 1
    """The data is damaged or inconsistent (verify found a bad record, the
    demo's recovered state is not consistent, a file is corrupted)."""
    USAGE = 2
    """Bad arguments, or a path that is not a replica data directory."""
    UNAVAILABLE = 3
    """The directory cannot be used now: locked by a running replica, or an
    I/O error from the operating system."""
    SOFTWARE = 70
    """A bug in trio-replica itself (sysexits' EX_SOFTWARE)."""
    INTERRUPTED = 130
    """Interrupted with Ctrl-C (128 + SIGINT)."""
    TERMINATED = 143
    """Stopped by SIGTERM after cleaning up (128 + SIGTERM; the demo)."""


class CommandError(ReplicaError):
    """A failure the command reports as one line, with a chosen exit status."""

    def __init__(self, message: str, *, status: ExitStatus = ExitStatus.PROBLEM):
        super().__init__(message)
        self.status = status


class UsageError(CommandError):
    """The command was called wrongly, or on something that is not a data directory."""

    def __init__(self, message: str):
        super().__init__(message, status=ExitStatus.USAGE)


def traceback_requested() -> bool:
    """Whether the user asked for tracebacks (``TRIO_REPLICA_TRACEBACK=1``)."""
    return os.environ.get("TRIO_REPLICA_TRACEBACK", "") not in ("", "0")


def _leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (Trio nurseries raise groups)."""
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_leaves(inner))
        return found
    return [exc]


def _describe_os_error(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        text = f"{exc.filename}: {text}"
    return text


def _describe_one(exc: BaseException) -> tuple[str, ExitStatus] | None:
    """One line and status for an expected error, ``None`` for a bug."""
    if isinstance(exc, CommandError):
        return str(exc), exc.status
    if isinstance(exc, DirectoryLockedError):
        return str(exc), ExitStatus.UNAVAILABLE
    if isinstance(exc, CorruptionError):
        # FormatError is a CorruptionError: a foreign or newer file is a data problem too.
        return str(exc), ExitStatus.PROBLEM
    if isinstance(exc, StorageError):
        return str(exc), ExitStatus.UNAVAILABLE
    if isinstance(exc, SnapshotError):
        return str(exc), ExitStatus.PROBLEM
    if isinstance(exc, ReplicaError):
        return f"{str(exc) or type(exc).__name__}", ExitStatus.PROBLEM
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return _describe_os_error(exc), ExitStatus.USAGE
    if isinstance(exc, OSError):
        return _describe_os_error(exc), ExitStatus.UNAVAILABLE
    return None


def describe_error(exc: BaseException) -> tuple[str, ExitStatus]:
    """Return the one-line message and exit status for ``exc``.

    A group (from a nursery) is described by its first expected error; an
    exception that is not an expected one is a bug, reported as such.
    """
    leaves = _leaves(exc)
    for leaf in leaves:
        described = _describe_one(leaf)
        if described is not None:
            message, status = described
            # The line must stay one line, whatever the error text holds.
            return " ".join(message.split()), status
    first = leaves[0] if leaves else exc
    detail = " ".join(str(first).split())
    name = type(first).__name__
    return (
        f"internal error: {name}{': ' + detail if detail else ''} "
        "(a bug in trio-replica; rerun with TRIO_REPLICA_TRACEBACK=1 to see where)",
        ExitStatus.SOFTWARE,
    )
