"""The value objects of the snapshot store: a snapshot, and what is known of a file."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Snapshot", "SnapshotInfo"]


@attrs.frozen
class Snapshot:
    """The whole state of a state machine after applying ops 1..``op``.

    ``state`` is any CBOR-encodable value (what ``StateMachine.snapshot()``
    returns). After a round trip through a file, tuples come back as lists
    and map keys that were tuples or lists come back as tuples (CBOR has one
    array type).
    """

    op: int
    state: Any
    chain_checksum: bytes | None = attrs.field(default=None, kw_only=True, eq=False)
    """The journal's chain checksum at ``op`` as the file recorded it (set by
    :meth:`SnapshotStore.load_latest`; None on a snapshot to persist: the
    store fills it in from the journal)."""
    # Not part of equality: two snapshots are equal when op and state are.
    machine_version: int | None = attrs.field(default=None, kw_only=True, eq=False)
    """The state machine version that wrote it, when loaded from a file."""


@attrs.frozen
class SnapshotInfo:
    """What the store knows of one snapshot file.

    ``valid`` is False when the file failed a check (``reason`` says which:
    bad magic, unknown format version, truncated, bad checksum, state machine
    mismatch, ...); such a file is never loaded. ``machine_name`` and
    ``machine_version`` are the header's, when it could be read.
    """

    op: int
    path: str
    size: int
    valid: bool
    reason: str | None = None
    machine_name: str | None = None
    machine_version: int | None = None
    directory_id: bytes | None = None
    """The data directory that wrote the file (16 bytes), when it could be read."""
    chain_checksum: bytes | None = None
    """The journal's chain checksum at ``op`` the file carries, when it could be read."""
