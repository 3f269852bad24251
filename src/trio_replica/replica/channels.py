"""The replica's channels, described once as data: from, to, size, why.

``open_replica`` opens exactly these channels (``nursery.py``), the
architecture document's table is this table, and the control channel's size
is derived from the others, so a change to one size cannot silently break
the no-deadlock argument.

Every channel is bounded, so a slow stage pushes back on the one before it,
up to the submitters.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .config import ReplicaConfig

__all__ = ["CHANNELS", "CONTROL_CYCLE", "ChannelSpec", "channel", "control_queue"]

ENTRIES_QUEUE = 4
"""Messages of numbered entries waiting for the writer (each up to ``max_batch`` ops)."""

DURABLE_QUEUE = 4
"""Durable notices waiting for the sequencer."""


@attrs.frozen
class ChannelSpec:
    """One channel: its ``name``, the task that sends (``source``) and the one
    that receives (``destination``), what it ``carries``, its ``size`` as a
    function of the settings, and ``why`` it has that size."""

    name: str
    source: str
    destination: str
    carries: str
    size: Callable[[ReplicaConfig], int]
    why: str


def control_queue(config: ReplicaConfig) -> int:
    """Size of the coordinator -> writer channel, derived from :data:`CONTROL_CYCLE`.

    The writer makes at most one blocking send between two receives from the
    control channel, and every later stage turns each message it receives
    into at most one message for the next (the sequencer one commit per
    notice, the applier at most one snapshot per commit, the coordinator one
    notice per snapshot). So while the writer is blocked, the notices the
    coordinator can produce are bounded by the messages queued on the cycle
    plus one held by each of its stages, and one more being sent by the
    coordinator. This size exceeds that bound, so the cycle writer ->
    sequencer -> applier -> coordinator -> writer cannot deadlock.
    """
    queued = sum(channel(name).size(config) for name in CONTROL_CYCLE)
    held = len(CONTROL_CYCLE) + 1
    return queued + held + 1


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        "intake",
        "submitters",
        "sequencer",
        "RequestGroup (commands, one wake per group), CheckpointRequest, Stop",
        lambda config: config.inbox_size,
        "not a memory channel but a queue of request groups (intake.py), sized in "
        "requests; waiting here is the backpressure submitters feel",
    ),
    ChannelSpec(
        "entries",
        "sequencer",
        "writer",
        "Prepares (numbered entries), Stop; Wake from the coordinator",
        lambda config: ENTRIES_QUEUE,
        "a few batches, so the sequencer numbers the next batch during an fsync",
    ),
    ChannelSpec(
        "durable",
        "writer",
        "sequencer",
        "Durable (durable up to op), SnapshotRequest",
        lambda config: DURABLE_QUEUE,
        "one notice per append; small, the sequencer only forwards them",
    ),
    ChannelSpec(
        "committed",
        "sequencer",
        "applier",
        "Commit (committed up to op, with the ops and their replies), SnapshotRequest",
        lambda config: config.applier_queue,
        "lets the writer append while the applier applies",
    ),
    ChannelSpec(
        "snapshots",
        "applier",
        "coordinator",
        "SnapshotTaken",
        lambda config: config.coordinator_queue,
        "bounds the snapshot states held in memory to coordinator_queue + 2",
    ),
    ChannelSpec(
        "control",
        "coordinator",
        "writer",
        "SnapshotDurable, SnapshotFailed",
        control_queue,
        "derived: larger than what the cycle can produce while the writer is blocked",
    ),
)

CONTROL_CYCLE: tuple[str, ...] = ("durable", "committed", "snapshots")
"""The channels between the writer's blocking send and the control channel."""


def channel(name: str) -> ChannelSpec:
    """The channel called ``name`` (``KeyError`` if there is none)."""
    for spec in CHANNELS:
        if spec.name == name:
            return spec
    raise KeyError(name)
