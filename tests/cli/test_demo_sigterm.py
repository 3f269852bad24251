"""SIGTERM to the demo parent: it stops its children and removes its scratch
directory before exiting (real processes, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def _processes_mentioning(text: str) -> list[int]:
    """The live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trio_replica", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def _wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_to_the_cluster_demo_stops_its_replicas(tmp_path: Path) -> None:
    data = tmp_path / "cluster-demo"
    demo = _start(["demo", "--cluster", "--insecure", "--dir", str(data), "--ops", "100000"], {})
    try:
        # Wait until its three serve children run.
        _wait_for(lambda: len(_processes_mentioning(f"serve {data}")) == 3, 120)
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    orphans = _processes_mentioning(f"serve {data}")
    for pid in orphans:  # do not leave a failed run's replicas behind
        os.kill(pid, signal.SIGKILL)
    assert demo.returncode == 143, output
    assert "stopped by SIGTERM" in output
    assert orphans == []


@pytest.mark.slow
def test_sigterm_to_the_demo_removes_its_scratch_directory(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    data = tmp_path / "demo"
    demo = _start(
        ["demo", "--dir", str(data), "--ops", "1000000", "--seed", "1"], {"TMPDIR": str(scratch)}
    )
    try:
        # The writer child is running and its scratch directory exists.
        _wait_for(lambda: any(scratch.iterdir()) and _processes_mentioning("--child"), 120)
        time.sleep(0.5)
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 143, output
    assert list(scratch.iterdir()) == []
    assert [p for p in _processes_mentioning(str(data)) if p != demo.pid] == []
