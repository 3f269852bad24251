"""Snapshot persist and load times for 1, 10 and 100 MiB states, next to a
plain write + fsync (and a plain read) of the same bytes in the same run.

    python benchmarks/snapshot.py [--sizes 1,10,100] [--repeat 1] [--dir PATH]

Pass ``--dir`` on the disk you care about: a RAM-backed temporary directory
makes fsync free and the ratios meaningless.
"""

from __future__ import annotations

import argparse

from trio_replica.benchmarking.snapshot import MIB, format_table, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1,10,100", help="state sizes in MiB, comma separated (default 1,10,100)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    parser.add_argument("--dir", default=None, help="where to write (default: the temp dir)")
    args = parser.parse_args()
    sizes = [int(float(s) * MIB) for s in args.sizes.split(",") if s.strip()]
    results = run(sizes, directory=args.dir, repeat=args.repeat)
    print(format_table(results))


if __name__ == "__main__":
    main()
