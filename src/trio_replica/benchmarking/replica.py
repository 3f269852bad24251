"""Replica throughput and recovery, next to their peers, in one run.

Throughput (:func:`run_throughput`): for each concurrency (1, 8, 64, 256
concurrent submitters) the same run measures, on real files in
``directory``, ``ops`` durable commands of ``body_bytes`` payload each:

* ``replica``: :meth:`Replica.submit` from that many Trio tasks (group
  commit: one fsync per batch of whatever is waiting);
* ``sqlite``: sqlite3 in WAL mode with ``synchronous=FULL``, one transaction
  per op inserting the same payload, from that many threads (one connection
  each);
* ``raw``: one thread writing the same encoded commands with ``os.write`` +
  fdatasync per op: the one-fsync-per-op rate that group commit is measured
  against (it does not depend on the concurrency).

Each row gives ops/s and the p50/p99 latency of one submit, and the ratios
replica/sqlite and replica/raw (the design target at 64 submitters is at
least 20x the raw one-fsync-per-op rate).

Recovery (:func:`run_recovery`): a journal of ``ops`` commands is written
directly (big batches, untimed), then :func:`~trio_replica.replica.recover`
is timed without a snapshot (replaying every op), with a snapshot at the
last op (loading it, scanning the whole journal, replaying nothing), and
with that snapshot after compaction (what a running replica leaves: only
the last segment remains). Replay ops/s is ops replayed / recovery seconds.
The page cache is warm in every case.

Use from code (the CLI's ``bench`` command does)::

    from trio_replica.benchmarking.replica import (
        format_recovery_table, format_throughput_table, run_recovery, run_throughput)
    print(format_throughput_table(run_throughput(ops=2000, directory="bench-data")))
    print(format_recovery_table(run_recovery(ops=100_000, directory="bench-data")))

Both functions block (they run their own ``trio.run``): call them from a
plain thread or process, not from inside a Trio run.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import cbor2
import trio

from ..coordinator import Snapshot, SnapshotStore
from ..journal import Entry, Journal
from ..replica import open_replica, recover
from ..stm.protocol import StateMachine
from ..storage import full_sync

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BlobSink",
    "RecoveryRow",
    "ThroughputRow",
    "format_recovery_table",
    "format_throughput_table",
    "run_recovery",
    "run_throughput",
]

DEFAULT_CONCURRENCY = (1, 8, 64, 256)


class BlobSink(StateMachine):
    """The benchmark's state machine: counts ops and payload bytes (constant memory)."""

    name: ClassVar[str] = "bench-blob-sink"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.ops = 0
        self.bytes = 0

    def apply(self, op: int, command: Any) -> int:
        """Count ``command["v"]`` (bytes); return the ops counted so far."""
        self.ops += 1
        self.bytes += len(command["v"])
        return self.ops

    def snapshot(self) -> dict[str, int]:
        """``{"ops": ..., "bytes": ...}``."""
        return {"ops": self.ops, "bytes": self.bytes}

    def restore(self, state: Any) -> None:
        """Restore the two counters."""
        self.ops = state["ops"]
        self.bytes = state["bytes"]


@attrs.frozen
class Latency:
    """ops/s and per-op latency percentiles (milliseconds) of one measurement."""

    ops: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def ops_per_s(self) -> float:
        """Throughput."""
        return self.ops / self.seconds

    @classmethod
    def of(cls, seconds: float, latencies: Sequence[float]) -> Latency:
        """Summarize wall ``seconds`` and per-op ``latencies`` (seconds)."""
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return cls(len(ordered), seconds, statistics.median(ordered) * 1e3, p99 * 1e3)


@attrs.frozen
class ThroughputRow:
    """The replica and its peers at one concurrency."""

    concurrency: int
    body_bytes: int
    replica: Latency
    sqlite: Latency
    raw: Latency

    @property
    def replica_vs_sqlite(self) -> float:
        """Replica ops/s divided by sqlite's."""
        return self.replica.ops_per_s / self.sqlite.ops_per_s

    @property
    def replica_vs_raw(self) -> float:
        """Replica ops/s divided by the one-fsync-per-op loop's."""
        return self.replica.ops_per_s / self.raw.ops_per_s


