"""``trio-replica status``: a cheap summary that agrees with a full scan, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from replica_dirs import BLOB_OP, SNAPSHOT_OPS, run_cli, segments, tear_tail, tree_state


def test_status_agrees_with_the_directory(data_dir: Path) -> None:
    before = tree_state(data_dir)
    proc = run_cli("status", data_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["first_op"] == 1 and status["last_op"] == BLOB_OP
    assert status["segments"] == len(segments(data_dir)) > 1
    assert status["segment_bytes"] == sum(p.stat().st_size for p in segments(data_dir))
    assert status["newest_snapshot_op"] == SNAPSHOT_OPS[-1]
    assert status["ops_to_replay"] == BLOB_OP - SNAPSHOT_OPS[-1]
    assert status["invalid_snapshots"] == 0 and status["last_segment_problem"] is None
    text = run_cli("status", data_dir)
    assert text.returncode == 0 and text.stderr == ""  # no replica running: no note
    assert f"ops 1..{BLOB_OP}" in text.stdout
    assert f"newest valid at op {SNAPSHOT_OPS[-1]}" in text.stdout
    assert f"opening it would replay {BLOB_OP - SNAPSHOT_OPS[-1]} op(s)" in text.stdout
    assert tree_state(data_dir) == before  # read-only


def test_status_reports_a_torn_tail_and_where_the_good_records_end(data_dir: Path) -> None:
    torn = tear_tail(data_dir)
    status = json.loads(run_cli("status", data_dir, "--json").stdout)
    assert status["last_op"] == torn.op - 1
    assert f"op {torn.op} at offset {torn.offset}" in status["last_segment_problem"]


def test_status_does_not_need_the_lock(held_lock: Path) -> None:
    # A running replica holds the lock; status neither waits nor refuses.
    proc = run_cli("status", held_lock)
    assert proc.returncode == 0, proc.stderr
    assert f"ops 1..{BLOB_OP}" in proc.stdout
    [note] = proc.stderr.splitlines()
    assert note.startswith(f"note: data directory {held_lock} is in use by a running replica")
    assert "advisory" in note


def test_status_errors_are_one_line_and_json_too(tmp_path: Path) -> None:
    proc = run_cli("status", tmp_path / "missing", "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {
        "error": f"{tmp_path / 'missing'}: no such directory",
        "exit_status": 2,
    }
    [line] = proc.stderr.splitlines()
    assert line == f"trio-replica: error: {tmp_path / 'missing'}: no such directory"
