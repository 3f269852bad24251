"""Real ``trio-replica format`` / ``serve`` processes on loopback, for the TCP tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

MACHINE = "trio_replica.machines.counter:Counter"


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (bound then released: a small race, fine on loopback)."""
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trio_replica ARGS`` to completion; never a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "trio_replica", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


class LocalCluster:
    """``n`` formatted replica directories under ``root`` and their serve processes."""

    def __init__(self, root: Path, n: int = 3, cluster_id: int = 42, machine: str = MACHINE):
        self.root = root
        self.cluster_id = cluster_id
        self.machine = machine
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.dirs = [root / f"replica{i}" for i in range(n)]
        self.procs: list[subprocess.Popen[str] | None] = [None] * n
        self.logs = [root / f"replica{i}.log" for i in range(n)]
        for i, d in enumerate(self.dirs):
            done = cli(
                "format",
                d,
                "--cluster-id",
                cluster_id,
                "--replica",
                i,
                "--addresses",
                ",".join(self.addresses),
            )
            assert done.returncode == 0, done.stderr

    def start(self, i: int) -> None:
        assert self.procs[i] is None
        log = open(self.logs[i], "a")  # noqa: SIM115 (the process owns it)
        self.procs[i] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_replica",
                "serve",
                str(self.dirs[i]),
                "--machine",
                self.machine,
            ],
            stdout=log,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def start_all(self) -> None:
        for i in range(len(self.dirs)):
            self.start(i)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.procs[i] = None

    def stop(self, i: int, sig: int = signal.SIGTERM) -> int:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(sig)
        code = proc.wait(20)
        self.procs[i] = None
        return code

    def stop_all(self) -> list[int]:
        return [self.stop(i) for i, p in enumerate(self.procs) if p is not None]

    def kill_all(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None:
                self.kill(i)

    def status(self) -> dict:
        done = cli("status", *self.addresses, "--json", timeout=30)
        return json.loads(done.stdout)

    def wait_agreed(self, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            report = self.status()
            if report["agree"]:
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"the replicas did not agree: {report}")
            time.sleep(0.2)

    def log_text(self, i: int) -> str:
        return self.logs[i].read_text()
