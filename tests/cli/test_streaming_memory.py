"""verify and inspect stream: a 1,000,000-record WAL (larger than the bound) in < 100 MB.

Peak RSS is measured by a small wrapper process that runs the command as
its only child and reports ``ru_maxrss`` of its children, so nothing else
(pytest, the builder) is counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
import trio

from trio_replica.journal import Entry, Journal

RECORDS = 1_000_000
LIMIT = 100 * 2**20

_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(proc.returncode, peak * (1 if sys.platform == "darwin" else 1024))
print(proc.stdout[-2000:], end="")
"""


def peak_rss(*command: str) -> tuple[int, int, str]:
    """(exit status, peak RSS in bytes, tail of stdout) of ``command``."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    first, _, rest = proc.stdout.partition("\n")
    status, peak = map(int, first.split())
    return status, peak, rest


async def _build(path: Path) -> None:
    # Large batches (one write each) keep the build to a few seconds; the
    # watermark is moved along so the ring never fills.
    batch = 50_000
    body = cbor2.dumps({"type": "noop", "pad": "x" * 24})  # 41 bytes
    journal = await Journal.open(path, slot_count=batch)
    for first in range(1, RECORDS + 1, batch):
        await journal.append([Entry(op=op, body=body) for op in range(first, first + batch)])
        journal.set_watermark(journal.last_op)
    await journal.aclose()


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("million") / "data"
    trio.run(_build, path)
    return path


def test_the_measurement_can_fail() -> None:
    _, peak, _ = peak_rss(
        sys.executable,
        "-c",
        "block = bytearray(150 * 2**20); block[::4096] = b'x' * len(block[::4096])",
    )
    assert peak > LIMIT


@pytest.mark.slow
def test_verify_a_million_records_under_100_mb(million: Path) -> None:
    wal_bytes = sum(f.stat().st_size for f in (million / "wal").iterdir())
    assert wal_bytes > LIMIT  # holding the WAL in memory would break the bound
    status, peak, out = peak_rss(sys.executable, "-m", "trio_replica", "verify", str(million))
    assert status == 0, out
    assert f"{RECORDS} records (ops 1..{RECORDS})" in out
    assert peak < LIMIT, f"verify peaked at {peak / 2**20:.1f} MiB"


@pytest.mark.slow
def test_inspect_streams_a_million_records_under_100_mb(million: Path) -> None:
    status, peak, out = peak_rss(
        sys.executable, "-m", "trio_replica", "inspect", "--json", str(million)
    )
    assert status == 0
    last = json.loads(out.splitlines()[-1])
    assert last["kind"] == "record" and last["op"] == RECORDS
    assert last["command"] == {"type": "noop", "pad": "x" * 24}
    assert peak < LIMIT, f"inspect peaked at {peak / 2**20:.1f} MiB"
