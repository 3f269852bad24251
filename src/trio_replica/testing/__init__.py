"""trio_replica.testing: deterministic crash, fault and cancellation testing.

* :class:`SimulatedDisk`: an in-memory disk with a page cache that models
  what a power loss may leave (lost, kept and torn writes, undone directory
  operations) and injects faults (bit flips, latent sector errors, failing
  fsyncs), all driven by one seed.
* :func:`crash_states` and :class:`CrashRecorder`: every distinct state a
  crash could leave, at one moment or after each operation of a workload.
* :func:`cancel_at_each_checkpoint`: rerun a scenario cancelling it at each
  of its Trio checkpoints in turn, checking invariants after each run.
* :mod:`trio_replica.testing.plugin`: pytest fixtures and ``--replica-seed``.
* :mod:`trio_replica.testing.simulate`: a seeded crash-and-restart simulation
  of a whole replica.
"""

from __future__ import annotations

from .cancellation import CancellationReport, CancelledRun, cancel_at_each_checkpoint
from .crash import CrashPoint, CrashRecorder, crash_states
from .disk import (
    DiskOperation,
    Faults,
    Observation,
    SimulatedDirectory,
    SimulatedDisk,
    SimulatedFile,
)

__all__ = [
    "CancellationReport",
    "CancelledRun",
    "CrashPoint",
    "CrashRecorder",
    "DiskOperation",
    "Faults",
    "Observation",
    "SimulatedDirectory",
    "SimulatedDisk",
    "SimulatedFile",
    "cancel_at_each_checkpoint",
    "crash_states",
]
