"""A 3-replica loopback cluster next to a single replica and PySyncObj, in one run.

For each concurrency (1, 64 and 256 clients by default) the same run
measures committed ops/s and the p50/p99 latency of one submit for:

* ``cluster``: three ``trio-replica serve`` processes of the
  :class:`~trio_replica.machines.counter.Counter` machine on loopback
  (formatted with ``--clients-max`` above the client count, so no session
  is evicted), driven by that many clients in this process, each with its
  own TCP connection, submitting ``{"add": 1}`` one at a time (closed
  loop); a reply means the op was fsynced by a majority and applied;
* ``single``: the same with a 1-replica cluster (one ``serve`` process, the
  same client path, nothing to replicate): what replication costs;
* ``pysyncobj``: a 3-node PySyncObj cluster (the ``pysyncobj`` package, one
  process per node, :mod:`.pysyncobj_node`) with a replicated counter,
  ``add(1, sync=True)`` called from that many threads in the leader's
  process (each call returns once committed and applied). Its journal is a
  memory-mapped file it never fsyncs: it acknowledges commands that a
  power loss can take, and pays no client network hop. ``None`` when the
  package is not installed (``pip install 'trio-replica[bench]'``).

Each system is started once, measured at every concurrency, then stopped;
the cluster's data directories are under ``directory`` (put it on the disk
you care about: every op is fsynced). Ratios are the cluster's ops/s over
the peer's: higher is better.

With ``compare_tls`` (``bench --cluster --tls``) the 3-replica cluster is
measured a second time with mutual TLS on every connection (test
certificates made for the run, :mod:`trio_replica.cluster.tls`), and the
table shows both side by side with the TLS/plain ratio.

Transport options: :class:`ClusterBenchOptions` carries the arguments added
to every ``format`` and ``serve`` and the client transport to use, so a
variant of the transport (an encrypted one, say) is measured by passing its
options, with nothing else changed.

Blocks (runs its own ``trio.run``): call it from a plain thread or process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import trio

from ..cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport
from ..cluster.config import DEFAULT_CLIENTS_MAX
from ..cluster.transport import Transport
from ..testing.local_cluster import COUNTER_MACHINE, LocalCluster, free_ports
from .peers import Latency

__all__ = [
    "DEFAULT_CLUSTER_CONCURRENCY",
    "ClusterBenchOptions",
    "ClusterRow",
    "format_cluster_table",
    "pysyncobj_available",
    "run_cluster",
]

DEFAULT_CLUSTER_CONCURRENCY = (1, 64, 256)
_CLUSTER_ID = 7
_START_SECONDS = 120.0
_RETRY_SECONDS = 1.0
"""Clients resend after this long (the client default is 0.5 s); a resend of
a request still queued is ignored by the primary, so this bounds the cost of
a lost message, not the queue."""

ClientTransportFactory = Callable[[int, Sequence[str]], AbstractAsyncContextManager[Transport]]
"""``(cluster_id, addresses) -> async context manager of a client transport``."""


def _plain_client_transport(
    cluster_id: int, addresses: Sequence[str]
) -> AbstractAsyncContextManager[Transport]:
    return open_tcp_client_transport(cluster_id, addresses)


@attrs.frozen
class ClusterBenchOptions:
    """How the trio-replica clusters of the benchmark are run.

    ``format_args`` and ``serve_args`` are appended to every ``trio-replica
    format`` and ``serve`` command line; ``client_transport`` opens the
    clients' transport; ``label`` names the variant in the table. With
    ``tls`` the clusters run mutual TLS (test certificates made for the
    run) and the clients connect with a client certificate instead. With
    ``compare_tls`` the 3-replica cluster is also measured with TLS (the
    rows' ``cluster_tls``).
    """

    tls: bool = False
    compare_tls: bool = False
    format_args: tuple[str, ...] = ()
    serve_args: tuple[str, ...] = ()
    client_transport: ClientTransportFactory = _plain_client_transport
    label: str = "plain TCP"


@attrs.frozen
class ClusterRow:
    """One concurrency: each system's :class:`Latency` (``pysyncobj`` None
    when it is not installed), and the clients' resends."""

    clients: int
    cluster: Latency
    single: Latency
    pysyncobj: Latency | None
    cluster_retries: int
    cluster_tls: Latency | None = None
    """The 3-replica cluster with mutual TLS (None: not measured)."""

    @property
    def tls_vs_plain(self) -> float | None:
        """The TLS cluster's ops/s over the plain one's (None when not measured)."""
        if self.cluster_tls is None:
            return None
        return self.cluster_tls.ops_per_s / self.cluster.ops_per_s

    @property
    def cluster_vs_single(self) -> float:
        """The 3-replica cluster's ops/s over the single replica's."""
        return self.cluster.ops_per_s / self.single.ops_per_s

    @property
    def cluster_vs_pysyncobj(self) -> float | None:
        """The cluster's ops/s over PySyncObj's (None without PySyncObj)."""
        if self.pysyncobj is None:
            return None
        return self.cluster.ops_per_s / self.pysyncobj.ops_per_s


