"""Errors of the cluster core."""

from __future__ import annotations

from ..errors import ReplicaError

__all__ = ["ClusterError", "ProtocolInvariantError"]


class ClusterError(ReplicaError):
    """Base class of cluster errors."""


class ProtocolInvariantError(ClusterError):
    """The core found its own state contradicting a protocol invariant (for
    example a committed op whose successor does not link to it). Under the
    protocol's rules this cannot happen; it means a bug, or a broken rule in
    a test. The replica must stop. ``replica``, ``view`` and ``op`` say where."""

    def __init__(self, reason: str, *, replica: int, view: int, op: int | None = None):
        super().__init__(f"{reason} (replica {replica}, view {view}, op {op})")
        self.reason = reason
        self.replica = replica
        self.view = view
        self.op = op
