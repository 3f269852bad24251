"""`trio-replica bench` as a subprocess: tables with the peers side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replica_dirs import run_cli

from trio_replica.cli import main
from trio_replica.cli.bench import filesystem_type, ram_backed


def test_quick_journal_bench_prints_peers_and_ratios(tmp_path: Path) -> None:
    proc = run_cli("bench", "--quick", "--only", "journal", "--dir", tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "== journal: durable append throughput" in out
    assert "== snapshots" not in out
    header = next(line for line in out.splitlines() if line.startswith("batch"))
    for column in ("journal ops/s", "raw ops/s", "sqlite ops/s", "journal/raw", "journal/sqlite"):
        assert column in header
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "16", "256"]
    assert list(tmp_path.iterdir()) == []  # its scratch files are gone


def test_bench_usage_errors(tmp_path: Path) -> None:
    proc = run_cli("bench", "--only", "journal,warp")
    assert proc.returncode == 2
    known = "cluster, journal, recovery, replica, snapshots"
    assert f"unknown benchmark(s) warp; known: {known}" in proc.stderr
    proc = run_cli("bench", "--dir", tmp_path / "missing")
    assert proc.returncode == 2 and "no such directory" in proc.stderr


def test_every_ratio_reads_higher_is_better(tmp_path: Path) -> None:
    proc = run_cli("bench", "--quick", "--only", "snapshots", "--dir", tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    rows = [row for row in lines if row["benchmark"] == "snapshots"]
    goals = [row for row in lines if row["benchmark"] == "goals"]
    assert len(rows) == 2 and len(rows) + len(goals) == len(lines)
    # The 10 MiB row's ratios, next to their targets.
    assert [goal["name"] for goal in goals] == [
        "snapshot load vs plain read",
        "snapshot persist vs plain write+fsync",
    ]
    big = next(row for row in rows if row["state_bytes"] == 10 * 2**20)
    assert goals[0]["measured"] == big["load_vs_raw"] and goals[0]["target"] == 0.2
    assert goals[0]["met"] == (goals[0]["measured"] >= 0.2)
    for row in rows:
        # Speed ratios: the plain file's time over trio-replica's time.
        assert row["persist_vs_raw"] == row["raw_write_seconds"] / row["persist_seconds"]
        assert row["load_vs_raw"] == row["raw_read_seconds"] / row["load_seconds"]
    text = run_cli("bench", "--quick", "--only", "snapshots", "--dir", tmp_path).stdout
    assert "higher is better, 1.0 = as fast" in text
    assert "persist vs raw" in text and "persist/raw" not in text
    assert "== goals" in text and "snapshot load vs plain read" in text


def test_nothing_replayed_has_no_rate() -> None:
    from trio_replica.benchmarking.replica import RecoveryRow, format_recovery_table

    rows = [
        RecoveryRow("no snapshot", 1000, 0, 1000, 0.5, 0.1),
        RecoveryRow("snapshot, compacted", 1000, 1000, 0, 0.2, 0.1),
    ]
    lines = format_recovery_table(rows).splitlines()
    assert lines[1].split()[-1] == "2,000"
    assert lines[2].split()[-1] == "-"


def test_ram_backed_directories_are_recognised() -> None:
    mounts = [
        "/dev/vda / ext4 rw 0 0",
        "tmpfs /dev/shm tmpfs rw 0 0",
        "tmpfs /mnt/my\\040ram tmpfs rw 0 0",
    ]
    assert filesystem_type("/dev/shm/x", mounts) == "tmpfs"
    assert ram_backed("/dev/shm", mounts) and ram_backed("/mnt/my ram/bench", mounts)
    assert not ram_backed("/home/me", mounts) and not ram_backed("/dev/shmem", mounts)


def test_a_ram_backed_dir_gets_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_replica.cli import bench

    monkeypatch.setattr(bench, "filesystem_type", lambda path, mounts=None: "tmpfs")
    monkeypatch.setattr(bench, "ram_backed", lambda path, mounts=None: True)
    monkeypatch.setattr(
        bench, "SECTIONS", [bench.Section("fake: nothing", lambda q, d: bench.Measured("t", []))]
    )
    assert main(["bench", "--dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"trio-replica: warning: {tmp_path} is on a RAM-backed file system")


def test_goals_compare_each_ratio_with_its_target() -> None:
    from trio_replica.benchmarking.goals import TARGETS, Goal, format_goals

    below = Goal.of("64 submitters vs sqlite group commit", 1.03)
    above = Goal.of("1 submitter vs raw fsync loop", 0.78)
    assert below.target == TARGETS[below.name] == 2.0 and not below.met
    assert above.target == 0.4 and above.met
    assert Goal("exactly", 1.0, 1.0).met
    lines = format_goals([below, above]).splitlines()
    assert lines[0].split() == ["goal", "measured", "target", "met"]
    assert lines[1].split()[-3:] == ["1.03", "2.00", "NO"]
    assert lines[2].split()[-3:] == ["0.78", "0.40", "yes"]