def pysyncobj_available() -> bool:
    """Whether the ``pysyncobj`` package is installed."""
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        return False
    return True


async def _drive(
    addresses: Sequence[str],
    config: ClusterConfig,
    clients: int,
    ops: int,
    options: ClusterBenchOptions,
) -> tuple[Latency, int]:
    """``clients`` closed-loop clients submit ``ops`` adds in all; timed from
    when every client has registered (its first, untimed, submit)."""
    latencies: list[float] = []
    issued = 0
    registered = 0
    go = trio.Event()
    all_registered = trio.Event()
    retries = 0

    async def client() -> None:
        nonlocal issued, registered, retries
        opened = (
            open_tcp_client_transport(config.cluster_id, addresses, tls=config.tls)
            if config.tls is not None
            else options.client_transport(config.cluster_id, addresses)
        )
        async with (
            opened as transport,
            open_cluster_client(config, transport=transport, retry_seconds=_RETRY_SECONDS) as c,
        ):
            await c.submit({"add": 0})  # registers the session, warms the connection
            registered += 1
            if registered == clients:
                all_registered.set()
            await go.wait()
            warm = c.retries
            while issued < ops:
                issued += 1
                begun = time.perf_counter()
                await c.submit({"add": 1})
                latencies.append(time.perf_counter() - begun)
            retries += c.retries - warm

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
        await all_registered.wait()
        started = time.perf_counter()
        go.set()
    seconds = time.perf_counter() - started
    return Latency.of(seconds, latencies), retries


def _measure_trio_replica(
    root: Path, replicas: int, levels: Sequence[tuple[int, int]], options: ClusterBenchOptions
) -> list[tuple[Latency, int]]:
    clients_max = max(DEFAULT_CLIENTS_MAX, max(c for c, _ in levels) + 8)
    with LocalCluster(
        root,
        replicas=replicas,
        cluster_id=_CLUSTER_ID,
        machine=COUNTER_MACHINE,
        clients_max=clients_max,
        format_args=options.format_args,
        serve_args=options.serve_args,
        tls=options.tls,
    ) as cluster:
        config = ClusterConfig(
            _CLUSTER_ID, replicas, clients_max=clients_max, tls=cluster.client_tls
        )

        async def measure() -> list[tuple[Latency, int]]:
            with trio.fail_after(_START_SECONDS):
                await cluster.wait_normal()
            return [
                await _drive(cluster.addresses, config, clients, ops, options)
                for clients, ops in levels
            ]

        cluster.start_all()
        found = trio.run(measure)
        cluster.stop_all()
    return found