@attrs.frozen
class RecoveryRow:
    """One timed recovery."""

    case: str
    ops_in_journal: int
    snapshot_op: int
    ops_replayed: int
    seconds: float
    journal_scan_seconds: float

    @property
    def replay_ops_per_s(self) -> float:
        """Ops replayed per second of the whole recovery (0 when none replayed:
        tables show "-" then, not a rate)."""
        return self.ops_replayed / self.seconds if self.ops_replayed else 0.0


def _command(index: int, payload: bytes) -> dict[str, Any]:
    return {"k": index, "v": payload}


def _payload(body_bytes: int) -> bytes:
    return (b"payload-" * (body_bytes // 8 + 1))[:body_bytes]


# --- throughput ------------------------------------------------------------


def _bench_replica(path: str, ops: int, concurrency: int, payload: bytes) -> Latency:
    async def main() -> Latency:
        latencies: list[float] = []
        async with open_replica(path, BlobSink()) as replica:
            per_task, extra = divmod(ops, concurrency)

            async def submitter(task: int) -> None:
                count = per_task + (task < extra)
                for i in range(count):
                    command = _command(task * ops + i, payload)
                    started = time.perf_counter()
                    await replica.submit(command)
                    latencies.append(time.perf_counter() - started)

            # The first submit creates the first segment: setup, untimed.
            await replica.submit(_command(-1, payload))
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for task in range(concurrency):
                    nursery.start_soon(submitter, task)
            seconds = time.perf_counter() - started
        return Latency.of(seconds, latencies)

    return trio.run(main)


def _bench_sqlite(path: str, ops: int, concurrency: int, payload: bytes) -> Latency:
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE commands (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    setup.close()
    latencies: list[float] = []
    lock = threading.Lock()
    per_task, extra = divmod(ops, concurrency)
    barrier = threading.Barrier(concurrency + 1)

    def worker(task: int) -> None:
        db = sqlite3.connect(path, isolation_level=None, timeout=600)
        try:
            db.execute("PRAGMA synchronous=FULL")
            mine: list[float] = []
            barrier.wait()
            for i in range(per_task + (task < extra)):
                started = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO commands VALUES (?, ?)", (task * ops + i, payload))
                db.execute("COMMIT")
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)
        finally:
            db.close()

    threads = [threading.Thread(target=worker, args=(task,)) for task in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return Latency.of(time.perf_counter() - started, latencies)


def _bench_raw(path: str, ops: int, payload: bytes) -> Latency:
    bodies = [cbor2.dumps(_command(i, payload)) for i in range(ops)]
    latencies: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        started = time.perf_counter()
        for body in bodies:
            begun = time.perf_counter()
            os.write(fd, body)
            full_sync(fd)
            latencies.append(time.perf_counter() - begun)
        return Latency.of(time.perf_counter() - started, latencies)
    finally:
        os.close(fd)


def run_throughput(
    ops: int,
    directory: str,
    *,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    body_bytes: int = 100,
    min_ops_per_submitter: int = 8,
) -> list[ThroughputRow]:
    """Measure the replica, sqlite and the raw loop at every concurrency.

    Each concurrency runs ``max(ops, concurrency * min_ops_per_submitter)``
    ops; every peer writes its own new files under ``directory``. The raw
    loop runs ``ops`` ops once and its figure is reused for every row.
    """
    os.makedirs(directory, exist_ok=True)
    payload = _payload(body_bytes)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    raw = _bench_raw(os.path.join(directory, f"raw-{tag}.log"), ops, payload)
    rows = []
    for level in concurrency:
        count = max(ops, level * min_ops_per_submitter)
        replica = _bench_replica(
            os.path.join(directory, f"replica-c{level}-{tag}"), count, level, payload
        )
        sqlite = _bench_sqlite(
            os.path.join(directory, f"sqlite-c{level}-{tag}.db"), count, level, payload
        )
        rows.append(ThroughputRow(level, body_bytes, replica, sqlite, raw))
    return rows


def format_throughput_table(rows: Sequence[ThroughputRow]) -> str:
    """A plain-text table of ``rows`` with the ratios.

    ``vs 1`` is the group-commit gain: ops/s at this concurrency divided by
    the replica's own ops/s with one submitter, where every op pays its own
    fsync (the one-fsync-per-op rate).
    """
    single = next((row.replica.ops_per_s for row in rows if row.concurrency == 1), None)
    lines = [
        f"{'conc':>4} {'ops':>6} | {'replica ops/s':>13} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'sqlite ops/s':>12} {'p50 ms':>7} {'p99 ms':>7} | {'raw ops/s':>9} | "
        f"{'rep/sqlite':>10} {'rep/raw':>8} {'vs 1':>6}"
    ]
    for row in rows:
        r, s, w = row.replica, row.sqlite, row.raw
        gain = f"{r.ops_per_s / single:>6.1f}" if single else f"{'-':>6}"
        lines.append(
            f"{row.concurrency:>4} {r.ops:>6} | {r.ops_per_s:>13,.0f} {r.p50_ms:>7.2f} "
            f"{r.p99_ms:>7.2f} | {s.ops_per_s:>12,.0f} {s.p50_ms:>7.2f} {s.p99_ms:>7.2f} | "
            f"{w.ops_per_s:>9,.0f} | {row.replica_vs_sqlite:>10.2f} {row.replica_vs_raw:>8.1f} "
            f"{gain}"
        )
    return "\n".join(lines)


# --- recovery --------------------------------------------------------------


async def _write_journal(path: str, ops: int, payload: bytes, batch: int) -> None:
    journal = await Journal.open(path, slot_count=batch)
    try:
        for first in range(1, ops + 1, batch):
            last = min(ops, first + batch - 1)
            entries = [
                Entry(op, cbor2.dumps(_command(op, payload))) for op in range(first, last + 1)
            ]
            await journal.append(entries)
            # Keep the ring free for this bulk load; recovery ignores it.
            journal.set_snapshot_op(last)
    finally:
        await journal.aclose()


async def _timed_recovery(path: str, case: str, ops: int) -> RecoveryRow:
    machine = BlobSink()
    started = time.perf_counter()
    journal, store, report = await recover(path, machine)
    seconds = time.perf_counter() - started
    await store.aclose()
    await journal.aclose()
    if machine.ops != ops:
        raise AssertionError(f"recovered {machine.ops} ops, expected {ops}")
    return RecoveryRow(
        case=case,
        ops_in_journal=report.last_op,
        snapshot_op=report.snapshot_op,
        ops_replayed=report.ops_replayed,
        seconds=seconds,
        journal_scan_seconds=report.journal.seconds,
    )


def run_recovery(
    ops: int, directory: str, *, body_bytes: int = 100, batch: int = 4096
) -> list[RecoveryRow]:
    """Write a journal of ``ops`` commands, then time recovery without a
    snapshot, with a snapshot at the last op, and with it after compaction."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"recovery-{os.getpid()}-{time.monotonic_ns()}")
    payload = _payload(body_bytes)

    async def main() -> list[RecoveryRow]:
        await _write_journal(path, ops, payload, batch)
        rows = [await _timed_recovery(path, "no snapshot", ops)]
        journal = await Journal.open(path)
        try:
            # The snapshot is bound to this journal by its chain checksum.
            store = SnapshotStore(
                path,
                machine_name=BlobSink.name,
                machine_version=BlobSink.version,
                directory_id=journal.directory_id,
                chain_checksum=journal.checksum_at,
            )
            try:
                await store.persist(Snapshot(ops, {"ops": ops, "bytes": ops * len(payload)}))
            finally:
                await store.aclose()
        finally:
            await journal.aclose()
        rows.append(await _timed_recovery(path, "snapshot, not compacted", ops))
        # What a running replica leaves: the journal compacted under the snapshot.
        journal = await Journal.open(path)
        try:
            journal.set_snapshot_op(ops)
            await journal.compact()
        finally:
            await journal.aclose()
        rows.append(await _timed_recovery(path, "snapshot, compacted", ops))
        return rows

    return trio.run(main)


def format_recovery_table(rows: Sequence[RecoveryRow]) -> str:
    """A plain-text table of recovery timings."""
    lines = [
        f"{'case':<24} {'ops':>9} {'snapshot':>9} {'replayed':>9} {'seconds':>8} "
        f"{'scan s':>7} {'replay ops/s':>13}"
    ]
    for row in rows:
        lines.append(
            f"{row.case:<24} {row.ops_in_journal:>9,} {row.snapshot_op:>9,} "
            f"{row.ops_replayed:>9,} {row.seconds:>8.2f} {row.journal_scan_seconds:>7.2f} "
            + (f"{row.replay_ops_per_s:>13,.0f}" if row.ops_replayed else f"{'-':>13}")
        )
    return "\n".join(lines)
