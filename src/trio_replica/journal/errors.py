"""Journal errors that are narrower than the project-wide ones in ``trio_replica.errors``."""

from __future__ import annotations

import trio

from ..errors import JournalError

__all__ = ["CompactedError", "InvalidWatermarkError", "JournalBusyError", "OpNotFoundError"]


class OpNotFoundError(JournalError, LookupError):
    """The op asked for is not in the journal: not yet written (``op > last_op``)
    or never valid (``op < 1``)."""

    def __init__(self, message: str, *, op: int, first_op: int, last_op: int):
        super().__init__(message)
        self.op = op
        self.first_op = first_op
        self.last_op = last_op


class CompactedError(OpNotFoundError):
    """The op asked for was covered by a snapshot and its segment compacted away
    (``op < first_op``). Load the snapshot instead."""


class InvalidWatermarkError(JournalError, ValueError):
    """``set_watermark`` was given an op beyond ``last_op`` or below the
    current watermark (it only moves forward). Nothing was changed."""

    def __init__(self, message: str, *, op: int, watermark: int, last_op: int):
        super().__init__(message)
        self.op = op
        self.watermark = watermark
        self.last_op = last_op


class JournalBusyError(JournalError, trio.BusyResourceError):
    """Another task is already inside ``append``, ``compact`` or ``aclose`` of
    this journal. The journal has one writer: serialize calls (the replica's
    journal writer task does)."""
