"""A local 3-replica cluster of the metadata state machine, with replicas killed and restarted.

Runs with no arguments and prints what happens:

1. creates a test CA and certificates (``trio-replica certs``; every
   connection is mutual TLS), formats three data directories
   (``trio-replica format``) for free loopback ports and starts three
   ``trio-replica serve`` child processes;
2. a client creates streams; the example asks every replica for its status;
3. it SIGKILLs the primary while the client keeps submitting, and prints
   how long the cluster took to answer again and which replica leads now;
4. restarts the killed replica and waits until it has caught up;
5. does it once more to the new primary, then stops every replica with
   SIGTERM and checks each data directory with ``trio-replica verify``.

    python examples/cluster.py            # a temporary directory, removed after
    python examples/cluster.py --dir D    # keep the data directories (and logs) in D
    python examples/cluster.py --insecure # plain TCP (no cryptography package needed)

Creating the certificates needs the ``cryptography`` package
(``pip install 'trio-replica[certs]'``).

Everything runs on 127.0.0.1 and is bounded (it gives up after 90 s).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from trio_replica.cluster import (
    ClusterConfig,
    TlsFiles,
    open_cluster_client,
    open_tcp_client_transport,
)
from trio_replica.cluster.tcp import query_status

CLUSTER_ID = 7
MACHINE = "trio_replica.machines.metadata:MetadataStateMachine"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def trio_replica(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_replica", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


class Cluster:
    def __init__(self, root: Path, *, insecure: bool):
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
        self.dirs = [root / f"replica{i}" for i in range(3)]
        self.logs = [root / f"replica{i}.log" for i in range(3)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]
        self.tls: TlsFiles | None = None
        security = ["--insecure"]
        if not insecure:
            certs = root / "certs"
            done = trio_replica("certs", certs, "--cluster-id", CLUSTER_ID, "--replicas", 3)
            if done.returncode != 0:
                raise SystemExit(done.stderr.strip())
            self.tls = TlsFiles(
                str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key")
            )
            security = ["--tls-dir", str(certs)]
        for i, d in enumerate(self.dirs):
            done = trio_replica(
                "format", d, "--cluster-id", CLUSTER_ID, "--replica", i,
                "--addresses", ",".join(self.addresses), *security,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(done.stderr.strip())

    def start(self, i: int) -> None:
        with open(self.logs[i], "ab") as log:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "trio_replica", "serve", str(self.dirs[i]),
                 "--machine", MACHINE],
                stdout=log,
                stderr=log,
            )  # fmt: skip

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[i] = None

    def stop_all(self) -> list[int]:
        codes = []
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                codes.append(proc.wait(30))
                self.procs[i] = None
        return codes

    async def statuses(self) -> list[dict[str, Any] | None]:
        found: list[dict[str, Any] | None] = [None] * 3

        async def ask(i: int) -> None:
            with contextlib.suppress(OSError, trio.TooSlowError):
                found[i] = await query_status(self.addresses[i], wait_seconds=1, tls=self.tls)

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(ask, i)
        return found

    async def wait_converged(self) -> list[dict[str, Any]]:
        """Until all three answer, are normal in one view and applied the same op."""
        while True:
            found = await self.statuses()
            # A replica still opening answers {"status": "starting"} and no
            # view yet: only replicas in normal status are compared.
            ready = [s for s in found if s is not None and s.get("status") == "normal"]
            if len(ready) == len(found):
                same = {(s["view"], s["applied"], s["op"]) for s in ready}
                if len(same) == 1:
                    return ready
            await trio.sleep(0.1)


def show(statuses: list[dict[str, Any]]) -> None:
    for s in statuses:
        role = "primary" if s["primary"] else "backup "
        print(
            f"  replica {s['replica']} ({s['address']}): view {s['view']} {role} "
            f"op {s['op']} commit {s['commit']} applied {s['applied']}"
        )


async def scenario(cluster: Cluster) -> None:
    config = ClusterConfig(CLUSTER_ID, 3, tls=cluster.tls)
    for i in range(3):
        cluster.start(i)
    security = "mutual TLS" if cluster.tls else "PLAIN TCP"
    print(f"started 3 replicas on {', '.join(cluster.addresses)} ({security})")
    show(await cluster.wait_converged())
    async with (
        open_tcp_client_transport(CLUSTER_ID, cluster.addresses, tls=config.tls) as transport,
        open_cluster_client(config, transport=transport, retry_seconds=0.3) as client,
    ):
        created = 0

        async def create(name: str) -> None:
            nonlocal created
            await client.submit({"type": "create_stream", "name": name})
            created += 1

        for i in range(5):
            await create(f"stream-{i}")
        print(f"the client created {created} streams")
        for round_ in (1, 2):
            statuses = await cluster.wait_converged()
            primary = next(s["replica"] for s in statuses if s["primary"])
            cluster.kill(primary)
            killed_at = time.monotonic()
            print(f"\nround {round_}: SIGKILLed the primary, replica {primary}")
            await create(f"after-kill-{round_}")
            waited = time.monotonic() - killed_at
            survivors = [s for s in await cluster.statuses() if s is not None]
            leader = [s["replica"] for s in survivors if s["primary"]]
            print(
                f"  the cluster answered again after {waited:.2f} s; "
                f"primary now: replica {leader[0] if leader else '?'}"
            )
            for i in range(5):
                await create(f"round-{round_}-{i}")
            print(f"  {created} streams created so far")
            cluster.start(primary)
            started = time.monotonic()
            statuses = await cluster.wait_converged()
            print(
                f"  restarted replica {primary}; it caught up in {time.monotonic() - started:.2f} s"
            )
            show(statuses)
        described = await client.submit({"type": "create_stream", "name": "last"})
        print(f"\nlast stream: {described}")


async def bounded(cluster: Cluster) -> None:
    with trio.fail_after(90):
        await scenario(cluster)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", help="keep the data directories and logs here")
    parser.add_argument("--insecure", action="store_true", help="plain TCP instead of TLS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(args.dir) if args.dir else Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(root, insecure=args.insecure)
        try:
            trio.run(bounded, cluster)
        except trio.TooSlowError:
            print("gave up after 90 s")
        finally:
            codes = cluster.stop_all()
        print(f"\nstopped every replica with SIGTERM (exit statuses {codes})")
        clean = True
        for d in cluster.dirs:
            done = trio_replica("verify", d)
            clean &= done.returncode == 0
            print(f"verify {d.name}: {done.stdout.strip() or done.stderr.strip()}")
        print("ok" if clean and codes == [0, 0, 0] else "FAILED")
        return 0 if clean and codes == [0, 0, 0] else 1


if __name__ == "__main__":
    sys.exit(main())
