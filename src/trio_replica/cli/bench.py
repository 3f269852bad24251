"""``trio-replica bench [--quick]``: the benchmarks, each beside its peers, in one run.

Each section runs one benchmark from :mod:`trio_replica.benchmarking` and
prints its table: trio-replica's number next to the peers measured in the
same run on the same disk (a raw ``write`` + ``fdatasync`` loop, sqlite3,
a plain file write), with the ratios. Speed is never asserted; it is shown.
Benchmarks write real files and fsync them, so the numbers are only as
meaningful as the disk under ``--dir``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import attrs

from .errors import ExitStatus, UsageError

__all__ = ["SECTIONS", "Section", "add_parser", "run"]

_MIB = 2**20


@attrs.frozen
class Section:
    """One benchmark: a title and a function (quick, directory) -> table text."""

    title: str
    measure: Callable[[bool, str], str]


def _journal(quick: bool, directory: str) -> str:
    from ..benchmarking.journal import format_table, run

    ops = 256 if quick else 1024
    rows = run(ops, directory)
    return (
        f"durable appends of {ops} ops per batch size, 100-byte bodies, one fsync per batch\n"
        + format_table(rows)
    )


def _snapshot(quick: bool, directory: str) -> str:
    from ..benchmarking.snapshot import format_table, run

    sizes = [1 * _MIB, 10 * _MIB] if quick else [1 * _MIB, 10 * _MIB, 100 * _MIB]
    return format_table(run(sizes, directory=directory))


def _replica(quick: bool, directory: str) -> str:
    from ..benchmarking.replica import format_throughput_table, run_throughput

    ops, levels = (500, (1, 8, 64)) if quick else (2000, (1, 8, 64, 256))
    rows = run_throughput(ops, directory, concurrency=levels)
    return (
        "durable submits, 100-byte payloads; replica = group commit, sqlite = WAL + "
        "synchronous=FULL, one transaction per op; raw = write+fdatasync per op\n"
        + format_throughput_table(rows)
    )


def _recovery(quick: bool, directory: str) -> str:
    from ..benchmarking.replica import format_recovery_table, run_recovery

    ops = 100_000 if quick else 1_000_000
    return f"recovery of {ops:,} ops (page cache warm)\n" + format_recovery_table(
        run_recovery(ops, directory)
    )


SECTIONS: list[Section] = [
    Section("journal: durable append throughput", _journal),
    Section("snapshots: persist and load", _snapshot),
    Section("replica: durable submit throughput and latency", _replica),
    Section("recovery: time to recover a journal", _recovery),
]


def run(args: argparse.Namespace) -> int:
    """Run every section (or those named by ``--only``) and print their tables."""
    chosen = SECTIONS
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        names = {section.title.split(":")[0] for section in SECTIONS}
        unknown = sorted(wanted - names)
        if unknown:
            raise UsageError(
                f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        chosen = [s for s in SECTIONS if s.title.split(":")[0] in wanted]
    base = args.dir if args.dir is not None else tempfile.gettempdir()
    if not os.path.isdir(base):
        raise UsageError(f"{base}: no such directory")
    out = sys.stdout
    print(
        f"benchmarks write and fsync real files under {base} "
        f"({'quick' if args.quick else 'full'} run; --dir picks the disk)",
        file=out,
    )
    for section in chosen:
        print(f"\n== {section.title}", file=out)
        out.flush()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=base, prefix="trio-replica-bench-") as scratch:
            table = section.measure(args.quick, scratch)
        print(table, file=out)
        print(f"({time.monotonic() - started:.1f} s)", file=out)
    return ExitStatus.OK


def add_parser(commands: Any) -> None:
    """Add the ``bench`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "bench",
        help="run the throughput and recovery benchmarks, peers side by side",
        description="Run the benchmarks of trio-replica, each next to its peers "
        "(a raw write+fdatasync loop, sqlite3, plain file I/O) measured in the same "
        "run on the same disk, and print the tables with the ratios.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a shorter run")
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="where to write (default: the system's temporary directory; a RAM-backed "
        "one makes fsync free and the ratios meaningless)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated benchmarks to run: "
        + ", ".join(s.title.split(":")[0] for s in SECTIONS),
    )
    parser.set_defaults(run=run)
