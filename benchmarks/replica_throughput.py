"""Replica throughput and recovery next to sqlite and a raw fsync loop, in one run.

Throughput: 1, 8, 64 and 256 concurrent submitters; ops/s and p50/p99
latency of the replica and, with the same payloads and the same
concurrency via threads, of its peers: a raw write+fdatasync-per-op loop,
sqlite3 (WAL, synchronous=FULL) as a lock convoy (one transaction per op
per thread) and with one writer thread group-committing for the producer
threads, and LMDB (sync on) when the ``lmdb`` package is installed, with
the ratios (higher is better). Then ``submit_many`` in batches of 256. Recovery: time to recover a
journal of --recovery-ops ops without a snapshot and with one, and replay
ops/s. The measuring code lives in ``trio_replica.benchmarking.replica``
(also used by ``trio-replica bench``).

    python benchmarks/replica_throughput.py [--ops N] [--recovery-ops N] [--dir PATH]

Defaults finish in about a minute; ``--recovery-ops 1000000`` is the full
recovery benchmark.
"""

from __future__ import annotations

import argparse
import tempfile

from trio_replica.benchmarking.replica import (
    DEFAULT_CONCURRENCY,
    format_batch_table,
    format_recovery_table,
    format_throughput_table,
    run_batches,
    run_recovery,
    run_throughput,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=2000, help="ops per concurrency (default 2000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(DEFAULT_CONCURRENCY),
        help="submitter counts (default 1 8 64 256)",
    )
    parser.add_argument("--body-bytes", type=int, default=100, help="payload size (default 100)")
    parser.add_argument(
        "--recovery-ops",
        type=int,
        default=200_000,
        help="ops in the recovery benchmark (default 200000; 1000000 for the full one; 0 skips)",
    )
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp:
        directory = args.dir if args.dir is not None else tmp
        rows = run_throughput(
            args.ops, directory, concurrency=args.concurrency, body_bytes=args.body_bytes
        )
        print(
            f"durable submits, {args.body_bytes}-byte payloads; ops/s of the replica and its "
            "peers, then the replica's ratio to each (higher is better); raw = write+fdatasync "
            "per op, sq-conv = sqlite one transaction per op per thread, sq-group = sqlite one "
            "writer thread group-committing, lmdb = one sync transaction per op"
        )
        print(format_throughput_table(rows))
        print(format_batch_table(run_batches(4 * args.ops, directory, batch=256)))
        if args.recovery_ops:
            print()
            print(f"recovery of {args.recovery_ops:,} ops (page cache warm)")
            print(
                format_recovery_table(
                    run_recovery(args.recovery_ops, directory, body_bytes=args.body_bytes)
                )
            )


if __name__ == "__main__":
    main()
