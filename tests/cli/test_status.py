"""``trio-replica status``: a cheap summary that agrees with a full scan, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from replica_dirs import (
    BLOB_OP,
    SNAPSHOT_OPS,
    corrupt_middle,
    run_cli,
    segments,
    tear_tail,
    tree_state,
)

from trio_replica.cli.status import _agreement, _lagging, _print_cluster


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
    # Nothing valid follows a torn tail: it reads as the end, not as damage inside.
    assert status["records_after_problem"] == 0
    assert "the last segment ends in a bad record" in status["problems"][0]


def test_status_tells_damage_in_the_middle_from_a_torn_tail(data_dir: Path) -> None:
    """A bad record with valid records after it is not "the end" of the
    segment: status says damage inside the journal and how far it goes."""
    victim = corrupt_middle(data_dir)
    status = json.loads(run_cli("status", data_dir, "--json").stdout)
    assert status["last_op"] == victim.op - 1
    assert status["records_after_problem"] == BLOB_OP - victim.op
    assert status["last_op_after_problem"] == BLOB_OP
    (problem,) = status["problems"]
    assert "middle of the last segment" in problem and "not a torn tail" in problem
    assert "ends in a bad record" not in problem
    text = run_cli("status", data_dir).stdout
    assert f"then a bad record, then {BLOB_OP - victim.op} more up to op {BLOB_OP}" in text


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


def _status(path: Path) -> tuple[int, dict[str, Any]]:
    proc = run_cli("status", path, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_status_torn_tail_is_not_clean_and_predicts_nothing(data_dir: Path) -> None:
    tear_tail(data_dir)
    code, status = _status(data_dir)
    assert code == 1
    assert status["ops_to_replay"] is None and status["problems"]


def test_status_sees_a_lost_newest_segment(data_dir: Path) -> None:
    """The superblock names the newest segment: its loss is seen cheaply, as open sees it."""
    segments(data_dir)[-1].unlink()
    code, status = _status(data_dir)
    assert code == 1 and status["ops_to_replay"] is None
    assert any("lost" in str(p) for p in status["problems"]), status["problems"]
    text = run_cli("status", data_dir).stdout
    assert "would replay" not in text and "run `trio-replica verify`" in text


def test_status_sees_an_unreadable_superblock(data_dir: Path) -> None:
    (data_dir / "superblock").write_bytes(b"\x00garbage" * 40)
    code, status = _status(data_dir)
    assert code == 1 and status["ops_to_replay"] is None
    assert any("superblock" in str(p) for p in status["problems"])


def test_status_sees_an_empty_segment_that_does_not_continue_the_journal(data_dir: Path) -> None:
    (data_dir / "wal" / f"{BLOB_OP + 500:020d}.wal").write_bytes(b"")
    code, status = _status(data_dir)
    assert code == 1 and status["ops_to_replay"] is None


def test_status_json_says_when_a_replica_holds_the_directory(held_lock: Path) -> None:
    _, status = _status(held_lock)
    assert status["advisory"] is True


def test_cluster_status_reports_a_replica_far_behind_as_catching_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Agreeing is about views and the primary; a replica that applied far
    less than the others is named as catching up, not hidden in "agree"."""
    found = [
        {"address": f"h:{i}", "replica": i, "cluster_id": 1, "status": "normal", "view": 3,
         "primary": i == 0, "replica_count": 3, "op": 3008, "commit": 3008, "applied": applied}
        for i, applied in enumerate([3008, 2990, 0])
    ]  # fmt: skip
    report = {"replicas": found, **_agreement(found), "lagging": _lagging(found)}
    assert report["agree"] is True
    assert report["lagging"] == [{"address": "h:2", "replica": 2, "applied": 0, "behind": 3008}]
    _print_cluster(report)
    out = capsys.readouterr().out
    assert "replica 2 at h:2 is catching up: applied 0, 3008 ops behind" in out
    assert "replica 1" not in out.split("agree")[-1]  # 18 ops apart: only busy
