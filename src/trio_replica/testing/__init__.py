"""trio_replica.testing: deterministic crash, fault and cancellation testing.

* :class:`SimulatedDisk`: an in-memory disk with a page cache that models
  what a power loss may leave (lost, kept and torn writes, undone directory
  operations) and injects faults (bit flips, latent sector errors, failing
  fsyncs), all driven by one seed.
* :class:`FaultyDirectory` and :class:`CountingDirectory`: wrap any
  directory to fail, skip or hold chosen operations (by operation, path and
  countdown), and count every call.
* :func:`crash_states` and :class:`CrashRecorder`: every distinct state a
  crash could leave, at one moment or after each operation of a workload.
* :func:`cancel_at_each_schedule_point`: rerun a scenario cancelling it at each
  of its schedule points (Trio's "checkpoints") in turn, checking invariants
  after each run.
* :mod:`trio_replica.testing.plugin`: pytest fixtures and ``--replica-seed``.
* :mod:`trio_replica.testing.simulate`: a seeded crash-and-restart simulation
  of a whole replica.
* :class:`HistoryRecorder` and :func:`check_linearizability`: record what
  concurrent clients asked and saw, and check it against the state machine
  (see :mod:`trio_replica.testing.linearizability`).
* :class:`SimNetwork` and :class:`NetworkFaults`: a seeded in-process network
  (delay, loss, duplication, reordering, partitions, clogging, filters), and
  :func:`open_sim_transport`, a Trio transport over it for in-process clusters.
* :mod:`trio_replica.testing.cluster`: the deterministic VSR cluster
  simulator and its command line.
"""

from __future__ import annotations

from .cancellation import CancellationReport, CancelledRun, cancel_at_each_schedule_point
from .crash import CrashPoint, CrashRecorder, crash_states
from .disk import (
    DiskOperation,
    FaultEvent,
    Faults,
    Observation,
    SimulatedDirectory,
    SimulatedDisk,
    SimulatedFile,
)
from .faults import (
    CountingDirectory,
    FaultPlan,
    FaultRule,
    FaultyDirectory,
    Gate,
    ProcessKilled,
)
from .history import HistoryError, HistoryRecorder, Operation, Outcome, PendingOperation, Rejected
from .linearizability import (
    CheckResult,
    Counterexample,
    Verdict,
    check_linearizability,
    results_equal,
)
from .network import NetworkFaults, SimNetwork
from .sequential_model import MachineModel, Model, StepModel
from .sim_transport import SimEndpoint, SimTransport, open_sim_transport

__all__ = [
    "CancellationReport",
    "CancelledRun",
    "CheckResult",
    "Counterexample",
    "CrashPoint",
    "CountingDirectory",
    "CrashRecorder",
    "DiskOperation",
    "FaultEvent",
    "FaultPlan",
    "FaultRule",
    "Faults",
    "HistoryError",
    "HistoryRecorder",
    "MachineModel",
    "Model",
    "FaultyDirectory",
    "Gate",
    "Observation",
    "Operation",
    "ProcessKilled",
    "Outcome",
    "PendingOperation",
    "NetworkFaults",
    "Rejected",
    "SimEndpoint",
    "SimNetwork",
    "SimTransport",
    "SimulatedDirectory",
    "SimulatedDisk",
    "SimulatedFile",
    "StepModel",
    "Verdict",
    "cancel_at_each_schedule_point",
    "check_linearizability",
    "crash_states",
    "open_sim_transport",
    "results_equal",
]
