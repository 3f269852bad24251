"""``Replica.stats()``: counters of a running replica, read at one moment.

Each number comes from the one task that owns it (the writer's journal, the
applier, the coordinator's store) and is only read here, between schedule
points, so a :class:`ReplicaStats` is a consistent-enough picture for
monitoring, never a lock on anything.
"""

from __future__ import annotations

import attrs

__all__ = ["ReplicaStats"]


@attrs.frozen
class ReplicaStats:
    """What a running replica has done since it was opened, and where its queues stand.

    * ``applied_op``: the last op applied (accepted or rejected);
      ``prepared_op``: the last op durable in the journal.
    * ``ops``: ops journaled since open; ``batches``: appends since open, each
      ONE write and ONE fdatasync (so also the data fsyncs);
      :attr:`ops_per_fsync` is the group-commit factor.
    * ``fsync_seconds``: time spent writing and fdatasyncing those batches, in
      the I/O thread (on a real disk, almost all of it is the fdatasync).
    * ``queue_depths``: messages waiting now in each bounded channel, by the
      channel names of ``trio_replica.replica.channels`` (``intake``:
      requests for the sequencer, ``entries``: numbered batches for the
      writer, ``durable``: notices back from it, ``committed``: ops for the
      applier, ``snapshots``: states for the coordinator, ``control``:
      snapshot notices for the writer). A full ``intake`` means submitters
      are being pushed back.
    * ``last_checkpoint_op``: op of the newest durable snapshot (0: none).
    * ``snapshot_failures``: snapshots that failed to persist since open
      (each also logged at WARNING).
    * ``segments_created``, ``segments_compacted``: journal segment files
      created and deleted since open.
    """

    applied_op: int
    prepared_op: int
    ops: int
    batches: int
    fsync_seconds: float
    queue_depths: dict[str, int]
    last_checkpoint_op: int
    snapshot_failures: int
    segments_created: int
    segments_compacted: int

    @property
    def ops_per_fsync(self) -> float:
        """Ops per data fsync since open (0.0 before the first batch)."""
        return self.ops / self.batches if self.batches else 0.0

    def __str__(self) -> str:
        """A few lines for a person (``print(replica.stats())``)."""
        return (
            f"applied op {self.applied_op}, prepared op {self.prepared_op}, "
            f"last checkpoint at op {self.last_checkpoint_op}\n"
            f"since open: {self.ops} ops in {self.batches} fsynced batches "
            f"({self.ops_per_fsync:.1f} ops per fsync, {self.fsync_seconds:.3f} s writing and "
            f"fsyncing), {self.segments_created} segment(s) created, "
            f"{self.segments_compacted} compacted, {self.snapshot_failures} snapshot failure(s)\n"
            "queued now: "
            + ", ".join(f"{depth} in {name}" for name, depth in self.queue_depths.items())
        )
