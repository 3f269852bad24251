"""LocalCluster.wait_normal(quiet=True): quiet includes every journal write done.

A replica applies a committed op perhaps before its own journal write of it
is done (the op is durable on a quorum already). A checker that stops the
cluster and compares the directories must wait for those writes too, or a
stop that cancels an in-flight write leaves one journal a few ops short of
its peers while every status said the same op, commit and applied op.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import trio

from trio_replica.testing.local_cluster import LocalCluster


def _status(replica: int, *, op: int, durable: int) -> dict[str, Any]:
    return {
        "replica": replica,
        "view": 4,
        "status": "normal",
        "primary": replica == 1,
        "op": op,
        "commit": op,
        "applied": op,
        "durable": durable,
    }


class _Scripted(LocalCluster):
    """A LocalCluster whose status answers are scripted (no processes)."""

    def __init__(self, answers: list[list[dict[str, Any] | None]]):
        self.addresses = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        self._answers: Iterator[list[dict[str, Any] | None]] = iter(answers)
        self.asked = 0

    async def statuses(self, *, wait_seconds: float = 1.0) -> list[dict[str, Any] | None]:
        self.asked += 1
        return next(self._answers)


async def test_quiet_waits_for_the_journal_writes_of_applied_ops() -> None:
    # Replica 2 applied op 348 (committed on the quorum 0, 1) while its own
    # write of ops 342..348 is still in flight.
    writing = [_status(0, op=348, durable=348), _status(1, op=348, durable=348)]
    writing.append(_status(2, op=348, durable=341))
    done = [_status(i, op=348, durable=348) for i in range(3)]
    cluster = _Scripted([writing, writing, done])
    with trio.fail_after(5):
        found = await cluster.wait_normal(quiet=True, poll=0)
    assert cluster.asked == 3
    assert [s["durable"] for s in found] == [348, 348, 348]


async def test_not_quiet_does_not_wait_for_writes() -> None:
    writing = [_status(0, op=348, durable=348), _status(1, op=348, durable=348)]
    writing.append(_status(2, op=348, durable=341))
    cluster = _Scripted([writing])
    with trio.fail_after(5):
        found = await cluster.wait_normal(poll=0)
    assert cluster.asked == 1
    assert found[2]["durable"] == 341


async def test_quiet_still_waits_for_one_op_commit_and_applied() -> None:
    behind = [_status(i, op=348, durable=348) for i in range(2)]
    behind.append({**_status(2, op=348, durable=348), "applied": 347})
    done = [_status(i, op=348, durable=348) for i in range(3)]
    cluster = _Scripted([behind, done])
    with trio.fail_after(5):
        await cluster.wait_normal(quiet=True, poll=0)
    assert cluster.asked == 2
