"""``trio-replica demo --cluster`` end to end (child processes on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tcp_processes import cli


@pytest.mark.slow
def test_cluster_demo_is_consistent(tmp_path: Path) -> None:
    done = cli(
        "demo", "--cluster", "--dir", tmp_path / "d", "--ops", 300, "--clients", 4, timeout=150
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "SIGKILLed the primary" in out and "rejoined and caught up" in out
    for check in ("applied exactly once: yes", "same log", "linearizable: yes"):
        assert check in out
    assert out.count(": clean:") == 3
    assert out.splitlines()[-1] == "consistent"
    # A directory the demo did not make is never deleted.
    (tmp_path / "other").mkdir()
    refused = cli("demo", "--cluster", "--dir", tmp_path / "other")
    assert refused.returncode == 2 and "not made by" in refused.stderr
