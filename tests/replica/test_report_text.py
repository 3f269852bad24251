"""A RecoveryReport prints as one line a person can read, true to its fields."""

from __future__ import annotations

import attrs

from trio_replica import open_replica
from trio_replica.machines import Counter
from trio_replica.testing import SimulatedDisk


async def test_recovery_report_reads_as_a_sentence() -> None:
    disk = SimulatedDisk(seed=5)
    async with open_replica(disk, Counter(), snapshot_every=4) as replica:
        fresh = replica.recovery
        for _ in range(6):
            await replica.submit({"add": 1})
    assert str(fresh).startswith("recovered an empty data directory in ")
    async with open_replica(disk.clone(), Counter()) as replica:
        report = replica.recovery
    text = str(report)
    assert text.startswith("recovered to op 6 in ")
    assert text.endswith(": snapshot at op 4 + 2 ops replayed")
    assert "Report(" not in text and "\n" not in text

    one = attrs.evolve(report, snapshot_op=0, ops_replayed=1, ops_rejected=1)
    assert str(one).endswith(
        ": no snapshot (replayed from op 1) + 1 op replayed (1 rejected again, as when first "
        "applied)"
    )
    torn = attrs.evolve(
        report,
        bytes_truncated=120,
        journal=attrs.evolve(report.journal, truncated_path="wal/00000000000000000001.wal"),
        snapshots_skipped=2,
    )
    assert str(torn).endswith(
        "; cut a torn tail of 120 bytes from wal/00000000000000000001.wal"
        "; skipped 2 invalid snapshots"
    )
