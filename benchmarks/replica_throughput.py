"""Replica throughput and recovery next to sqlite and a raw fsync loop, in one run.

Throughput: 1, 8, 64 and 256 concurrent submitters; ops/s and p50/p99
latency of the replica, of sqlite3 (WAL, synchronous=FULL, one transaction
per op, the same payloads, the same concurrency via threads) and of a raw
write+fdatasync-per-op loop, with the ratios. Recovery: time to recover a
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
    format_recovery_table,
    format_throughput_table,
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
            f"durable submits, {args.body_bytes}-byte payloads; replica = group commit, "
            "sqlite = WAL + synchronous=FULL, one transaction per op; raw = write+fdatasync per op"
        )
        print(format_throughput_table(rows))
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
