"""``trio-replica bench [--quick] [--json]``: the benchmarks, each beside its peers, in one run.

Each section runs one benchmark from :mod:`trio_replica.benchmarking` and
prints its table: trio-replica's number next to the peers measured in the
same run on the same disk (a raw ``write`` + ``fdatasync`` loop, sqlite3,
a plain file write), with the ratios. Every ratio reads the same way:
trio-replica's speed divided by the peer's, so higher is better and 1.0 is
"as fast". Speed is never asserted; it is shown. Benchmarks write real files
and fsync them, so the numbers are only as meaningful as the disk under
``--dir``: a RAM-backed one (tmpfs) gets a warning. ``--json`` prints one
JSON object per measured row instead of the tables.

``--cluster`` runs the cluster benchmark instead
(:mod:`trio_replica.benchmarking.cluster`): a 3-replica cluster of ``serve``
processes on loopback at 1, 64 and 256 clients, next to a 1-replica
cluster and a 3-node PySyncObj cluster, with the ratios. Options of the
cluster's transport reach it through :func:`cluster_options`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .errors import ExitStatus, UsageError

__all__ = [
    "SECTIONS",
    "Measured",
    "Section",
    "add_parser",
    "CLUSTER_CONCURRENCY",
    "cluster_ops",
    "cluster_options",
    "filesystem_type",
    "ram_backed",
    "run",
]

_MIB = 2**20
_RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_RATIOS = "ratios are trio-replica's speed divided by the peer's: higher is better, 1.0 = as fast"


@attrs.frozen
class Measured:
    """What one section measured: its table as text, its rows as JSON-ready
    dicts, and the goals it measured (:class:`~trio_replica.benchmarking.goals.Goal`)."""

    text: str
    rows: list[dict[str, Any]]
    goals: list[Any] = attrs.field(factory=list)


@attrs.frozen
class Section:
    """One benchmark: a title and a function (quick, directory) -> :class:`Measured`."""

    title: str
    measure: Callable[[bool, str], Measured]

    @property
    def name(self) -> str:
        """The short name ``--only`` takes (the title up to its colon)."""
        return self.title.split(":")[0]


def _row(obj: Any, **derived: Any) -> dict[str, Any]:
    return {**attrs.asdict(obj), **derived}


def _journal(quick: bool, directory: str) -> Measured:
    from ..benchmarking.journal import format_table, run

    ops = 256 if quick else 1024
    rows = run(ops, directory)
    text = (
        f"durable appends of {ops} ops per batch size, 100-byte bodies, one fsync per batch\n"
        + format_table(rows)
    )
    from ..benchmarking.goals import Goal

    goals = [Goal.of("journal append, batch 256, vs raw", r.journal_vs_raw) for r in rows]
    return Measured(
        text,
        [
            _row(r, journal_vs_raw=r.journal_vs_raw, journal_vs_sqlite=r.journal_vs_sqlite)
            for r in rows
        ],
        [goal for goal, r in zip(goals, rows, strict=True) if r.batch == 256],
    )


def _snapshot(quick: bool, directory: str) -> Measured:
    from ..benchmarking.snapshot import format_table, run

    sizes = [1 * _MIB, 10 * _MIB] if quick else [1 * _MIB, 10 * _MIB, 100 * _MIB]
    from ..benchmarking.goals import Goal

    rows = run(sizes, directory=directory)
    goals = [
        goal
        for r in rows
        if r.state_bytes == 10 * _MIB
        for goal in (
            Goal.of("snapshot load vs plain read", r.load_ratio),
            Goal.of("snapshot persist vs plain write+fsync", r.persist_ratio),
        )
    ]
    return Measured(
        format_table(rows),
        [_row(r, persist_vs_raw=r.persist_ratio, load_vs_raw=r.load_ratio) for r in rows],
        goals,
    )


def _replica(quick: bool, directory: str) -> Measured:
    from ..benchmarking.goals import Goal
    from ..benchmarking.replica import (
        format_batch_table,
        format_throughput_table,
        run_batches,
        run_throughput,
    )

    ops, levels = (1000, (1, 64, 256)) if quick else (2000, (1, 8, 64, 256))
    rows = run_throughput(ops, directory, concurrency=levels)
    batches = run_batches(4 * ops, directory, batch=256)
    text = (
        "durable submits, 100-byte payloads, per concurrency (tasks for the replica, threads "
        "for the peers). raw = one thread, write+fdatasync per op; sq-conv = sqlite3 (WAL, "
        "synchronous=FULL), one transaction per op from each thread (a lock convoy); "
        "sq-group = the same sqlite, one writer thread committing whatever the producer "
        "threads queued in one transaction; lmdb = one sync write transaction per op "
        "(- when the lmdb package is not installed)\n"
        + format_throughput_table(rows)
        + "\n"
        + format_batch_table(batches)
    )
    by_level = {r.concurrency: r for r in rows}
    goals = []
    if 64 in by_level:
        goals.append(Goal.of("64 submitters vs raw fsync loop", by_level[64].replica_vs_raw))
        goals.append(
            Goal.of("64 submitters vs sqlite group commit", by_level[64].replica_vs_sqlite_group)
        )
        if 256 in by_level:
            goals.append(
                Goal.of(
                    "256 submitters vs 64",
                    by_level[256].replica.ops_per_s / by_level[64].replica.ops_per_s,
                )
            )
    if 1 in by_level:
        goals.append(Goal.of("1 submitter vs raw fsync loop", by_level[1].replica_vs_raw))
    goals.append(Goal.of("submit_many(256) vs raw fsync loop", batches.replica_vs_raw))
    json_rows = [
        _row(
            r,
            replica_vs_raw=r.replica_vs_raw,
            replica_vs_sqlite_convoy=r.replica_vs_sqlite_convoy,
            replica_vs_sqlite_group=r.replica_vs_sqlite_group,
            replica_vs_lmdb=r.replica_vs_lmdb,
        )
        for r in rows
    ]
    json_rows.append(_row(batches, submit_many=True, replica_vs_raw=batches.replica_vs_raw))
    return Measured(text, json_rows, goals)


def _recovery(quick: bool, directory: str) -> Measured:
    from ..benchmarking.goals import Goal
    from ..benchmarking.replica import (
        decode_apply_ops_per_s,
        format_recovery_table,
        run_recovery,
    )

    ops = 100_000 if quick else 1_000_000
    rows = run_recovery(ops, directory)
    floor = decode_apply_ops_per_s(min(ops, 200_000))
    text = (
        f"recovery of {ops:,} ops (page cache warm)\n"
        + format_recovery_table(rows)
        + f"\nthe irreducible loop (codec.decode + apply of the same commands, from memory): "
        f"{floor:,.0f} ops/s"
    )
    replay = next((r.replay_ops_per_s for r in rows if r.ops_replayed), None)
    goals = []
    if replay:
        goals.append(Goal.of("recovery replay vs decode+apply", replay / floor))
        goals.append(Goal.of("recovery replay rate vs 300k ops/s", replay / 300_000))
    return Measured(
        text,
        [
            # No rate for nothing replayed: None, not 0 ops/s.
            _row(r, replay_ops_per_s=r.replay_ops_per_s if r.ops_replayed else None)
            for r in rows
        ],
        goals,
    )


CLUSTER_CONCURRENCY = (1, 64, 256)
"""The client counts of ``bench --cluster``."""


def cluster_ops(quick: bool, clients: int) -> int:
    """Ops measured at ``clients`` clients: enough for each client to submit many."""
    return max(200, 8 * clients) if quick else max(1000, 32 * clients)


def _cluster(quick: bool, directory: str, options: Any = None) -> Measured:
    from ..benchmarking.cluster import format_cluster_table, pysyncobj_available, run_cluster
    from ..benchmarking.goals import Goal

    rows = run_cluster(
        directory,
        ops=functools.partial(cluster_ops, quick),
        concurrency=CLUSTER_CONCURRENCY,
        options=options,
    )
    label = options.label if options is not None else "plain TCP"
    peer = (
        "pysyncobj = a 3-node PySyncObj cluster (one process per node, library defaults, "
        "journalFile set: a memory-mapped journal it NEVER fsyncs, so it acknowledges what a "
        "power loss can take), add(1, sync=True) from that many threads in the leader's own "
        "process (no client network hop)"
        if pysyncobj_available()
        else "pysyncobj = - (not installed: pip install 'trio-replica[bench]')"
    )
    text = (
        f"committed ops/s of {{'add': 1}} commands, closed loop, per number of clients; "
        f"cluster = 3 `serve` processes on loopback ({label}), every op fsynced by a "
        "majority before its reply, clients in this process each on its own connection; "
        f"single = the same with a 1-replica cluster; {peer}"
        + (
            "; TLS = the 3-replica cluster again with mutual TLS on every connection"
            if any(r.cluster_tls is not None for r in rows)
            else ""
        )
        + "\n"
        + format_cluster_table(rows)
    )
    by_clients = {r.clients: r for r in rows}
    goals = []
    if 64 in by_clients:
        goals.append(
            Goal.of("cluster at 64 clients vs single replica", by_clients[64].cluster_vs_single)
        )
    for clients in (1, 64, 256):
        ratio = by_clients[clients].cluster_vs_pysyncobj if clients in by_clients else None
        if ratio is not None:
            goals.append(Goal.of(f"cluster at {clients} clients vs PySyncObj", ratio))
    json_rows = [
        _row(
            r,
            cluster_vs_single=r.cluster_vs_single,
            cluster_vs_pysyncobj=r.cluster_vs_pysyncobj,
            transport=label,
            tls_vs_plain=r.tls_vs_plain,
        )
        for r in rows
    ]
    return Measured(text, json_rows, goals)


def cluster_options(args: argparse.Namespace) -> Any:
    """The :class:`~trio_replica.benchmarking.cluster.ClusterBenchOptions` that
    ``args`` ask for (the cluster's transport options go here)."""
    from ..benchmarking.cluster import ClusterBenchOptions

    return ClusterBenchOptions(compare_tls=bool(getattr(args, "tls", False)))


def filesystem_type(path: str, mounts: Sequence[str] | None = None) -> str | None:
    """The type of the file system holding ``path`` (``"ext4"``, ``"tmpfs"``, ...).

    Read from ``/proc/mounts`` (or ``mounts``, its lines): the longest mount
    point that contains ``path``. ``None`` where that is not available.
    """
    if mounts is None:
        try:
            with open("/proc/mounts", encoding="utf-8") as file:
                mounts = file.read().splitlines()
        except OSError:
            return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and other bytes in octal (\040).
        point = fields[1].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best is not None else None


def ram_backed(path: str, mounts: Sequence[str] | None = None) -> bool:
    """True when ``path`` is on a RAM-backed file system, where fsync costs nothing."""
    return filesystem_type(path, mounts) in _RAM_FILESYSTEMS


SECTIONS: list[Section] = [
    Section("journal: durable append throughput", _journal),
    Section("snapshots: persist and load", _snapshot),
    Section("replica: durable submit throughput and latency", _replica),
    Section("recovery: time to recover a journal", _recovery),
    Section("cluster: a 3-replica cluster vs a single replica and PySyncObj", _cluster),
]
_OPT_IN = frozenset({"cluster"})
"""Sections a plain ``bench`` leaves out: the cluster benchmark starts
processes and takes minutes, so it runs on ``--cluster`` (or ``--only cluster``)."""


def run(args: argparse.Namespace) -> int:
    """Run every section (or those named by ``--only``) and print their tables."""
    chosen = [s for s in SECTIONS if s.name not in _OPT_IN]
    if args.cluster:
        if args.only:
            raise UsageError(
                "--cluster runs the cluster benchmark; it cannot be combined with --only"
            )
        args.only = "cluster"
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        names = {section.name for section in SECTIONS}
        unknown = sorted(wanted - names)
        if unknown:
            raise UsageError(
                f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        chosen = [s for s in SECTIONS if s.name in wanted]
    if args.tls and all(s.name != "cluster" for s in chosen):
        raise UsageError(
            "--tls compares TLS and plain figures of the cluster benchmark: add --cluster"
        )
    base = args.dir if args.dir is not None else tempfile.gettempdir()
    if not os.path.isdir(base):
        raise UsageError(f"{base}: no such directory")
    out = sys.stdout
    if ram_backed(base):
        print(
            f"trio-replica: warning: {base} is on a RAM-backed file system "
            f"({filesystem_type(base)}): fsync costs nothing there, so these numbers say "
            "nothing about a disk; pass --dir on the disk you care about",
            file=sys.stderr,
        )
    if not args.json:
        print(
            f"benchmarks write and fsync real files under {base} "
            f"({'quick' if args.quick else 'full'} run; --dir picks the disk); {_RATIOS}",
            file=out,
        )
    goals: list[Any] = []
    for section in chosen:
        if not args.json:
            print(f"\n== {section.title}", file=out)
        out.flush()
        started = time.monotonic()
        measure = section.measure
        if section.name == "cluster":
            measure = functools.partial(_cluster, options=cluster_options(args))
        with tempfile.TemporaryDirectory(dir=base, prefix="trio-replica-bench-") as scratch:
            measured = measure(args.quick, scratch)
        seconds = time.monotonic() - started
        goals.extend(measured.goals)
        if args.json:
            for row in measured.rows:
                line = {"benchmark": section.name, "quick": args.quick, **row}
                print(json.dumps(line, separators=(",", ":")), file=out)
            continue
        print(measured.text, file=out)
        print(f"({seconds:.1f} s)", file=out)
    if goals:
        _print_goals(goals, args.json, args.quick)
    return ExitStatus.OK


def _print_goals(goals: list[Any], as_json: bool, quick: bool) -> None:
    from ..benchmarking.goals import format_goals

    out = sys.stdout
    if as_json:
        for goal in goals:
            row = {"benchmark": "goals", "quick": quick, **attrs.asdict(goal), "met": goal.met}
            print(json.dumps(row, separators=(",", ":")), file=out)
        return
    print("\n== goals: each measured in this run, next to its target (higher is better)", file=out)
    print(format_goals(goals), file=out)


def add_parser(commands: Any) -> None:
    """Add the ``bench`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "bench",
        help="run the throughput and recovery benchmarks, peers side by side",
        description="Run the benchmarks of trio-replica, each next to its peers "
        "(a raw write+fdatasync loop, sqlite3, plain file I/O) measured in the same "
        "run on the same disk, and print the tables with the ratios. Every ratio is "
        "trio-replica's speed divided by the peer's: higher is better, 1.0 = as fast.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a shorter run")
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="where to write (default: the system's temporary directory; a RAM-backed "
        "one makes fsync free and the numbers meaningless, and gets a warning)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per measured row, with "benchmark" naming its section',
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="run the cluster benchmark instead: 3 `serve` processes on loopback at 1, 64 "
        "and 256 clients, next to a 1-replica cluster and a 3-node PySyncObj cluster "
        "(pip install 'trio-replica[bench]'); takes a few minutes",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="with --cluster: also measure the 3-replica cluster with mutual TLS and show "
        "TLS and plain figures side by side (certificates need the certs extra)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated benchmarks to run: " + ", ".join(s.name for s in SECTIONS),
    )
    parser.set_defaults(run=run)