class _PySyncObjNodes:
    """Three PySyncObj node processes (:mod:`.pysyncobj_node`)."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
        self.procs = []
        for i, address in enumerate(addresses):
            partners = ",".join(a for a in addresses if a != address)
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "trio_replica.benchmarking.pysyncobj_node",
                        "--self",
                        address,
                        "--partners",
                        partners,
                        "--journal",
                        str(root / f"node{i}.journal"),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )

    def ask(self, i: int, request: dict[str, Any]) -> dict[str, Any]:
        proc = self.procs[i]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"PySyncObj node {i} exited (status {proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def leader(self) -> int:
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            statuses = [self.ask(i, {"cmd": "status"}) for i in range(3)]
            leaders = [i for i, s in enumerate(statuses) if s["leader"] and s["ready"]]
            if len(leaders) == 1 and all(s["ready"] for s in statuses):
                return leaders[0]
            time.sleep(0.1)
        raise RuntimeError("PySyncObj elected no leader")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _measure_pysyncobj(root: Path, levels: Sequence[tuple[int, int]]) -> list[Latency]:
    nodes = _PySyncObjNodes(root)
    try:
        leader = nodes.leader()
        nodes.ask(leader, {"cmd": "load", "clients": 1, "ops": 20})  # warm-up
        found = []
        for clients, ops in levels:
            answer = nodes.ask(leader, {"cmd": "load", "clients": clients, "ops": ops})
            if "error" in answer:
                raise RuntimeError(
                    f"PySyncObj failed at {clients} clients: {answer['error']} "
                    f"({answer['failed']} calls)"
                )
            found.append(Latency.of(answer["seconds"], answer["latencies"]))
        return found
    finally:
        nodes.close()


def run_cluster(
    directory: str,
    *,
    ops: Callable[[int], int],
    concurrency: Sequence[int] = DEFAULT_CLUSTER_CONCURRENCY,
    options: ClusterBenchOptions | None = None,
    pysyncobj: bool = True,
) -> list[ClusterRow]:
    """Measure every system at each ``concurrency`` (``ops(clients)`` ops
    each); PySyncObj only when ``pysyncobj`` and the package is installed.

    Raises :class:`~trio_replica.testing.local_cluster.LocalClusterError`
    when a replica cannot be formatted or stopped, ``RuntimeError`` when
    PySyncObj fails, ``trio.TooSlowError`` when a cluster does not come up.
    """
    options = options or ClusterBenchOptions()
    levels = [(clients, ops(clients)) for clients in concurrency]
    root = Path(directory)
    single = _measure_trio_replica(root / "single", 1, levels, options)
    cluster = _measure_trio_replica(root / "cluster", 3, levels, options)
    secured: list[Latency | None] = [None] * len(levels)
    if options.compare_tls:
        variant = attrs.evolve(options, tls=True, compare_tls=False, label="mutual TLS")
        secured = [c for c, _ in _measure_trio_replica(root / "cluster-tls", 3, levels, variant)]
    peer: list[Latency | None] = [None] * len(levels)
    if pysyncobj and pysyncobj_available():
        peer = list(_measure_pysyncobj(root / "pysyncobj", levels))
    return [
        ClusterRow(clients, c, s, p, retries, t)
        for (clients, _), (c, retries), (s, _), p, t in zip(
            levels, cluster, single, peer, secured, strict=True
        )
    ]


def _ops_s(value: Latency | None) -> str:
    return "-" if value is None else f"{value.ops_per_s:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_cluster_table(rows: Sequence[ClusterRow]) -> str:
    """A plain-text table: ops/s and latency per system, then the ratios;
    with TLS figures (``cluster_tls``), the TLS cluster next to the plain one."""
    tls = any(r.cluster_tls is not None for r in rows)
    head = (
        f"{'clients':>7} {'ops':>6} | {'cluster':>8} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'single':>8} {'p50 ms':>7} | {'pysyncobj':>9} {'p50 ms':>7} | "
        f"cluster vs: {'single':>6} {'pysyncobj':>9}"
    )
    if tls:
        head += f" | {'TLS':>8} {'p50 ms':>7} {'p99 ms':>7} | TLS vs plain"
    lines = [head]
    for r in rows:
        peer_p50 = "-" if r.pysyncobj is None else f"{r.pysyncobj.p50_ms:.2f}"
        line = (
            f"{r.clients:>7} {r.cluster.ops:>6} | {_ops_s(r.cluster):>8} "
            f"{r.cluster.p50_ms:>7.2f} {r.cluster.p99_ms:>7.2f} | {_ops_s(r.single):>8} "
            f"{r.single.p50_ms:>7.2f} | {_ops_s(r.pysyncobj):>9} {peer_p50:>7} | "
            f"{'':>11} {_ratio(r.cluster_vs_single):>6} {_ratio(r.cluster_vs_pysyncobj):>9}"
        )
        if tls:
            t = r.cluster_tls
            p50 = "-" if t is None else f"{t.p50_ms:.2f}"
            p99 = "-" if t is None else f"{t.p99_ms:.2f}"
            line += f" | {_ops_s(t):>8} {p50:>7} {p99:>7} | {_ratio(r.tls_vs_plain):>12}"
        lines.append(line)
    return "\n".join(lines)
