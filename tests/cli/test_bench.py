"""`trio-replica bench` as a subprocess: tables with the peers side by side."""

from __future__ import annotations

from pathlib import Path

from replica_dirs import run_cli


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
    assert "unknown benchmark(s) warp; known: journal, recovery, replica, snapshots" in proc.stderr
    proc = run_cli("bench", "--dir", tmp_path / "missing")
    assert proc.returncode == 2 and "no such directory" in proc.stderr
