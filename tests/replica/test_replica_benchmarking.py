"""The replica benchmark functions run and report consistent figures (no speed asserted)."""

from __future__ import annotations

from pathlib import Path

import trio

from trio_replica.benchmarking.replica import (
    format_recovery_table,
    format_throughput_table,
    run_recovery,
    run_throughput,
)


async def test_throughput_rows(tmp_path: Path) -> None:
    rows = await trio.to_thread.run_sync(
        lambda: run_throughput(16, str(tmp_path), concurrency=(1, 4), min_ops_per_submitter=2)
    )
    assert [row.concurrency for row in rows] == [1, 4]
    for row in rows:
        assert row.replica.ops == 16
        assert row.sqlite.ops == 16
        assert row.raw.ops == 16
        assert 0 < row.replica.p50_ms <= row.replica.p99_ms
        assert row.replica_vs_raw == row.replica.ops_per_s / row.raw.ops_per_s
    table = format_throughput_table(rows)
    assert "rep/raw" in table
    assert len(table.splitlines()) == 3


async def test_recovery_rows(tmp_path: Path) -> None:
    rows = await trio.to_thread.run_sync(lambda: run_recovery(300, str(tmp_path), batch=64))
    assert [(r.ops_in_journal, r.snapshot_op, r.ops_replayed) for r in rows] == [
        (300, 0, 300),
        (300, 300, 0),
        (300, 300, 0),
    ]
    assert rows[0].replay_ops_per_s > 0
    assert "replay ops/s" in format_recovery_table(rows)
