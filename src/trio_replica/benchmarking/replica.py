"""Replica throughput and recovery, next to their peers, in one run.

Throughput (:func:`run_throughput`): for each concurrency (1, 8, 64, 256
concurrent submitters) the same run measures, on real files in
``directory``, ``ops`` durable commands of ``body_bytes`` payload each:

* ``replica``: :meth:`Replica.submit` from that many Trio tasks (group
  commit: one fsync per batch of whatever is waiting);
* the peers of :mod:`trio_replica.benchmarking.peers` with the same payload
  and the same concurrency (threads): sqlite3 as a lock convoy (one
  transaction per op), sqlite3 with one writer thread group-committing for
  the producer threads, and LMDB (one write transaction per op) when the
  ``lmdb`` package is installed;
* ``raw``: one thread writing the same encoded commands with ``os.write`` +
  fdatasync per op: the one-fsync-per-op rate that group commit is measured
  against (it does not depend on the concurrency).

Each row gives ops/s and the p50/p99 latency of one submit, and the ratios
of the replica to each peer (higher is better).

Batches (:func:`run_batches`): one task calling
:meth:`Replica.submit_many` with ``batch`` commands at a time, against the
raw loop.

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
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import cbor2
import trio

from .. import codec
from ..coordinator import Snapshot, SnapshotStore
from ..journal import Entry, Journal
from ..replica import open_replica, recover
from ..stm.protocol import StateMachine
from .peers import Latency, lmdb_per_op, raw_loop, sqlite_convoy, sqlite_group_commit

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BatchRow",
    "BlobSink",
    "Latency",
    "RecoveryRow",
    "ThroughputRow",
    "decode_apply_ops_per_s",
    "format_batch_table",
    "format_recovery_table",
    "format_throughput_table",
    "run_batches",
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
class ThroughputRow:
    """The replica and its peers at one concurrency (``lmdb`` is ``None``
    when the package is not installed)."""

    concurrency: int
    body_bytes: int
    replica: Latency
    sqlite_convoy: Latency
    sqlite_group: Latency
    lmdb: Latency | None
    raw: Latency

    @property
    def replica_vs_sqlite_convoy(self) -> float:
        """Replica ops/s divided by the sqlite lock convoy's."""
        return self.replica.ops_per_s / self.sqlite_convoy.ops_per_s

    @property
    def replica_vs_sqlite_group(self) -> float:
        """Replica ops/s divided by sqlite group commit's."""
        return self.replica.ops_per_s / self.sqlite_group.ops_per_s

    @property
    def replica_vs_lmdb(self) -> float | None:
        """Replica ops/s divided by LMDB's (``None`` without LMDB)."""
        return None if self.lmdb is None else self.replica.ops_per_s / self.lmdb.ops_per_s

    @property
    def replica_vs_raw(self) -> float:
        """Replica ops/s divided by the one-fsync-per-op loop's."""
        return self.replica.ops_per_s / self.raw.ops_per_s


@attrs.frozen
class BatchRow:
    """``submit_many`` of ``batch`` commands at a time, from one task."""

    batch: int
    body_bytes: int
    replica: Latency
    raw: Latency

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


def _bench_batches(path: str, ops: int, batch: int, payload: bytes) -> Latency:
    async def main() -> Latency:
        latencies: list[float] = []
        async with open_replica(path, BlobSink(), max_batch=max(batch, 1)) as replica:
            await replica.submit(_command(-1, payload))  # setup: the first segment
            started = time.perf_counter()
            for first in range(0, ops, batch):
                commands = [_command(i, payload) for i in range(first, min(ops, first + batch))]
                begun = time.perf_counter()
                await replica.submit_many(commands)
                # Per-op latency: every op of the batch waited as long as the batch.
                latencies.extend([time.perf_counter() - begun] * len(commands))
            seconds = time.perf_counter() - started
        return Latency.of(seconds, latencies)

    return trio.run(main)


def _raw(path: str, ops: int, payload: bytes) -> Latency:
    return raw_loop(path, [cbor2.dumps(_command(i, payload)) for i in range(ops)])


