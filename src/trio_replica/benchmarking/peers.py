"""The peers a durable submit is measured against, each doing the same durable work.

Every peer makes ``len(payloads)`` small records durable, one record per
request, from ``concurrency`` producer threads (except the raw loop, which
has no concurrency to exploit), and reports ops/s with per-request latency:

* :func:`raw_loop`: one thread, ``os.write`` + fdatasync per record: what one
  fsync per op costs on this disk, the unit the goals are stated in;
* :func:`sqlite_convoy`: sqlite3 (WAL, ``synchronous=FULL``), one
  transaction per record from ``concurrency`` threads with a connection each:
  the write lock makes them a convoy, one fsync per op;
* :func:`sqlite_group_commit`: the same database, one writer thread that
  takes everything the ``concurrency`` producer threads have queued and
  commits it in one transaction (one fsync per batch), then wakes those
  producers: what a careful Python user writes;
* :func:`lmdb_per_op`: LMDB (the ``lmdb`` package, ``sync=True``), one
  write transaction per record from ``concurrency`` threads; ``None`` when
  the package is not installed (it is an optional benchmark extra, never a
  runtime dependency).

These functions block; call them outside a Trio run.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Sequence

import attrs

from ..storage import full_sync

__all__ = [
    "Latency",
    "lmdb_per_op",
    "raw_loop",
    "sqlite_convoy",
    "sqlite_group_commit",
]


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


def raw_loop(path: str, bodies: Sequence[bytes]) -> Latency:
    """One thread: ``os.write`` + fdatasync of each body in turn."""
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


def _threads(
    concurrency: int, count: int, work: Callable[[int, int, list[float]], None]
) -> Latency:
    """Run ``work(task, ops, latencies)`` in ``concurrency`` threads sharing
    ``count`` ops; time from a common start to the last thread's end."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_task, extra = divmod(count, concurrency)
    barrier = threading.Barrier(concurrency + 1)
    errors: list[BaseException] = []

    def worker(task: int) -> None:
        mine: list[float] = []
        try:
            barrier.wait()
            work(task, per_task + (task < extra), mine)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(task,)) for task in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return Latency.of(time.perf_counter() - started, latencies)


def _sqlite_setup(path: str) -> None:
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE commands (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    setup.close()


def sqlite_convoy(path: str, payload: bytes, ops: int, concurrency: int) -> Latency:
    """One ``BEGIN IMMEDIATE; INSERT; COMMIT`` per op from ``concurrency``
    threads, each with its own connection (WAL, ``synchronous=FULL``)."""
    _sqlite_setup(path)

    def work(task: int, count: int, latencies: list[float]) -> None:
        db = sqlite3.connect(path, isolation_level=None, timeout=600)
        try:
            db.execute("PRAGMA synchronous=FULL")
            for i in range(count):
                started = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO commands VALUES (?, ?)", (task * ops + i, payload))
                db.execute("COMMIT")
                latencies.append(time.perf_counter() - started)
        finally:
            db.close()

    return _threads(concurrency, ops, work)


def sqlite_group_commit(path: str, payload: bytes, ops: int, concurrency: int) -> Latency:
    """``concurrency`` producer threads queue their inserts; one writer thread
    takes whatever is queued, inserts it in ONE transaction (WAL,
    ``synchronous=FULL``: one fsync per batch) and wakes those producers."""
    _sqlite_setup(path)
    requests: queue.SimpleQueue[tuple[int, threading.Event] | None] = queue.SimpleQueue()
    failure: list[BaseException] = []

    def writer() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            while True:
                first = requests.get()
                if first is None:
                    return
                batch = [first]
                while True:
                    try:
                        item = requests.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        requests.put(None)  # stop after this batch
                        break
                    batch.append(item)
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO commands VALUES (?, ?)", [(key, payload) for key, _ in batch]
                )
                db.execute("COMMIT")
                for _, done in batch:
                    done.set()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            db.close()

    thread = threading.Thread(target=writer)
    thread.start()

    def work(task: int, count: int, latencies: list[float]) -> None:
        for i in range(count):
            started = time.perf_counter()
            done = threading.Event()
            requests.put((task * ops + i, done))
            while not done.wait(1.0):
                if failure:
                    raise RuntimeError("the sqlite writer thread failed") from failure[0]
            latencies.append(time.perf_counter() - started)

    try:
        return _threads(concurrency, ops, work)
    finally:
        requests.put(None)
        thread.join()


def lmdb_per_op(path: str, payload: bytes, ops: int, concurrency: int) -> Latency | None:
    """One LMDB write transaction per op (``sync=True``: an fsync per commit)
    from ``concurrency`` threads; ``None`` when ``lmdb`` is not installed."""
    try:
        import lmdb  # optional: only this peer needs it
    except ImportError:
        return None
    env = lmdb.open(path, map_size=2**30, sync=True, metasync=True, max_spare_txns=concurrency)
    try:

        def work(task: int, count: int, latencies: list[float]) -> None:
            for i in range(count):
                started = time.perf_counter()
                with env.begin(write=True) as txn:
                    txn.put(b"%d" % (task * ops + i), payload)
                latencies.append(time.perf_counter() - started)

        return _threads(concurrency, ops, work)
    finally:
        env.close()
