"""The replica: ``open_replica``, the :class:`Replica` handle, and :func:`recover`.

``open_replica`` (in ``nursery.py``, the only module that knows the whole
wiring) runs the sequencer (``sequencer.py``: op numbers and the commit
rule), the journal writer (``writer.py``: the journal), the applier
(``trio_replica.stm.applier``: the state machine) and the snapshot
coordinator (``trio_replica.coordinator.task``: the snapshot store) as tasks
in one nursery, each task next to the state it owns, connected by the
bounded channels of ``channels.py`` carrying the frozen messages of
``trio_replica.pipeline``. Settings are validated in ``config.py``. The
topology diagram is in docs/architecture.md. ``serve_replica``
(``serve.py``) is the task form of ``open_replica``, for ``nursery.start``.
"""

from __future__ import annotations

from ..pipeline import Applied
from .config import InvalidSettingError, ReplicaConfig, default_slot_count
from .handle import BatchRejectedError, CommandTooLargeError, Replica, ReplicaClosedError
from .nursery import open_replica
from .recovery import RecoveryReport, recover
from .serve import serve_replica
from .stats import ReplicaStats

__all__ = [
    "Applied",
    "BatchRejectedError",
    "CommandTooLargeError",
    "InvalidSettingError",
    "RecoveryReport",
    "Replica",
    "ReplicaClosedError",
    "ReplicaConfig",
    "ReplicaStats",
    "default_slot_count",
    "open_replica",
    "recover",
    "serve_replica",
]
