"""The demo's child process: a replica fed by many concurrent clients.

It opens a replica of the metadata state machine and runs ``clients``
client tasks, each submitting, one at a time, the commands
:func:`client_commands` plans for it: the workload is a function of
``(seed, ops, clients)`` alone, so the same ``--seed`` reruns it exactly
(which op number each command gets depends on the scheduling of the clients,
which the seed does not control). It reports to the parent through the ack
log file, one line each:

* ``ready <applied op>`` once the replica is open;
* ``ack <op> <command as CBOR, hex>`` after each command is durable and applied;
* ``reject <op> <command as CBOR, hex>`` after each command the state machine
  rejected (durable too; just ``reject`` if the error carries no op);
* ``done`` when every command was answered.

A line is written only after its command was acknowledged, so every ack the
parent reads is a promise the recovered directory must keep. One task owns
the log and writes whatever lines have piled up with one ``write`` in a
worker thread. After ``done`` the replica stays open (the parent kills this
process); it exits when its stdin closes, so it never outlives a parent
that died.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from itertools import islice
from typing import Any

import attrs
import cbor2
import trio

from ...errors import InvalidCommand
from ...machines.metadata import MetadataStateMachine
from ...machines.workload import metadata_workload
from ...replica import open_replica

__all__ = ["WriterConfig", "client_commands", "client_quota", "run_writer"]

_PENDING_LINES = 4096  # acks waiting to be written; beyond this, clients wait


@attrs.frozen
class WriterConfig:
    """What the parent tells the writer on its command line."""

    directory: str
    acks: str
    ops: int
    clients: int
    seed: int
    snapshot_every: int
    segment_bytes: int


def client_quota(ops: int, clients: int, client_id: int) -> int:
    """How many of the ``ops`` commands client ``client_id`` submits.

    Shares differ by at most one: the first ``ops % clients`` clients get one more.
    """
    share, extra = divmod(ops, clients)
    return share + (1 if client_id < extra else 0)


def client_commands(seed: int, ops: int, clients: int, client_id: int) -> Iterator[dict[str, Any]]:
    """The commands client ``client_id`` submits, in order (generated lazily):
    its own seeded stream of :func:`~trio_replica.machines.workload.metadata_workload`,
    cut at its quota."""
    stream = metadata_workload(random.Random(f"{seed}:{client_id}"), client_id)
    return islice(stream, client_quota(ops, clients, client_id))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _write_lines(lines: trio.MemoryReceiveChannel[bytes], fd: int) -> None:
    async for line in lines:
        batch = [line]
        while True:
            try:
                batch.append(lines.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        await trio.to_thread.run_sync(_write_all, fd, b"".join(batch))


async def _exit_when_parent_leaves(parent: trio.abc.ReceiveStream, scope: trio.CancelScope) -> None:
    while await parent.receive_some():
        pass
    scope.cancel()


async def run_writer(config: WriterConfig) -> None:
    """Run the writer until the parent kills it or closes our stdin."""
    acks = os.open(config.acks, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    parent = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        await _serve_clients(config, acks, parent)
    finally:
        os.close(acks)
        await parent.aclose()


async def _serve_clients(config: WriterConfig, acks: int, parent: trio.abc.ReceiveStream) -> None:
    send_line, lines = trio.open_memory_channel[bytes](_PENDING_LINES)

    async def client(client_id: int) -> None:
        """Submit this client's planned commands one at a time."""
        for command in client_commands(config.seed, config.ops, config.clients, client_id):
            try:
                applied = await replica.execute(command)
            except InvalidCommand as exc:
                # A rejection is journaled and acknowledged too; its op says where.
                if exc.op is None:
                    await send_line.send(b"reject\n")
                else:
                    body = cbor2.dumps(command).hex().encode()
                    await send_line.send(b"reject %d %s\n" % (exc.op, body))
                continue
            await send_line.send(b"ack %d %s\n" % (applied.op, cbor2.dumps(command).hex().encode()))

    async with (
        open_replica(
            config.directory,
            MetadataStateMachine(),
            snapshot_every=config.snapshot_every,
            segment_bytes=config.segment_bytes,
        ) as replica,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_write_lines, lines, acks)
        nursery.start_soon(_exit_when_parent_leaves, parent, nursery.cancel_scope)
        await send_line.send(b"ready %d\n" % replica.applied_op)
        async with trio.open_nursery() as clients:
            for client_id in range(config.clients):
                clients.start_soon(client, client_id)
        await send_line.send(b"done\n")
        await trio.sleep_forever()
