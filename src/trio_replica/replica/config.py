"""The settings of one replica, validated on their fields before anything touches the disk.

Every setting is checked by a validator declared on its field: a wrong type
or value raises :class:`InvalidSettingError` (a ``ValueError``) naming the
setting, and ``open_replica`` builds the config before it creates or locks
the data directory, so a refused setting leaves no trace on disk.

Memory does not grow with settings that only say "rarely": the journal's
ring (32 bytes per slot) is sized from ``snapshot_every`` only up to
:data:`DEFAULT_SLOT_CEILING`; past that the low-capacity trigger takes the
snapshots the ring needs (see :func:`default_slot_count`).
"""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import ReplicaError
from ..journal.record import MAX_BODY_LEN, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE
from .writer import batch_cap

__all__ = [
    "DEFAULT_SLOT_CEILING",
    "MAX_SLOT_COUNT",
    "InvalidSettingError",
    "ReplicaConfig",
    "default_slot_count",
]

DEFAULT_SLOT_CEILING = 2**16
"""The largest ring :func:`default_slot_count` chooses (2 MiB of index)."""

MAX_SLOT_COUNT = 2**24
"""The largest ring a caller may ask for (512 MiB of index)."""

MIN_SEGMENT_BYTES = SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE
"""A segment must hold its header and one record header."""


class InvalidSettingError(ReplicaError, ValueError):
    """A replica setting has the wrong type or value. ``setting`` names it,
    ``value`` is what was given. Raised before the data directory is touched."""

    def __init__(self, message: str, *, setting: str, value: Any):
        super().__init__(message)
        self.setting = setting
        self.value = value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(low: int, high: int | None = None) -> Any:
    """An attrs validator: an ``int`` (not a ``bool``) in ``low..high``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not _is_int(value) or value < low or (high is not None and value > high):
            if low == 1 and high is None:
                wanted = "a positive integer"
            elif high is None:
                wanted = f"an integer of at least {low}"
            else:
                wanted = f"an integer in {low}..{high}"
            raise InvalidSettingError(
                f"{attribute.name} must be {wanted}, got {value!r}",
                setting=attribute.name,
                value=value,
            )

    return check


def _slot_count_fits(instance: ReplicaConfig, attribute: Any, value: int | None) -> None:
    # Fewer slots than this and the journal could fill up with no way to free
    # it (see writer.batch_cap). keep_snapshots is validated before this runs.
    if value is not None and value < 4 * instance.keep_snapshots:
        raise InvalidSettingError(
            f"slot_count must be at least 4 * keep_snapshots = {4 * instance.keep_snapshots}, "
            f"got {value}",
            setting="slot_count",
            value=value,
        )


def default_slot_count(*, snapshot_every: int, keep_snapshots: int, max_batch: int) -> int:
    """The journal's ring size when the caller does not choose one.

    The watermark trails the newest snapshot by up to ``keep_snapshots``
    snapshot intervals (the journal is kept back to the OLDEST retained
    snapshot), and one more interval may be in flight while a snapshot is
    being written; room for ``keep_snapshots + 2`` intervals keeps the
    remaining capacity above the low-capacity trigger in steady state, so
    snapshots follow ``snapshot_every`` and submitters never wait on a
    checkpoint. That room is capped at :data:`DEFAULT_SLOT_CEILING`: a large
    ``snapshot_every`` means "rarely", not "preallocate for it"; the ring's
    low-capacity trigger then takes snapshots as the ring needs them.
    ``4 * keep_snapshots * max_batch`` keeps the per-append cap (see
    :func:`~trio_replica.replica.writer.batch_cap`) at least ``max_batch``,
    within :data:`MAX_SLOT_COUNT`. 1024 is a floor that costs 32 KiB.
    """
    intervals = min((keep_snapshots + 2) * snapshot_every, DEFAULT_SLOT_CEILING)
    per_append = min(4 * keep_snapshots * max_batch, MAX_SLOT_COUNT)
    return max(1024, intervals, per_append)


@attrs.frozen(kw_only=True)
class ReplicaConfig:
    """The validated settings of one replica (all sizes are counts of items
    unless the name says bytes). See :func:`~trio_replica.open_replica` for
    what each setting means. Left out, ``slot_count`` is
    :func:`default_slot_count` and ``inbox_size`` is ``max_batch``.

    Raises :class:`InvalidSettingError` naming the first invalid setting.
    """

    snapshot_every: int = attrs.field(default=10_000, validator=_int_in(1))
    keep_snapshots: int = attrs.field(default=2, validator=_int_in(1, MAX_SLOT_COUNT // 4))
    max_batch: int = attrs.field(default=256, validator=_int_in(1))
    slot_count: int = attrs.field(
        default=attrs.Factory(lambda self: self._default_slot_count(), takes_self=True),
        validator=[_int_in(1, MAX_SLOT_COUNT), _slot_count_fits],
    )
    segment_bytes: int = attrs.field(default=64 * 2**20, validator=_int_in(MIN_SEGMENT_BYTES))
    max_command_bytes: int = attrs.field(default=4 * 2**20, validator=_int_in(1, MAX_BODY_LEN))
    inbox_size: int = attrs.field(
        default=attrs.Factory(lambda self: self.max_batch, takes_self=True),
        validator=_int_in(1),
    )
    applier_queue: int = attrs.field(default=4, validator=_int_in(1))
    coordinator_queue: int = attrs.field(default=1, validator=_int_in(1))
    max_snapshot_failures: int = attrs.field(default=10, validator=_int_in(1))

    def _default_slot_count(self) -> int:
        # Runs while attrs assigns the fields, before any validator: a wrong
        # input is answered by its own validator right after, so any size
        # does here.
        inputs = (self.snapshot_every, self.keep_snapshots, self.max_batch)
        if not all(_is_int(value) and value >= 1 for value in inputs):
            return 1024
        return default_slot_count(
            snapshot_every=self.snapshot_every,
            keep_snapshots=self.keep_snapshots,
            max_batch=self.max_batch,
        )

    @property
    def low_capacity(self) -> int:
        """Below this remaining journal capacity the applier snapshots after every batch."""
        return max(1, self.slot_count // 4)

    @property
    def max_ops_per_append(self) -> int:
        """The per-append cap that guarantees a full journal can be freed."""
        return batch_cap(self.slot_count, self.keep_snapshots)
