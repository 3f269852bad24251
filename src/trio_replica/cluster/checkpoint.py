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
  retries exactly as one that replayed from op 1.

Its **state digest** is the checksum of the canonical CBOR encoding of
``[machine state, client table]`` (map keys sorted, so two equal states
give the same digest whatever order Python's per-process string hashing
put a dict or set in). Replicas exchange digests at each checkpoint op and a
replica whose digest differs from the quorum's stops (a non-deterministic
``apply()``; see :class:`StateDivergenceError`).

The value a cluster snapshot file holds (``docs/format.md``, "Cluster
snapshot") is the CBOR array ``[1, header, machine state, client table]``,
``header`` being the 96 bytes of the prepare header.
"""

from __future__ import annotations

from typing import Any

import attrs
import cbor2

from ..errors import CorruptionError
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
]

CHECKPOINT_FORMAT = 1
"""The first item of a cluster snapshot value: its layout version."""


@attrs.frozen
class Checkpoint:
    """The replicated state at a checkpoint op (see the module docstring).

    ``header`` is the prepare of op ``header.op``; ``machine`` what the state
    machine's ``snapshot()`` returned; ``clients`` the client table as
    :meth:`~.client_table.ClientTable.canonical` gives it.
    """

    header: PrepareHeader
    machine: Any
    clients: list[list[Any]]

    @property
    def op(self) -> int:
        """The checkpoint op."""
        return self.header.op

    def digest(self) -> bytes:
        """The state digest (16 bytes) of this checkpoint."""
        return state_digest(self.machine, self.clients)


def is_checkpoint_op(op: int, interval: int) -> bool:
    """Whether committed ``op`` is a checkpoint op (a positive multiple of ``interval``)."""
    return op > 0 and op % interval == 0


def state_digest(machine: Any, clients: list[list[Any]]) -> bytes:
    """The checksum of the canonical CBOR encoding of ``[machine, clients]``.

    Raises ``cbor2.CBOREncodeError`` when the machine state cannot be encoded
    (the snapshot could not be written either).
    """
    return checksum(cbor2.dumps([machine, clients], canonical=True))


def encode_checkpoint(checkpoint: Checkpoint) -> list[Any]:
    """The value a cluster snapshot file stores for ``checkpoint``."""
    return [
        CHECKPOINT_FORMAT,
        encode_header(checkpoint.header),
        checkpoint.machine,
        checkpoint.clients,
    ]


def decode_checkpoint(value: Any, *, path: str | None = None) -> Checkpoint:
    """The checkpoint in a cluster snapshot value (the file's checksum already passed).

    Raises :class:`~trio_replica.errors.CorruptionError` (naming ``path``)
    when the value is not a cluster checkpoint of a known layout.
    """
    if not isinstance(value, list) or len(value) != 4 or value[0] != CHECKPOINT_FORMAT:
        raise CorruptionError("the snapshot is not a cluster checkpoint", path=path)
    raw, machine, clients = value[1], value[2], value[3]
    header = decode_header(raw) if isinstance(raw, bytes) else None
    if header is None or not isinstance(clients, list):
        raise CorruptionError("the cluster checkpoint's prepare header does not verify", path=path)
    return Checkpoint(header, machine, clients)


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
