"""Durable append throughput of the journal next to its peers, in one run.

For each batch size (1, 16, 256 ops per batch) the same run measures, on
real files in ``directory``, appending ``ops`` records of ``body_bytes``
each, durably, one fsync per batch:

* ``journal``: :meth:`Journal.append` under Trio (encode, one thread hop,
  one write, one fdatasync per batch);
* ``raw``: a plain loop of ``os.write`` + ``os.fdatasync`` writing exactly the
  same bytes per batch (the journal's own encoding, prepared before timing):
  the limit any durable log pays;
* ``sqlite``: sqlite3 in WAL mode with ``synchronous=FULL``, one transaction
  per batch inserting ``(op, body)`` rows.

Each figure is the best of ``repeat`` runs. Throughput is ops per second;
ratios are journal/raw (1.0 = as fast as the raw loop; the target at batch
256 is at least 0.5) and journal/sqlite.

Use from code (the CLI's ``bench`` command does)::

    from trio_replica.benchmarking.journal import run, format_table
    print(format_table(run(ops=2048, directory="bench-data")))
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence

import attrs
import trio

from ..journal import Entry, Journal
from ..journal.record import GENESIS_PARENT, encode_batch
from ..storage import full_sync

__all__ = ["DEFAULT_BATCH_SIZES", "JournalBenchRow", "format_table", "run"]

DEFAULT_BATCH_SIZES = (1, 16, 256)


@attrs.frozen
class JournalBenchRow:
    """Ops per second of the journal and its peers for one batch size."""

    batch: int
    ops: int
    body_bytes: int
    journal_ops_per_s: float
    raw_ops_per_s: float
    sqlite_ops_per_s: float

    @property
    def journal_vs_raw(self) -> float:
        """Journal throughput as a fraction of the raw write+fdatasync loop."""
        return self.journal_ops_per_s / self.raw_ops_per_s

    @property
    def journal_vs_sqlite(self) -> float:
        """Journal throughput divided by sqlite's."""
        return self.journal_ops_per_s / self.sqlite_ops_per_s


def _bodies(ops: int, body_bytes: int) -> list[bytes]:
    return [(b"%08d" % op).ljust(body_bytes, b".")[:body_bytes] for op in range(1, ops + 1)]


def _bench_journal(path: str, bodies: Sequence[bytes], batch: int) -> float:
    async def main() -> float:
        journal = await Journal.open(path, slot_count=max(batch, 1) * 2)
        try:
            # Creating the first segment (file, header, two fsyncs) is setup,
            # like opening the peers' files: one untimed op does it.
            await journal.append([Entry(1, b"")])
            journal.set_watermark(1)
            started = time.perf_counter()
            for start in range(0, len(bodies), batch):
                chunk = bodies[start : start + batch]
                first = journal.last_op + 1
                await journal.append([Entry(first + i, b) for i, b in enumerate(chunk)])
                journal.set_watermark(journal.last_op)
            return time.perf_counter() - started
        finally:
            await journal.aclose()

    return trio.run(main)


def _bench_raw(path: str, bodies: Sequence[bytes], batch: int) -> float:
    # The journal's exact bytes per batch, encoded before the clock starts.
    buffers = []
    parent = GENESIS_PARENT
    for start in range(0, len(bodies), batch):
        encoded = encode_batch(start + 1, parent, bodies[start : start + batch])
        buffers.append(encoded.data)
        parent = encoded.tip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        started = time.perf_counter()
        for data in buffers:
            os.write(fd, data)
            full_sync(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def _bench_sqlite(path: str, bodies: Sequence[bytes], batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE log (op INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        started = time.perf_counter()
        for start in range(0, len(bodies), batch):
            rows = [(start + 1 + i, b) for i, b in enumerate(bodies[start : start + batch])]
            db.execute("BEGIN")
            db.executemany("INSERT INTO log VALUES (?, ?)", rows)
            db.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        db.close()


def run(
    ops: int,
    directory: str,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    body_bytes: int = 100,
    repeat: int = 3,
    min_batches: int = 32,
) -> list[JournalBenchRow]:
    """Measure every batch size; each peer writes to its own new file under ``directory``.

    Each batch size writes ``max(ops, batch * min_batches)`` ops, so that a
    large batch size is still timed over many fsyncs. Each figure is the best
    of ``repeat`` runs, the peers taking turns. Blocking (it runs its own
    ``trio.run`` for the journal): call it from a plain thread or process,
    not from inside a Trio run.
    """
    os.makedirs(directory, exist_ok=True)
    rows = []
    for batch in batch_sizes:
        count = max(ops, batch * min_batches)
        bodies = _bodies(count, body_bytes)
        journal_s = raw_s = sqlite_s = float("inf")
        for attempt in range(repeat):
            tag = f"b{batch}-{attempt}-{os.getpid()}-{time.monotonic_ns()}"
            journal_s = min(
                journal_s, _bench_journal(os.path.join(directory, f"journal-{tag}"), bodies, batch)
            )
            raw_s = min(raw_s, _bench_raw(os.path.join(directory, f"raw-{tag}.log"), bodies, batch))
            sqlite_s = min(
                sqlite_s, _bench_sqlite(os.path.join(directory, f"sqlite-{tag}.db"), bodies, batch)
            )
        rows.append(
            JournalBenchRow(
                batch=batch,
                ops=count,
                body_bytes=body_bytes,
                journal_ops_per_s=count / journal_s,
                raw_ops_per_s=count / raw_s,
                sqlite_ops_per_s=count / sqlite_s,
            )
        )
    return rows


def format_table(rows: Sequence[JournalBenchRow]) -> str:
    """A plain-text table of ``rows`` with the ratios."""
    lines = [
        f"{'batch':>5} {'ops':>7} {'journal ops/s':>14} {'raw ops/s':>12} {'sqlite ops/s':>13} "
        f"{'journal/raw':>12} {'journal/sqlite':>15}"
    ]
    for row in rows:
        lines.append(
            f"{row.batch:>5} {row.ops:>7} {row.journal_ops_per_s:>14,.0f} "
            f"{row.raw_ops_per_s:>12,.0f} {row.sqlite_ops_per_s:>13,.0f} "
            f"{row.journal_vs_raw:>12.2f} {row.journal_vs_sqlite:>15.2f}"
        )
    return "\n".join(lines)
