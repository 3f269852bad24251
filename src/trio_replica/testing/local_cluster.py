"""A local cluster of real ``trio-replica serve`` processes on loopback.

:class:`LocalCluster` formats ``replicas`` data directories under ``root``
(``root/replica<i>``, each formatted by the ``trio-replica format`` command
for free loopback ports), then starts, SIGKILLs, stops (SIGTERM or SIGINT)
and restarts their ``serve`` processes, and polls their status over the
status hello (:func:`~trio_replica.cluster.tcp.query_status`). Each
replica's stdout and stderr go to ``root/replica<i>.log`` (appended across
restarts), so a test or a demo can show what the replica logged.

It is the one process manager of the cluster demo, the benchmarks and the
process tests. Options that every ``format`` or every ``serve`` of the
cluster needs (``--clients-max``, a transport's options) are passed
through ``format_args`` and ``serve_args``.

With ``tls`` (the default) it first writes a test CA and certificates to
``root/certs`` (:func:`~trio_replica.cluster.certs.write_cluster_certificates`,
which needs the ``cryptography`` package), formats every replica with
``--tls-dir`` and asks for status over mutual TLS with the client
certificate (``client_tls``, also for the caller's clients); without, it
formats with ``--insecure`` (plain TCP).

Process control is synchronous (``subprocess``): starting a child does not
wait for it, a SIGKILL waits only for the kernel to reap it, and a stop
waits up to ``timeout`` seconds for a clean exit, then SIGKILLs. Status
polling is async (call it from inside ``trio.run``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from ..cluster.config import TlsFiles
from ..cluster.tcp import query_status
from ..errors import ReplicaError

__all__ = ["COUNTER_MACHINE", "LocalCluster", "LocalClusterError", "free_ports"]

COUNTER_MACHINE = "trio_replica.machines.counter:Counter"
"""The ``--machine`` of the example counter state machine."""


class LocalClusterError(ReplicaError):
    """A ``trio-replica`` child of a :class:`LocalCluster` failed: ``stage``
    (``"format"``, ``"stop"``; ``"certs"`` when certificates cannot be made,
    replica -1) and ``replica`` say which, the message carries its stderr."""

    def __init__(self, message: str, *, stage: str, replica: int):
        super().__init__(message)
        self.stage = stage
        self.replica = replica


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host`` right now.

    They are bound, then released together: another program could take one
    in between (a small race, fine on loopback in tests and demos).
    """
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalCluster:
    """``replicas`` formatted replica directories under ``root`` and their
    ``serve`` processes (module docstring).

    Construction formats the directories (``root`` must not hold them yet)
    and raises :class:`LocalClusterError` when ``format`` fails.
    ``addresses`` default to free loopback ports. Use it as a context
    manager (or call :meth:`kill_all`) so no child outlives its owner.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        replicas: int = 3,
        cluster_id: int = 42,
        machine: str = COUNTER_MACHINE,
        clients_max: int | None = None,
        addresses: Sequence[str] | None = None,
        format_args: Sequence[str] = (),
        serve_args: Sequence[str] = (),
        tls: bool = True,
    ):
        self.root = Path(root)
        self.cluster_id = cluster_id
        self.machine = machine
        self.clients_max = clients_max
        self.addresses = (
            list(addresses)
            if addresses is not None
            else [f"127.0.0.1:{p}" for p in free_ports(replicas)]
        )
        self.serve_args = tuple(serve_args)
        self.dirs = [self.root / f"replica{i}" for i in range(len(self.addresses))]
        self.logs = [self.root / f"replica{i}.log" for i in range(len(self.addresses))]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.addresses)
        self.root.mkdir(parents=True, exist_ok=True)
        extra = list(format_args)
        self.certs: Path | None = None
        """The certificates' directory (None: plain TCP)."""
        self.client_tls: TlsFiles | None = None
        """The TLS files of a client of this cluster (None: plain TCP)."""
        if tls:
            self.certs = self.root / "certs"
            self.client_tls = self._certificates(self.certs, cluster_id, len(self.addresses))
            extra += ["--tls-dir", str(self.certs)]
        else:
            extra += ["--insecure"]
        if clients_max is not None:
            extra += ["--clients-max", str(clients_max)]
        for i, directory in enumerate(self.dirs):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "trio_replica",
                    "format",
                    str(directory),
                    "--cluster-id",
                    str(cluster_id),
                    "--replica",
                    str(i),
                    "--addresses",
                    ",".join(self.addresses),
                    *extra,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise LocalClusterError(
                    f"format of {directory} failed (exit {done.returncode}): {done.stderr.strip()}",
                    stage="format",
                    replica=i,
                )

    @staticmethod
    def _certificates(root: Path, cluster_id: int, replicas: int) -> TlsFiles:
        try:
            from ..cluster.certs import client_files, write_cluster_certificates
        except ImportError:
            raise LocalClusterError(
                "a TLS cluster's certificates are made with the cryptography package: "
                "pip install 'trio-replica[certs]' (or run without TLS)",
                stage="certs",
                replica=-1,
            ) from None
        write_cluster_certificates(root, cluster_id=cluster_id, replicas=replicas)
        return client_files(root)

    def client_args(self) -> list[str]:
        """The command-line options of a client of this cluster (``--tls-dir``, or none)."""
        return ["--tls-dir", str(self.certs)] if self.certs is not None else []

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()

    @property
    def size(self) -> int:
        """How many replicas the cluster has."""
        return len(self.addresses)

    def running(self, i: int) -> bool:
        """Whether replica ``i``'s serve process was started and not stopped."""
        return self.procs[i] is not None

    def start(self, i: int) -> None:
        """Start replica ``i``'s ``serve`` (it must not be running); returns at once."""
        if self.procs[i] is not None:
            raise ValueError(f"replica {i} is already running")
        with open(self.logs[i], "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trio_replica",
                    "serve",
                    str(self.dirs[i]),
                    "--machine",
                    self.machine,
                    *self.serve_args,
                ],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def start_all(self) -> None:
        """Start every replica that is not running."""
        for i in range(self.size):
            if self.procs[i] is None:
                self.start(i)

    def kill(self, i: int) -> None:
        """SIGKILL replica ``i`` (a crash: nothing is flushed or closed) and reap it."""
        proc = self.procs[i]
        if proc is None:
            raise ValueError(f"replica {i} is not running")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[i] = None

    def stop(self, i: int, sig: int = signal.SIGTERM, *, timeout: float = 30) -> int:
        """Send ``sig`` (SIGTERM or SIGINT: a clean shutdown) to replica ``i``
        and return its exit status; after ``timeout`` seconds it is SIGKILLed
        and :class:`LocalClusterError` raised."""
        proc = self.procs[i]
        if proc is None:
            raise ValueError(f"replica {i} is not running")
        proc.send_signal(sig)
        return self._reap(i, sig, timeout)

    def _reap(self, i: int, sig: int, timeout: float) -> int:
        proc = self.procs[i]
        assert proc is not None
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise LocalClusterError(
                f"replica {i} did not stop within {timeout} s of {signal.Signals(sig).name}; "
                "killed it",
                stage="stop",
                replica=i,
            ) from None
        finally:
            self.procs[i] = None
        return code

    def stop_all(self, sig: int = signal.SIGTERM, *, timeout: float = 30) -> list[int]:
        """Stop every running replica (all signalled first, then reaped); their
        exit statuses in index order. One that does not exit in ``timeout``
        seconds is SIGKILLed, and :class:`LocalClusterError` raised once all
        are down."""
        running = [i for i, proc in enumerate(self.procs) if proc is not None]
        for i in running:
            proc = self.procs[i]
            assert proc is not None
            proc.send_signal(sig)
        codes: list[int] = []
        failed: LocalClusterError | None = None
        for i in running:
            try:
                codes.append(self._reap(i, sig, timeout))
            except LocalClusterError as error:
                failed = failed or error
        if failed is not None:
            raise failed
        return codes

    def kill_all(self) -> None:
        """SIGKILL every running replica."""
        for i in range(self.size):
            if self.procs[i] is not None:
                self.kill(i)

    def log_text(self, i: int) -> str:
        """What replica ``i`` logged so far (every run of it)."""
        try:
            return self.logs[i].read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def statuses(self, *, wait_seconds: float = 1.0) -> list[dict[str, Any] | None]:
        """Each replica's status answer (``serve``'s status map), None for one
        that does not answer within ``wait_seconds``; asked concurrently."""
        found: list[dict[str, Any] | None] = [None] * self.size

        async def ask(i: int) -> None:
            with contextlib.suppress(OSError, trio.TooSlowError):
                found[i] = await query_status(
                    self.addresses[i], wait_seconds=wait_seconds, tls=self.client_tls
                )

        async with trio.open_nursery() as nursery:
            for i in range(self.size):
                nursery.start_soon(ask, i)
        return found

    async def wait_normal(
        self, *, quiet: bool = False, replicas: Sequence[int] | None = None, poll: float = 0.05
    ) -> list[dict[str, Any]]:
        """Poll until ``replicas`` (default: all) answer, all in status
        normal in one view; with ``quiet`` also at one op, commit and applied
        op, each with its journal durable through that op (a replica applies
        a committed op perhaps before its own write of it is done: compare
        directories only once those writes are done too). Returns their
        status maps (index order). Bound it with ``trio.fail_after``."""
        wanted = list(range(self.size)) if replicas is None else list(replicas)
        while True:
            found = await self.statuses()
            ready = [found[i] for i in wanted]
            answers = [s for s in ready if s is not None and s.get("status") == "normal"]
            if len(answers) == len(wanted) and len({s["view"] for s in answers}) == 1:
                positions = {(s["op"], s["commit"], s["applied"]) for s in answers}
                written = all(s["durable"] == s["op"] for s in answers)
                if not quiet or (len(positions) == 1 and written):
                    return answers
            await trio.sleep(poll)

    async def primary(self) -> int | None:
        """The replica that says it is the primary of the highest view
        answered now, or None when none does."""
        found = [s for s in await self.statuses() if s is not None and s.get("primary")]
        if not found:
            return None
        return int(max(found, key=lambda s: int(s["view"]))["replica"])
