"""``trio-replica demo --cluster``: a 3-replica cluster in child processes, its primary killed.

Creates a test CA and certificates under the demo directory (mutual TLS
on every connection, ``docs/security.md``; plain TCP only with
``--insecure``), formats three replica directories for free loopback
ports, starts three ``trio-replica serve`` children running the
:class:`~trio_replica.machines.counter.Counter` machine, and runs concurrent
clients (each submits ``{"add": k}`` commands, never abandoning one) with a
progress bar. A third of the way through it SIGKILLs the primary and reports
the view change (time until the next acknowledgement, the new primary, the
ops committed meanwhile); half way it restarts the killed replica and reports
how long it took to catch up. At the end it stops every replica with SIGTERM
and checks:

* every acknowledged command is committed exactly once: each replica's
  journal, replayed with the protocol's de-duplication by client request
  number, totals exactly the sum of the acknowledged adds;
* all replicas hold the same committed prepares (so the same state digest);
* the client history is linearizable
  (:func:`~trio_replica.testing.check_linearizability`);
* ``verify`` is clean on every data directory.

Exit 0 only if all hold.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

import attrs
import trio

from ...cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport
from ...cluster.config import DEFAULT_CLIENTS_MAX
from ...machines.counter import Counter
from ...testing import HistoryRecorder, Verdict, check_linearizability
from ...testing.cluster_replay import replay_cluster_journal
from ...testing.local_cluster import COUNTER_MACHINE, LocalCluster, LocalClusterError
from ..errors import UsageError
from ..progress import Progress

__all__ = ["ClusterDemoConfig", "run_cluster_demo"]

_MARKER = "trio-replica-cluster-demo"
_CLUSTER_ID = 1


@attrs.frozen
class ClusterDemoConfig:
    """Where (``directory``), how many ops in all and how many concurrent
    clients; ``insecure``: plain TCP instead of mutual TLS."""

    directory: Path
    ops: int
    clients: int
    insecure: bool = False


def _prepare(directory: Path) -> None:
    # Only a directory this demo created is ever deleted.
    if directory.exists():
        if not (directory / _MARKER).exists():
            raise UsageError(
                f"{directory} exists and was not made by `demo --cluster`; choose another --dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / _MARKER).write_text("made by trio-replica demo --cluster; safe to delete\n")


async def _replay(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """Every journaled (op, prepare checksum), and the Counter total of the
    journaled requests applied with the protocol's de-duplication."""
    machine = Counter()
    chain = await replay_cluster_journal(str(path), machine)
    return chain, machine.total


