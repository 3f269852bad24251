"""Durable append throughput: the journal next to a raw write+fdatasync loop and sqlite.

Batch sizes 1, 16 and 256, all in one run, on real files. Prints ops/s and
the ratios journal/raw and journal/sqlite. The measuring code lives in
``trio_replica.benchmarking.journal`` (also used by ``trio-replica bench``).

    python benchmarks/journal_append.py [--ops N] [--body-bytes B] [--dir PATH]
"""

from __future__ import annotations

import argparse
import tempfile

from trio_replica.benchmarking.journal import format_table, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=1024, help="ops per batch size (default 1024)")
    parser.add_argument("--body-bytes", type=int, default=100, help="body size (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.dir is not None:
        rows = run(args.ops, args.dir, body_bytes=args.body_bytes, repeat=args.repeat)
    else:
        with tempfile.TemporaryDirectory(prefix="journal-bench-") as tmp:
            rows = run(args.ops, tmp, body_bytes=args.body_bytes, repeat=args.repeat)
    print(
        f"durable appends, {args.body_bytes}-byte bodies, one fsync per batch, "
        f"best of {args.repeat}"
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
