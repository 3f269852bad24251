"""The intake: where submitters leave requests for the sequencer, no channel round trip per op.

A submit used to be a memory-channel send of one message plus one
``Event`` for its reply; at 64 submitters those two round trips were a
third of the Trio thread's time per op. Here a submitter appends its
command to the *open* :class:`~trio_replica.pipeline.RequestGroup` (a list
append, no schedule point) and waits on that group; the sequencer takes
every queued group at once. So a batch costs one wake of the sequencer and
one wake of its submitters, whatever its size.

Backpressure is kept: at most ``capacity`` commands (and checkpoint
requests) wait here; a submitter that finds the intake full parks until the
sequencer takes some (cancelling it there leaves nothing queued, like a
cancelled channel send). Order is arrival order: groups, checkpoint requests
and ``Stop`` are taken in the order they were put.

Trio runs one task at a time, so the deque needs no lock; the only rule is
ownership: a group is written by submitters while it is the open group, and
only by the sequencer (then the tasks after it) once taken.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from ..pipeline import CheckpointRequest, InboxMessage, RequestGroup, Stop

__all__ = ["Intake", "IntakeClosed"]


class IntakeClosed(Exception):
    """The intake takes no more requests (the replica is closing or stopped).
    Internal: the replica handle turns it into the error that says why."""


class Intake:
    """A bounded, ordered queue of request groups, checkpoint requests and ``Stop``.

    ``capacity``: requests (commands and checkpoint requests) that may wait
    to be taken; ``max_group``: the most commands a group collects before a
    new one is opened (the sequencer's batch size; a :meth:`put_many` group
    can be larger).
    """

    def __init__(self, *, capacity: int, max_group: int) -> None:
        self._capacity = capacity
        self._max_group = max_group
        self._queue: deque[InboxMessage] = deque()
        # The last group in the queue while it may still take commands.
        self._open: RequestGroup | None = None
        self._queued = 0  # requests in the queue
        self._closed = False
        self._taker = trio.lowlevel.ParkingLot()  # the sequencer, waiting for work
        self._space = trio.lowlevel.ParkingLot()  # submitters, waiting for room

    @property
    def queued(self) -> int:
        """Requests (commands and checkpoint requests) waiting for the sequencer now."""
        return self._queued

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    async def _wait_for_room(self) -> None:
        # A schedule point either way (Trio's rule for async functions that
        # may block), and a cancellation here leaves nothing queued.
        if self._queued < self._capacity and not self._closed:
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        while self._queued >= self._capacity and not self._closed:
            await self._space.park()
        if self._closed:
            raise IntakeClosed

    def _check_open(self) -> None:
        if self._closed:
            raise IntakeClosed

    async def put(self, body: bytes, command: Any) -> tuple[RequestGroup, int]:
        """Queue one command; return its group and its index in the group.

        Raises :class:`IntakeClosed` (nothing queued) if the intake is or
        gets closed before there is room.
        """
        self._check_open()
        await self._wait_for_room()
        group = self._open
        if group is None or len(group) >= self._max_group:
            group = self._new_group()
        index = group.add(body, command)
        self._queued += 1
        if self._taker:  # the sequencer is parked: wake it (once per batch in practice)
            self._taker.unpark()
        return group, index

    async def put_many(self, bodies: list[bytes], commands: list[Any]) -> RequestGroup:
        """Queue several commands as one group of their own (consecutive ops,
        in order, none interleaved); return the group. All or nothing: on
        :class:`IntakeClosed` or a cancellation nothing is queued.

        It waits only until the intake is not full, then queues the whole
        group at once, so a group larger than ``capacity`` is still taken
        (the intake then overshoots once, by that group).
        """
        self._check_open()
        await self._wait_for_room()
        group = self._new_group()
        group.extend(bodies, commands)
        self._open = None  # nothing joins it: its ops are the caller's alone
        self._queued += len(bodies)
        self._taker.unpark()
        return group

    async def put_checkpoint(self, request: CheckpointRequest) -> None:
        """Queue a checkpoint request behind every request queued before it."""
        self._check_open()
        await self._wait_for_room()
        self._queue.append(request)
        self._open = None  # later commands go after the checkpoint
        self._queued += 1
        self._taker.unpark()

    def _new_group(self) -> RequestGroup:
        group = RequestGroup()
        self._queue.append(group)
        self._open = group
        return group

    def close(self) -> None:
        """Take no more requests and queue ``Stop`` behind the ones queued.

        Submitters waiting for room get :class:`IntakeClosed` (nothing of
        theirs was queued); every queued request is still taken, in order.
        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._open = None
        self._queue.append(Stop())
        self._space.unpark_all()
        self._taker.unpark()

    def pending(self) -> list[RequestGroup | CheckpointRequest]:
        """The requests still queued (used at shutdown to fail them)."""
        return [item for item in self._queue if not isinstance(item, Stop)]

    async def take(self, max_ops: int) -> list[InboxMessage]:
        """Wait until something is queued, then take it in arrival order:
        whole groups while they add up to at most ``max_ops`` commands (at
        least one item; a single larger group is taken alone), checkpoint
        requests among them, and ``Stop`` (always last: nothing is queued
        after it)."""
        queue = self._queue
        while not queue:
            await self._taker.park()
        taken: list[InboxMessage] = []
        ops = 0
        while queue:
            item = queue[0]
            if isinstance(item, RequestGroup) and ops and ops + len(item) > max_ops:
                break  # whole groups only: a group is made durable in one append
            queue.popleft()
            taken.append(item)
            if isinstance(item, RequestGroup):
                if item is self._open:
                    self._open = None
                ops += len(item)
                self._queued -= len(item)
            elif isinstance(item, CheckpointRequest):
                self._queued -= 1
        if self._space:
            self._space.unpark_all()
        return taken
