"""Running a batch of blocking storage calls from Trio.

The one rule: blocking file I/O never runs on the Trio thread, and the
thread hop is paid once per batch, not once per operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from .base import Directory

__all__ = ["run_io"]

T = TypeVar("T")


async def run_io(directory: Directory, fn: Callable[[], T]) -> T:
    """Run ``fn`` (a whole batch of storage calls) for ``directory``.

    On a blocking directory ``fn`` runs in a worker thread. Once it has
    started it is never abandoned: cancellation is deferred until it returns,
    so an fsync in flight always completes and its outcome is always seen by
    the caller (an abandoned fsync would leave its result unknown).

    On an in-memory directory ``fn`` runs inline between the same two
    checkpoints, so that the checkpoint structure (and hence cancellation
    tests under a fixed schedule) is identical and deterministic.
    """
    if directory.blocking:
        return await trio.to_thread.run_sync(fn)
    # Same semantics as to_thread.run_sync(abandon_on_cancel=False): a
    # cancellation can only land before fn starts, never after it ran.
    await trio.lowlevel.checkpoint_if_cancelled()
    result = fn()
    await trio.lowlevel.cancel_shielded_checkpoint()
    return result
