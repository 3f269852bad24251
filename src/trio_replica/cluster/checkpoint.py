"""Cluster checkpoints: which ops are checkpoints, what a checkpoint holds, its digest.

A cluster replica takes a checkpoint at every committed op that is a
multiple of ``ClusterConfig.checkpoint_interval``: the same ops on every
replica, so their states can be compared. A checkpoint is the replicated
state after applying that op, and nothing else:

* the prepare header of the checkpoint op (its checksum names the op's
  identity across replicas, and it is the parent the next op links to);
* the state machine's snapshot (``StateMachine.snapshot()``);
* the client table (:meth:`~.client_table.ClientTable.canonical`): it is
  replicated state, so a replica restarted from a checkpoint answers
  retries exactly as one that replayed from op 1;
* the state machine version the cluster switched to (the newest committed
  ``switch_version`` op up to it; None before the first): replicated too.

Its **state digest** is the checksum of the canonical CBOR encoding of
``[machine state, client table, machine version]`` (map keys sorted, so two equal states
give the same digest whatever order Python's per-process string hashing
put a dict or set in). Replicas exchange digests at each checkpoint op and a
replica whose digest differs from the quorum's stops (a non-deterministic
``apply()``; see :class:`StateDivergenceError`).

The value a cluster snapshot file holds (``docs/format.md``, "Cluster
snapshot") is the CBOR array ``[1, header, machine state, client table,
machine version]``, ``header`` being the 96 bytes of the prepare header.
"""

from __future__ import annotations

from typing import Any

import attrs
import cbor2

from ..errors import CorruptionError, MachineVersionError
from ..stm.protocol import StateMachine
from .errors import ClusterError
from .header import PrepareHeader, checksum, decode_header, encode_header

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "StateDivergenceError",
    "decode_checkpoint",
    "encode_checkpoint",
    "is_checkpoint_op",
    "state_digest",
    "switch_version",
]

CHECKPOINT_FORMAT = 1
"""The first item of a cluster snapshot value: its layout version."""


@attrs.frozen
class Checkpoint:
    """The replicated state at a checkpoint op (see the module docstring).

    ``header`` is the prepare of op ``header.op``; ``machine`` what the state
    machine's ``snapshot()`` returned; ``clients`` the client table as
    :meth:`~.client_table.ClientTable.canonical` gives it; ``version`` the
    machine version the cluster switched to (None: no switch yet).
    """

    header: PrepareHeader
    machine: Any
    clients: list[list[Any]]
    version: int | None = None

    @property
    def op(self) -> int:
        """The checkpoint op."""
        return self.header.op

    def digest(self) -> bytes:
        """The state digest (16 bytes) of this checkpoint."""
        return state_digest(self.machine, self.clients, self.version)


def is_checkpoint_op(op: int, interval: int) -> bool:
    """Whether committed ``op`` is a checkpoint op (a positive multiple of ``interval``)."""
    return op > 0 and op % interval == 0


def state_digest(machine: Any, clients: list[list[Any]], version: int | None = None) -> bytes:
    """The checksum of the canonical CBOR encoding of ``[machine, clients, version]``.

    Raises ``cbor2.CBOREncodeError`` when the machine state cannot be encoded
    (the snapshot could not be written either).
    """
    return checksum(cbor2.dumps([machine, clients, version], canonical=True))


def encode_checkpoint(checkpoint: Checkpoint) -> list[Any]:
    """The value a cluster snapshot file stores for ``checkpoint``."""
    return [
        CHECKPOINT_FORMAT,
        encode_header(checkpoint.header),
        checkpoint.machine,
        checkpoint.clients,
        checkpoint.version,
    ]


def decode_checkpoint(value: Any, *, path: str | None = None) -> Checkpoint:
    """The checkpoint in a cluster snapshot value (the file's checksum already passed).

    Raises :class:`~trio_replica.errors.CorruptionError` (naming ``path``)
    when the value is not a cluster checkpoint of a known layout.
    """
    if not isinstance(value, list) or len(value) != 5 or value[0] != CHECKPOINT_FORMAT:
        raise CorruptionError("the snapshot is not a cluster checkpoint", path=path)
    raw, machine, clients, version = value[1], value[2], value[3], value[4]
    header = decode_header(raw) if isinstance(raw, bytes) else None
    if header is None or not isinstance(clients, list):
        raise CorruptionError("the cluster checkpoint's prepare header does not verify", path=path)
    if version is not None and (type(version) is not int or version < 0):
        raise CorruptionError(f"the cluster checkpoint's version {version!r} is not one", path=path)
    return Checkpoint(header, machine, clients, version)


def switch_version(machine: StateMachine, op: int, version: int) -> None:
    """Switch ``machine`` to ``version`` at committed ``op`` (or at a restart
    from a checkpoint taken after a switch).

    Raises :class:`~trio_replica.errors.MachineVersionError` (naming ``op``)
    when the machine's code is older than ``version`` or its
    :meth:`~trio_replica.stm.protocol.StateMachine.switch_version` refuses.
    """
    code = type(machine).version
    if version > code:
        raise MachineVersionError(
            f"the cluster switched its state machine to version {version}, "
            f"but this replica runs {type(machine).__name__} version {code}",
            version=version,
            code_version=code,
            op=op,
        )
    try:
        machine.switch_version(version)
    except MachineVersionError as error:
        raise MachineVersionError(str(error), version=version, code_version=code, op=op) from error


class StateDivergenceError(ClusterError):
    """This replica's state digest at checkpoint ``op`` differs from its peers':
    an ``apply()`` (or ``snapshot()``) that is not deterministic made the
    replicas diverge. The replica stops rather than serve a divergent state.

    ``replica`` is the replica that stops, ``digests`` maps each replica that
    reported to its digest (hex) at ``op``; ops after the previous checkpoint
    (``since``) up to ``op`` hold the divergent apply.
    """

    def __init__(self, *, replica: int, op: int, since: int, digests: dict[int, bytes]):
        shown = ", ".join(f"r{r}={d.hex()[:16]}" for r, d in sorted(digests.items()))
        super().__init__(
            f"replica {replica} diverged: its state digest at checkpoint op {op} differs "
            f"from the other replicas' ({shown}); a non-deterministic apply() in ops "
            f"{since + 1}..{op}"
        )
        self.replica = replica
        self.op = op
        self.since = since
        self.digests = {r: d.hex() for r, d in digests.items()}
