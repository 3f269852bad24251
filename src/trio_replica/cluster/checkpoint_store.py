"""Where a cluster replica keeps its checkpoints: the data directory's snapshot store.

A checkpoint (:mod:`.checkpoint`) is written with the single replica's
:class:`~trio_replica.coordinator.SnapshotStore` (``<data>/snapshots``:
temp file, fsync, rename, directory fsync; the newest two kept), as the
value :func:`~.checkpoint.encode_checkpoint` gives. The order that makes a
crash at any step recoverable is the core's (``docs/architecture.md``,
"Cluster checkpoints"): the snapshot is durable before the view state names
it, and the journal is compacted only once the view state names it.

At a restart the replica loads exactly the checkpoint its durable view
state names (op and prepare checksum), never a newer file the view state
does not vouch for (a crash between the snapshot and the view state write
leaves one; it is verified and reused when the replica takes that same
checkpoint again).
"""

from __future__ import annotations

from ..coordinator import Snapshot, SnapshotStore
from ..coordinator.store import NoValidSnapshotError
from ..journal import Journal
from ..stm.protocol import StateMachine
from ..storage import DirectoryLike
from .checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from .errors import ClusterError
from .view_state import ViewState

__all__ = [
    "CheckpointMismatchError",
    "CheckpointMissingError",
    "checkpoint_store",
    "load_checkpoint",
    "persist_checkpoint",
]


class CheckpointMissingError(ClusterError):
    """The durable view state names checkpoint ``op``, but no valid snapshot
    of that op is in ``path`` (deleted, or failing verification): the
    replica cannot restart from it and refuses to open (it never starts
    empty, which would lose committed state its journal no longer holds)."""

    def __init__(self, message: str, *, op: int, path: str):
        super().__init__(message)
        self.op = op
        self.path = path


class CheckpointMismatchError(ClusterError):
    """A snapshot file of checkpoint ``op`` in ``path`` holds another prepare
    or another state than the one this replica has for that op."""

    def __init__(self, message: str, *, op: int, path: str):
        super().__init__(message)
        self.op = op
        self.path = path


def checkpoint_store(
    directory: DirectoryLike, journal: Journal, machine: StateMachine
) -> SnapshotStore:
    """The snapshot store of a cluster replica's data directory (no I/O yet).

    Snapshots carry the machine's name and its code's version and the
    directory's identity; they are bound to the op's prepare (inside the
    value), not to the local journal's chain, since the same checkpoint must
    be valid on any replica. Checkpoints written by older code of the same
    machine load too: the state is that of the cluster's machine version
    (in the checkpoint), which newer code switches to before anything is
    applied (a rolling upgrade); newer code's checkpoints are refused.
    """
    return SnapshotStore(
        directory,
        keep=2,
        machine_name=machine.name,
        machine_version=machine.version,
        directory_id=journal.directory_id,
        oldest_machine_version=0,
    )


async def load_checkpoint(
    store: SnapshotStore, state: ViewState, *, path: str
) -> Checkpoint | None:
    """The checkpoint ``state`` names (None when it names none).

    Raises :class:`CheckpointMissingError` when its snapshot cannot be
    loaded, and :class:`CheckpointMismatchError` when the snapshot holds
    another prepare than the view state's checksum.
    """
    op = state.checkpoint_op
    if op == 0:
        return None
    try:
        snapshot = await store.load(op)
    except NoValidSnapshotError as error:
        raise CheckpointMissingError(
            f"the view state names checkpoint op {op}, but its snapshot cannot be loaded: {error}",
            op=op,
            path=path,
        ) from error
    checkpoint = decode_checkpoint(snapshot.state, path=path)
    if checkpoint.op != op or checkpoint.header.checksum != state.checkpoint_checksum:
        raise CheckpointMismatchError(
            f"the snapshot of checkpoint op {op} holds prepare {checkpoint.header.checksum.hex()} "
            f"at op {checkpoint.op}, the view state names {state.checkpoint_checksum.hex()}",
            op=op,
            path=path,
        )
    return checkpoint


async def persist_checkpoint(store: SnapshotStore, checkpoint: Checkpoint, *, path: str) -> None:
    """Write ``checkpoint`` durably (atomic replace; the two newest kept).

    A snapshot of the same op left by an earlier life (written, never named
    by the view state) is loaded and compared instead: the same prepare and
    the same state digest, and it is kept as it is; anything else raises
    :class:`CheckpointMismatchError`.
    """
    latest = store.latest_op
    if latest is not None and latest >= checkpoint.op:
        snapshot = await store.load(checkpoint.op) if latest == checkpoint.op else None
        found = None if snapshot is None else decode_checkpoint(snapshot.state, path=path)
        if (
            found is None
            or found.header != checkpoint.header
            or found.digest() != checkpoint.digest()
        ):
            raise CheckpointMismatchError(
                f"a snapshot of op {latest} is already there and does not hold the "
                f"checkpoint of op {checkpoint.op} this replica took",
                op=checkpoint.op,
                path=path,
            )
        return
    await store.persist(Snapshot(checkpoint.op, encode_checkpoint(checkpoint)))
