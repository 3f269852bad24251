"""Real ``trio-replica format`` / ``serve`` processes on loopback, for the TCP tests.

The process manager is the library's own
(:class:`trio_replica.testing.local_cluster.LocalCluster`, shared with
``demo --cluster`` and the cluster benchmark); this adds the assertions the
tests want: ``format`` and ``status`` through the CLI, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trio_replica.testing.local_cluster import COUNTER_MACHINE, free_ports
from trio_replica.testing.local_cluster import LocalCluster as _LocalCluster

MACHINE = COUNTER_MACHINE

__all__ = ["MACHINE", "LocalCluster", "cli", "free_ports"]


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


class LocalCluster(_LocalCluster):
    """``n`` formatted replica directories under ``root`` and their serve processes
    (mutual TLS unless ``tls=False`` is among the options)."""

    def __init__(self, root: Path, n: int = 3, cluster_id: int = 42, **options: Any):
        super().__init__(root, replicas=n, cluster_id=cluster_id, **options)

    def status(self) -> dict[str, Any]:
        done = cli("status", *self.addresses, "--json", *self.client_args(), timeout=30)
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def wait_agreed(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            report = self.status()
            if report["agree"]:
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"the replicas did not agree: {report}")
            time.sleep(0.2)