async def run_cluster_demo(config: ClusterDemoConfig, out: TextIO, err: TextIO) -> bool:
    """Run the demo (module docstring); True when every check holds."""
    directory = config.directory
    await trio.to_thread.run_sync(_prepare, directory)
    try:
        children = await trio.to_thread.run_sync(
            lambda: LocalCluster(
                directory,
                replicas=3,
                cluster_id=_CLUSTER_ID,
                machine=COUNTER_MACHINE,
                # Every client keeps its session: none is evicted by the others.
                clients_max=max(DEFAULT_CLIENTS_MAX, config.clients),
                tls=not config.insecure,
            )
        )
    except LocalClusterError as error:
        if error.stage != "certs":
            raise
        raise UsageError(
            "demo --cluster runs with TLS and creates its certificates with the cryptography "
            "package: pip install 'trio-replica[certs]' (or pass --insecure for plain TCP)"
        ) from None
    addresses = children.addresses
    security = "mutual TLS" if children.client_tls is not None else "plain TCP (--insecure)"
    print(
        f"cluster of 3 replicas on {', '.join(addresses)} ({security}); data in {directory}",
        file=out,
    )
    recorder = HistoryRecorder()
    acked: list[int] = []
    try:
        children.start_all()
        with trio.fail_after(120):
            statuses = await children.wait_normal(quiet=True)
            first = next(s["replica"] for s in statuses if s["primary"])
            print(f"replica {first} is primary in view {statuses[0]['view']}", file=out)
            await _load(config, children, recorder, acked, out, err)
            final = await children.wait_normal(quiet=True)
    finally:
        try:
            codes = children.stop_all()
        except LocalClusterError as error:
            print(f"stopping the replicas: {error}", file=out)
            codes = []
    print(f"stopped the replicas with SIGTERM (exit statuses {codes})", file=out)
    ok = codes == [0, 0, 0]
    replays = [await _replay(children.dirs[i]) for i in range(3)]
    chains = [chain for chain, _ in replays]
    totals = {total for _, total in replays}
    digests = [hashlib.blake2b(repr(c).encode(), digest_size=8).hexdigest() for c in chains]
    once = totals == {sum(acked)}
    same = len(set(digests)) == 1
    print(
        f"check: {len(acked)} acknowledged commands applied exactly once: "
        f"{'yes' if once else 'NO'} (journal totals {sorted(totals)}, acknowledged {sum(acked)})",
        file=out,
    )
    print(
        f"check: the replicas hold the same log (op {final[0]['op']}, "
        f"digests {', '.join(digests)}): {'yes' if same else 'NO'}",
        file=out,
    )
    result = await trio.to_thread.run_sync(check_linearizability, recorder.operations(), Counter)
    linear = result.verdict == Verdict.LINEARIZABLE
    print(f"check: the client history is linearizable: {'yes' if linear else 'NO'}", file=out)
    clean = True
    for i in range(3):
        done = await trio.run_process(
            [sys.executable, "-m", "trio_replica", "verify", str(children.dirs[i])],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        clean &= done.returncode == 0
        line = (done.stdout or done.stderr).decode().strip().splitlines()
        print(f"check: verify replica{i}: {line[0] if line else done.returncode}", file=out)
    ok = ok and once and same and linear and clean
    print("consistent" if ok else "INCONSISTENT", file=out)
    return ok


async def _load(
    config: ClusterDemoConfig,
    children: LocalCluster,
    recorder: HistoryRecorder,
    acked: list[int],
    out: TextIO,
    err: TextIO,
) -> None:
    cluster = ClusterConfig(
        _CLUSTER_ID,
        3,
        clients_max=max(DEFAULT_CLIENTS_MAX, config.clients),
        tls=children.client_tls,
    )
    progress = Progress(err, total=config.ops, label="committed")
    issued = 0
    acked_event = trio.Event()

    async def client_loop(name: int) -> None:
        nonlocal issued, acked_event
        async with (
            open_tcp_client_transport(
                _CLUSTER_ID, children.addresses, tls=cluster.tls
            ) as transport,
            open_cluster_client(cluster, transport=transport, retry_seconds=0.25) as client,
        ):
            while issued < config.ops:
                issued += 1
                command = {"add": issued}
                pending = recorder.invoke(name, command)
                pending.ok(await client.submit(command))
                acked.append(command["add"])
                progress.update(len(acked))
                acked_event.set()
                acked_event = trio.Event()

    async def acks_reach(count: int) -> None:
        while len(acked) < count:
            await acked_event.wait()

    async with trio.open_nursery() as nursery:
        for name in range(config.clients):
            nursery.start_soon(client_loop, name)
        await acks_reach(config.ops // 3)
        statuses = [s for s in await children.statuses() if s is not None]
        primary = next(s["replica"] for s in statuses if s["primary"])
        before = len(acked)
        children.kill(primary)
        killed_at = time.monotonic()
        await acks_reach(before + 1)
        gap = time.monotonic() - killed_at
        after = await children.statuses()
        leaders = [s["replica"] for s in after if s is not None and s.get("primary")]
        progress.update(len(acked))
        print(
            f"\nSIGKILLed the primary, replica {primary}, at {before} acknowledged; "
            f"the next acknowledgement came {gap:.2f} s later; new primary: replica "
            f"{leaders[0] if leaders else '?'}",
            file=out,
        )
        await acks_reach(min(config.ops, before + config.ops // 6))
        print(
            f"{len(acked) - before} ops committed by the two survivors; "
            f"restarting replica {primary}",
            file=out,
        )
        restarted_at = time.monotonic()
        children.start(primary)
        while True:
            found = await children.statuses()
            mine = found[primary]
            others = [
                s
                for i, s in enumerate(found)
                if s is not None and s.get("status") == "normal" and i != primary
            ]
            if (
                mine is not None
                and others
                and mine.get("status") == "normal"
                and mine["applied"] >= min(s["commit"] for s in others) - 16
            ):
                break
            await trio.sleep(0.05)
        print(
            f"replica {primary} rejoined and caught up to op {mine['applied']} in "
            f"{time.monotonic() - restarted_at:.2f} s",
            file=out,
        )
    progress.finish()
