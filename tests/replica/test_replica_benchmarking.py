"""The replica benchmark functions run and report consistent figures (no speed asserted)."""

from __future__ import annotations

from pathlib import Path

import trio

from trio_replica.benchmarking.replica import (
    decode_apply_ops_per_s,
    format_batch_table,
    format_recovery_table,
    format_throughput_table,
    run_batches,
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
        assert row.sqlite_convoy.ops == 16
        assert row.sqlite_group.ops == 16
        assert row.lmdb is None or row.lmdb.ops == 16
        assert row.raw.ops == 16
        assert 0 < row.replica.p50_ms <= row.replica.p99_ms
        assert row.replica_vs_raw == row.replica.ops_per_s / row.raw.ops_per_s
        group = row.sqlite_group.ops_per_s
        assert row.replica_vs_sqlite_group == row.replica.ops_per_s / group
    table = format_throughput_table(rows)
    assert "sq-group" in table and "sq-conv" in table
    assert len(table.splitlines()) == 3


async def test_sqlite_group_commit_peer_stores_every_op(tmp_path: Path) -> None:
    import sqlite3

    from trio_replica.benchmarking.peers import sqlite_group_commit

    path = str(tmp_path / "group.db")
    latency = await trio.to_thread.run_sync(lambda: sqlite_group_commit(path, b"p", 50, 8))
    assert latency.ops == 50
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM commands").fetchone() == (50,)
    finally:
        db.close()


async def test_batch_rows(tmp_path: Path) -> None:
    row = await trio.to_thread.run_sync(lambda: run_batches(40, str(tmp_path), batch=16))
    assert row.replica.ops == 40 and row.raw.ops == 40
    assert row.replica_vs_raw == row.replica.ops_per_s / row.raw.ops_per_s
    assert "submit_many of 16" in format_batch_table(row)
    assert decode_apply_ops_per_s(100) > 0


async def test_recovery_rows(tmp_path: Path) -> None:
    rows = await trio.to_thread.run_sync(lambda: run_recovery(300, str(tmp_path), batch=64))
    assert [(r.ops_in_journal, r.snapshot_op, r.ops_replayed) for r in rows] == [
        (300, 0, 300),
        (300, 300, 0),
        (300, 300, 0),
    ]
    assert rows[0].replay_ops_per_s > 0
    assert "replay ops/s" in format_recovery_table(rows)