def run_throughput(
    ops: int,
    directory: str,
    *,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    body_bytes: int = 100,
    min_ops_per_submitter: int = 8,
) -> list[ThroughputRow]:
    """Measure the replica and every peer at every concurrency.

    Each concurrency runs ``max(ops, concurrency * min_ops_per_submitter)``
    ops; every peer writes its own new files under ``directory``. The raw
    loop runs ``ops`` ops once and its figure is reused for every row.
    """
    os.makedirs(directory, exist_ok=True)
    payload = _payload(body_bytes)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    raw = _raw(os.path.join(directory, f"raw-{tag}.log"), ops, payload)
    rows = []
    for level in concurrency:
        count = max(ops, level * min_ops_per_submitter)

        def path(peer: str, level: int = level) -> str:
            return os.path.join(directory, f"{peer}-c{level}-{tag}")

        replica = _bench_replica(path("replica"), count, level, payload)
        convoy = sqlite_convoy(path("sqlite-convoy") + ".db", payload, count, level)
        group = sqlite_group_commit(path("sqlite-group") + ".db", payload, count, level)
        lmdb = lmdb_per_op(path("lmdb"), payload, count, level)
        rows.append(ThroughputRow(level, body_bytes, replica, convoy, group, lmdb, raw))
    return rows


def run_batches(ops: int, directory: str, *, batch: int = 256, body_bytes: int = 100) -> BatchRow:
    """Measure ``submit_many`` of ``batch`` commands at a time (``ops`` in
    all) from one task, next to the raw loop of ``ops`` ops."""
    os.makedirs(directory, exist_ok=True)
    payload = _payload(body_bytes)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    raw = _raw(os.path.join(directory, f"raw-batch-{tag}.log"), ops, payload)
    replica = _bench_batches(os.path.join(directory, f"batches-{tag}"), ops, batch, payload)
    return BatchRow(batch, body_bytes, replica, raw)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_throughput_table(rows: Sequence[ThroughputRow]) -> str:
    """A plain-text table of ``rows``: ops/s and p50 latency of the replica
    and of each peer, then the replica's ratio to each (higher is better)."""
    lines = [
        f"{'conc':>4} {'ops':>6} | {'replica':>8} {'p50 ms':>6} {'p99 ms':>6} | "
        f"{'raw':>6} {'sq-conv':>7} {'sq-group':>8} {'lmdb':>6} | ops/s; replica vs: "
        f"{'raw':>6} {'sq-conv':>7} {'sq-group':>8} {'lmdb':>6}"
    ]
    for row in rows:
        r = row.replica
        lmdb = f"{row.lmdb.ops_per_s:>6,.0f}" if row.lmdb is not None else f"{'-':>6}"
        lines.append(
            f"{row.concurrency:>4} {r.ops:>6} | {r.ops_per_s:>8,.0f} {r.p50_ms:>6.2f} "
            f"{r.p99_ms:>6.2f} | {row.raw.ops_per_s:>6,.0f} "
            f"{row.sqlite_convoy.ops_per_s:>7,.0f} {row.sqlite_group.ops_per_s:>8,.0f} "
            f"{lmdb} |{'':>19}{row.replica_vs_raw:>6.2f} {row.replica_vs_sqlite_convoy:>7.2f} "
            f"{row.replica_vs_sqlite_group:>8.2f} {_ratio(row.replica_vs_lmdb):>6}"
        )
    return "\n".join(lines)


def format_batch_table(row: BatchRow) -> str:
    """One line: ``submit_many`` throughput next to the raw loop."""
    return (
        f"submit_many of {row.batch}: {row.replica.ops_per_s:,.0f} ops/s "
        f"(p50 {row.replica.p50_ms:.2f} ms per batch); raw write+fdatasync per op: "
        f"{row.raw.ops_per_s:,.0f} ops/s; replica vs raw: {row.replica_vs_raw:.1f}"
    )


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
            journal.set_watermark(last)
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
            journal.set_watermark(ops)
            await journal.compact()
        finally:
            await journal.aclose()
        rows.append(await _timed_recovery(path, "snapshot, compacted", ops))
        return rows

    return trio.run(main)


def decode_apply_ops_per_s(ops: int, *, body_bytes: int = 100) -> float:
    """The irreducible replay loop: ``codec.decode`` + ``apply`` of the same
    commands recovery replays, from memory (no file, no checksum), ops/s."""
    payload = _payload(body_bytes)
    bodies = [cbor2.dumps(_command(op, payload)) for op in range(1, ops + 1)]
    machine = BlobSink()
    started = time.perf_counter()
    for op, body in enumerate(bodies, 1):
        machine.apply(op, codec.decode(body))
    return ops / (time.perf_counter() - started)


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
