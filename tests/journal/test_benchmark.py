"""The append benchmark runs and reports sane figures (speed itself is not asserted)."""

from __future__ import annotations

from pathlib import Path

from trio_replica.benchmarking.journal import format_table, run


def test_benchmark_runs_every_peer(tmp_path: Path) -> None:
    rows = run(16, str(tmp_path), batch_sizes=(1, 4), repeat=1, min_batches=2)
    assert [row.batch for row in rows] == [1, 4]
    for row in rows:
        assert row.ops == 16
        assert row.journal_ops_per_s > 0 and row.raw_ops_per_s > 0 and row.sqlite_ops_per_s > 0
    table = format_table(rows)
    assert "journal/raw" in table and len(table.splitlines()) == 3
