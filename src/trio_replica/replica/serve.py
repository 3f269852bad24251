"""``serve_replica``: a replica as a task, for ``nursery.start``.

:func:`~trio_replica.open_replica` is the ``async with`` form; this is the
task form, as trio-websocket offers ``open_websocket`` and
``serve_websocket``. Both open, recover and run the same replica; choose
the one that fits the code around it.
"""

from __future__ import annotations

from typing import Any, NoReturn

import trio

from ..stm.protocol import StateMachine
from ..storage import DirectoryLike
from .handle import Replica
from .nursery import open_replica

__all__ = ["serve_replica"]


async def serve_replica(
    directory: DirectoryLike,
    machine: StateMachine,
    *,
    task_status: trio.TaskStatus[Replica] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> NoReturn:
    """Open and run a replica until cancelled; hand its :class:`Replica` to ``nursery.start``.

    ::

        async with trio.open_nursery() as nursery:
            replica = await nursery.start(serve_replica, "data", MyMachine())
            await replica.submit(command)
            ...
            nursery.cancel_scope.cancel()  # stops the replica

    ``options`` are :func:`~trio_replica.open_replica`'s keyword arguments;
    ``nursery.start`` passes positional arguments only, so bind them with
    ``functools.partial(serve_replica, snapshot_every=1000)`` (the Trio idiom).
    Startup errors (a locked directory, a failed recovery, a bad setting)
    are raised by ``nursery.start`` itself, before it returns. After that the
    task runs until its scope is cancelled, which stops the replica exactly as
    cancelling an ``open_replica`` block does (durable is still durable; a
    request in flight may or may not have been journaled), or until a task of
    the replica fails, which raises that failure into the nursery.
    """
    async with open_replica(directory, machine, **options) as replica:
        task_status.started(replica)
        await trio.sleep_forever()
    raise AssertionError("unreachable: sleep_forever returned")  # pragma: no cover
