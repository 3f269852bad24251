"""The replica: ``open_replica``, the :class:`Replica` handle, and :func:`recover`.

``open_replica`` (in ``nursery.py``, the only module that knows the whole
wiring) runs the journal writer (``writer.py``), the applier
(``trio_replica.stm.applier``) and the snapshot coordinator
(``trio_replica.coordinator.task``) as tasks in one nursery, connected by
bounded memory channels carrying the frozen messages of ``trio_replica.pipeline``.
"""

from __future__ import annotations

from ..pipeline import Applied
from .config import InvalidSettingError, ReplicaConfig, default_slot_count
from .handle import CommandTooLargeError, Replica, ReplicaClosedError
from .nursery import open_replica
from .recovery import RecoveryReport, recover

__all__ = [
    "Applied",
    "CommandTooLargeError",
    "InvalidSettingError",
    "RecoveryReport",
    "Replica",
    "ReplicaClosedError",
    "ReplicaConfig",
    "default_slot_count",
    "open_replica",
    "recover",
]
