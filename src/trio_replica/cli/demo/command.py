"""The ``demo`` subcommand's arguments, for the parent and (hidden) for the writer child."""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from ..errors import CommandError, ExitStatus, UsageError

__all__ = ["DEFAULT_DIR", "DEFAULT_OPS", "add_parser", "demo_segment_bytes", "run"]

DEFAULT_DIR = "demo-data"
# Small enough that the whole demo stays well under 20 s on a busy 2-core
# machine, large enough that many clients, several checkpoints and a kill
# mid-write all happen.
DEFAULT_OPS = 20_000
DEFAULT_CLIENTS = 64
# The demo's journal must never roll a segment, so that compaction never
# deletes one and the journal still holds op 1 for the consistency check.
# The workload's commands encode to well under 1 KiB per record.
_MIN_SEGMENT_BYTES = 64 * 2**20
_SEGMENT_BYTES_PER_OP = 1024


def demo_segment_bytes(ops: int) -> int:
    """A segment size that holds every op the demo can write (``ops`` and some)."""
    return max(_MIN_SEGMENT_BYTES, (ops + 1024) * _SEGMENT_BYTES_PER_OP)


# Fewer ops than this leave no room to kill the writer mid-write.
MIN_OPS = 10


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _ops(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < MIN_OPS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_OPS} to kill the writer mid-write, got {value}"
        )
    return value


_CLUSTER_OPS = 1500
_CLUSTER_CLIENTS = 16
_CLUSTER_CLIENTS_MAX = 32  # the cluster's client table: more sessions would evict each other


def _run_cluster(args: argparse.Namespace) -> int:
    from .cluster import ClusterDemoConfig, run_cluster_demo

    ops = _CLUSTER_OPS if args.ops == DEFAULT_OPS else args.ops
    clients = _CLUSTER_CLIENTS if args.clients == DEFAULT_CLIENTS else args.clients
    if ops < 60:
        raise UsageError(f"--ops must be at least 60 with --cluster, got {ops}")
    if clients > _CLUSTER_CLIENTS_MAX:
        raise UsageError(f"--clients is at most {_CLUSTER_CLIENTS_MAX} with --cluster")
    directory = Path(args.dir) / "cluster" if args.dir == DEFAULT_DIR else Path(args.dir)
    config = ClusterDemoConfig(
        directory=directory, ops=ops, clients=clients, insecure=args.insecure
    )
    ok = trio.run(_until_sigterm, run_cluster_demo, config, sys.stdout, sys.stderr)
    return ExitStatus.OK if ok else ExitStatus.PROBLEM


async def _until_sigterm(demo: Callable[..., Awaitable[bool]], *args: Any) -> bool:
    """Run ``demo(*args)``; a SIGTERM cancels it, so its cleanup runs (the
    replica or writer children are stopped, the scratch directory removed)
    before the command exits with status 143, instead of dying on the spot
    and leaving both behind."""
    terminated = False
    result = False
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal terminated
                async for _ in signals:
                    terminated = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            result = await demo(*args)
            nursery.cancel_scope.cancel()
    if terminated:
        raise CommandError("stopped by SIGTERM (cleaned up)", status=ExitStatus.TERMINATED)
    return result


def run(args: argparse.Namespace) -> int:
    """Run the demo (or, with the hidden ``--child``, its writer process)."""
    if getattr(args, "cluster", False):
        return _run_cluster(args)
    snapshot_every = args.snapshot_every or max(1, args.ops // 8)
    segment_bytes = args.segment_bytes or demo_segment_bytes(args.ops)
    if args.child:
        if args.acks is None or args.seed is None:
            raise UsageError("--child needs --acks and --seed")
        from .writer import WriterConfig, run_writer

        trio.run(
            run_writer,
            WriterConfig(
                directory=args.dir,
                acks=args.acks,
                ops=args.ops,
                clients=args.clients,
                seed=args.seed,
                snapshot_every=snapshot_every,
                segment_bytes=segment_bytes,
            ),
        )
        return ExitStatus.OK
    from .parent import DemoConfig, run_demo

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    config = DemoConfig(
        directory=Path(args.dir),
        ops=args.ops,
        clients=args.clients,
        seed=seed,
        snapshot_every=snapshot_every,
        segment_bytes=segment_bytes,
    )
    if args.json:
        facts: dict[str, Any] = {}
        ok = trio.run(_until_sigterm, run_demo, config, io.StringIO(), sys.stderr, facts)
        print(json.dumps(facts, separators=(",", ":")))
    else:
        ok = trio.run(_until_sigterm, run_demo, config, sys.stdout, sys.stderr)
    return ExitStatus.OK if ok else ExitStatus.PROBLEM


def add_parser(commands: Any) -> None:
    """Add the ``demo`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "demo",
        help="write from many clients, kill -9 mid-write, recover and check",
        description="Run a replica of the metadata state machine in a child process "
        "with many concurrent clients, kill it with SIGKILL mid-write, recover the "
        "data directory, and check that every acknowledged op survived and the "
        "recovered state equals replaying the journal on a fresh machine. Exit 0 "
        "only if it is consistent. The data directory is deleted and recreated on "
        "each run (only if the demo created it).",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="run a 3-replica cluster in child processes on loopback instead: "
        "clients under load, the primary SIGKILLed and restarted, then check "
        f"exactly-once, equal logs, linearizability and verify (default --ops "
        f"{_CLUSTER_OPS}, --clients {_CLUSTER_CLIENTS}; data in DIR/cluster)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="with --cluster: plain TCP instead of mutual TLS (TLS needs the cryptography "
        "package to create the demo's certificates: pip install 'trio-replica[certs]')",
    )
    parser.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        metavar="DIR",
        help=f"data directory (default: ./{DEFAULT_DIR})",
    )
    parser.add_argument(
        "--ops",
        type=_ops,
        default=DEFAULT_OPS,
        metavar="N",
        help=f"ops the clients submit in all; the kill comes before the last "
        f"(default: {DEFAULT_OPS})",
    )
    parser.add_argument(
        "--clients",
        type=_positive,
        default=DEFAULT_CLIENTS,
        metavar="C",
        help=f"concurrent clients (default: {DEFAULT_CLIENTS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="seeds the workload and the kill: the commands each client submits, in "
        "order (the same for the same --seed, --ops and --clients), and after how many "
        "acks the writer is killed (the kill is sent once the parent has seen that many "
        "acks, which it checks every 50 ms, so the acks counted at the kill can be a "
        "group commit or so more). Not seeded: how the clients interleave (so which op "
        "number each command gets) and which in-flight ops reached the disk before the "
        "kill. Default: random, and printed",
    )
    parser.add_argument(
        "--snapshot-every",
        type=_positive,
        default=None,
        metavar="K",
        help="ops between checkpoints (default: --ops / 8)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object instead of the report (progress still "
        "goes to stderr)",
    )
    parser.add_argument("--segment-bytes", type=_positive, default=None, help=argparse.SUPPRESS)
    # The writer process the demo starts; not for direct use.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--acks", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)
