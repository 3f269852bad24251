"""Memory is bounded by configuration, not by the size of the WAL (invariant 9, docs/invariants.md).

A child process builds a journal of 1,000,000 small records, then reopens
it (the recovery scan) and replays every entry, reopens it again with the
one-pass replay recovery uses (``Journal.open(replay=...)``), and reports
its peak RSS.
A subprocess, so that the measurement is of exactly this workload.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RECORDS = 1_000_000
BATCH = 20_000
LIMIT_MB = 150

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import trio
    from trio_replica.journal import Entry, Journal, Replay

    RECORDS, BATCH, PATH = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    def peak_mb():
        # VmHWM is this process's own high-water mark. ru_maxrss is not: after
        # fork/vfork + exec it starts at the parent's peak (a long pytest run
        # is already past the limit), so it is only the fallback off Linux.
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024  # kB
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    async def main():
        started = time.perf_counter()
        journal = await Journal.open(PATH, slot_count=BATCH, segment_bytes=16 * 2**20)
        for first in range(1, RECORDS + 1, BATCH):
            n = min(BATCH, RECORDS - first + 1)
            await journal.append([Entry(first + i, b"op %07d" % (first + i)) for i in range(n)])
            journal.set_watermark(journal.last_op)
        await journal.aclose()
        built = time.perf_counter()
        after_build = peak_mb()

        journal = await Journal.open(PATH, slot_count=1024, segment_bytes=16 * 2**20)
        assert journal.last_op == RECORDS, journal.last_op
        assert journal.recovery.records == RECORDS
        count = 0
        async for entry in journal.entries():
            count += 1
            if entry.op % 99_991 == 0:
                assert entry.body == b"op %07d" % entry.op
        assert count == RECORDS, count
        assert (await journal.read(RECORDS)).body == b"op %07d" % RECORDS
        assert (await journal.read(12_345)).body == b"op %07d" % 12_345
        await journal.aclose()

        replayed = [0]

        def apply(op, body):
            replayed[0] += 1
            if op % 99_991 == 0:
                assert bytes(body) == b"op %07d" % op

        journal = await Journal.open(
            PATH, slot_count=1024, segment_bytes=16 * 2**20, replay=lambda data: Replay(0, apply)
        )
        assert replayed[0] == RECORDS, replayed
        await journal.aclose()
        print(json.dumps({
            "peak_mb": peak_mb(),
            "after_build_mb": after_build,
            "segments": journal.recovery.segments,
            "build_s": built - started,
            "replay_s": time.perf_counter() - built,
        }))

    trio.run(main)
    """
)


@pytest.mark.slow
def test_reopen_and_replay_of_a_million_records_stays_under_150_mb(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(RECORDS), str(BATCH), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    assert result["segments"] > 1
    assert result["peak_mb"] < LIMIT_MB, result
