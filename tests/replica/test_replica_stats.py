"""Replica.stats(): counters a user can read from a running replica."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.lowlevel

from trio_replica import open_replica
from trio_replica.machines import Counter


async def test_counters_follow_what_the_replica_did(tmp_path: Path) -> None:
    clients, each = 32, 8
    peaks = {"intake": 0}
    async with open_replica(
        tmp_path / "data", Counter(), snapshot_every=50, segment_bytes=4096
    ) as replica:
        before = replica.stats()
        assert (before.ops, before.batches, before.ops_per_fsync) == (0, 0, 0.0)
        assert before.last_checkpoint_op == 0 and before.snapshot_failures == 0

        async def client() -> None:
            for _ in range(each):
                await replica.submit({"add": 1})

        async def monitor(done: trio.Event) -> None:
            while not done.is_set():
                peaks["intake"] = max(peaks["intake"], replica.stats().queue_depths["intake"])
                await trio.lowlevel.checkpoint()

        done = trio.Event()
        async with trio.open_nursery() as watching:
            watching.start_soon(monitor, done)
            async with trio.open_nursery() as nursery:
                for _ in range(clients):
                    nursery.start_soon(client)
            done.set()
        await replica.checkpoint()
        stats = replica.stats()

    total = clients * each
    assert stats.ops == total and stats.applied_op == total and stats.prepared_op == total
    # Group commit: fewer fsynced batches than ops, and the factor says so.
    assert 0 < stats.batches < total
    assert stats.ops_per_fsync == total / stats.batches > 1
    assert stats.fsync_seconds > 0
    assert stats.last_checkpoint_op == total  # the explicit checkpoint
    assert stats.segments_created >= 2 and stats.segments_compacted >= 1  # 4 KiB segments
    # While the writer was in its fsync, requests queued in the intake.
    assert peaks["intake"] > 0
    assert set(stats.queue_depths) == {
        "intake",
        "entries",
        "durable",
        "committed",
        "snapshots",
        "control",
    }
    assert set(stats.queue_depths.values()) == {0}  # idle now
    text = str(stats)
    assert f"since open: {total} ops in {stats.batches} fsynced batches" in text
    assert "queued now: 0 in intake, 0 in entries" in text
