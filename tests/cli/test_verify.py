"""`trio-replica verify` as a subprocess on real directories: clean and damaged."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from replica_dirs import (
    OPS,
    corrupt_middle,
    corrupt_sealed,
    flip_bit,
    newest_snapshot,
    records,
    run_cli,
    tear_tail,
    tree_state,
)

from trio_replica import open_replica
from trio_replica.machines.counter import Counter


def test_clean_directory_exits_0_with_a_summary(data_dir: Path) -> None:
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("clean: 13 segments, 201 records (ops 1..201)")
    assert "2 snapshots (newest at op 192)" in lines[0]
    assert proc.stderr == ""


def test_torn_tail_is_not_clean_and_names_the_repair(data_dir: Path) -> None:
    torn = tear_tail(data_dir)
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    assert "journal: torn tail: 20 bytes" in proc.stdout
    assert f"at offset {torn.offset} of file {torn.path}" in proc.stdout
    assert "opening the journal would truncate them" in proc.stdout
    assert f"trio-replica repair {data_dir} --truncate-tail" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "NOT CLEAN: 1 problem found"


def test_bit_flip_before_a_later_batch_is_corruption_with_file_offset_op(data_dir: Path) -> None:
    victim = corrupt_middle(data_dir)
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    problem = proc.stdout.splitlines()[0]
    assert problem.startswith("journal: ")
    assert f"(file {victim.path}, offset {victim.offset}, op {victim.op})" in problem
    assert "later batch was written" in problem
    assert "torn tail" not in proc.stdout


def test_bit_flip_in_a_sealed_segment_below_the_snapshot_opens_with_damage(
    data_dir: Path,
) -> None:
    # Op 4 is below the newest snapshot (op 192), whose chain the journal
    # after the damage continues: the directory opens; verify says so, names
    # the damage and is not clean (exit 1).
    victim = corrupt_sealed(data_dir)
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    [line, closing] = proc.stdout.splitlines()
    assert f"file {victim.path}, offset {victim.offset}, op {victim.op}: " in line
    assert "sealed" in line and "snapshot at op 192" in line
    assert "the directory opens" in line
    assert closing == "NOT CLEAN: 1 problem found"


def test_bit_flip_in_a_sealed_segment_no_snapshot_covers_is_corruption(data_dir: Path) -> None:
    victim = corrupt_sealed(data_dir)
    for snapshot in (data_dir / "snapshots").glob("*.snapshot"):
        snapshot.unlink()  # the journal starts at op 1: nothing else is missing
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    assert f"(file {victim.path}, offset {victim.offset}, op {victim.op})" in proc.stdout
    assert "sealed" in proc.stdout and "opens" not in proc.stdout


def test_corrupted_snapshot_is_reported_with_its_file_and_op(data_dir: Path) -> None:
    snapshot = newest_snapshot(data_dir)
    flip_bit(snapshot, snapshot.stat().st_size - 5)
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    assert f"snapshot: file {snapshot} (op 192) is invalid: " in proc.stdout
    assert "journal" not in proc.stdout  # the journal itself is fine


def test_a_journal_gap_behind_the_snapshots_is_reported(data_dir: Path) -> None:
    # Without its first segment the journal would start later; the superblock
    # says where it starts, so the loss is named (no snapshot covers it either).
    first = sorted((data_dir / "wal").glob("*.wal"))[0]
    first.unlink()
    for snapshot in (data_dir / "snapshots").glob("*.snapshot"):
        snapshot.unlink()
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    assert "leading segments were lost" in proc.stdout


def test_a_held_directory_gets_an_advisory_report_and_no_verdict(held_lock: Path) -> None:
    proc = run_cli("verify", held_lock)
    assert proc.returncode == 3
    [line] = proc.stderr.splitlines()
    assert line.startswith("note: data directory ")
    assert "in use by a running replica" in line and f"(pid {os.getpid()})" in line
    assert proc.stdout.startswith("clean: ")  # what was seen, as advisory
    assert "no verdict: a running replica holds the directory" in proc.stdout


def test_missing_and_foreign_directories_are_usage_errors(tmp_path: Path) -> None:
    proc = run_cli("verify", tmp_path / "nope")
    assert proc.returncode == 2
    assert proc.stderr == f"trio-replica: error: {tmp_path / 'nope'}: no such directory\n"
    (tmp_path / "notes.txt").write_text("hello")
    proc = run_cli("verify", tmp_path)
    assert proc.returncode == 2
    assert "is not a replica data directory" in proc.stderr
    proc = run_cli("verify", tmp_path / "notes.txt")
    assert proc.returncode == 2
    assert "is not a directory" in proc.stderr


def test_foreign_segment_file_is_a_one_line_error(data_dir: Path) -> None:
    segment = sorted((data_dir / "wal").glob("*.wal"))[0]
    segment.write_bytes(b"PK\x03\x04 definitely a zip file" + bytes(100))
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    assert "bad magic" in proc.stdout
    assert str(segment) in proc.stdout


def test_usage_errors_exit_2() -> None:
    assert run_cli("verify").returncode == 2
    assert run_cli("verify", "a", "b").returncode == 2


def test_verify_never_writes(data_dir: Path, tmp_path: Path) -> None:
    """Not a byte, not an mtime, not a lock file: on clean, torn and corrupt data."""
    os.unlink(data_dir / "LOCK")  # verify must not create it either
    cases = {"clean": data_dir}
    for name, damage in (("torn", tear_tail), ("corrupt", corrupt_middle)):
        path = tmp_path / name
        shutil.copytree(data_dir, path)
        damage(path)
        cases[name] = path
    for name, path in cases.items():
        before = tree_state(path)
        proc = run_cli("verify", path)
        assert proc.returncode == (0 if name == "clean" else 1), (name, proc.stdout)
        assert tree_state(path) == before, name
    assert not (data_dir / "LOCK").exists()
    assert len(records(data_dir)) == OPS + 1


def test_snapshots_without_a_journal_are_not_clean(data_dir: Path) -> None:
    shutil.rmtree(data_dir / "wal")
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == f"journal: there is no {data_dir / 'wal'} directory"
    proc = run_cli("inspect", data_dir)
    assert proc.returncode == 0
    assert "segments (wal/): 0" in proc.stdout and "0 records listed, 0 bad" in proc.stdout


async def test_verify_predicts_exactly_what_opening_the_replica_cuts(tmp_path: Path) -> None:
    data = tmp_path / "replica"
    async with open_replica(data, Counter(), snapshot_every=40) as replica:
        for n in range(100):
            await replica.submit({"add": n})
    torn = tear_tail(data)
    proc = await trio.run_process(
        [sys.executable, "-m", "trio_replica", "verify", str(data)],
        capture_stdout=True,
        check=False,
    )
    assert proc.returncode == 1
    predicted = re.search(rb"torn tail: (\d+) bytes at offset (\d+)", proc.stdout)
    assert predicted is not None, proc.stdout
    counter = Counter()
    async with open_replica(data, counter, snapshot_every=40) as replica:
        report = replica.recovery
        assert report.bytes_truncated == int(predicted.group(1))
        assert report.journal.truncated_offset == int(predicted.group(2)) == torn.offset
        assert replica.applied_op == 99 and counter.total == sum(range(99))
    assert run_cli("verify", data).returncode == 0


def test_read_only_tools_open_every_file_read_only(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify and inspect work on a read-only copy or mount: they never ask
    for write access to any file (checked in process: as root, permissions
    alone could not show it)."""
    from trio_replica.cli import main

    opened: list[tuple[str, int]] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append((os.fspath(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    assert main(["verify", str(data_dir)]) == 0
    assert main(["inspect", str(data_dir)]) == 0
    capsys.readouterr()
    files = [(p, f) for p, f in opened if p.endswith((".wal", ".snapshot", "LOCK"))]
    assert any(p.endswith(".wal") for p, _ in files) and any(
        p.endswith(".snapshot") for p, _ in files
    )
    for path, flags in files:
        assert flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) == 0, path


def test_json_reports_the_same_judgment(data_dir: Path) -> None:
    proc = run_cli("verify", data_dir, "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["clean"] is True and report["problems"] == []
    assert report["journal"]["last_op"] == 201 and len(report["snapshots"]) == 2
    first = sorted((data_dir / "wal").glob("*.wal"))[0]
    first.unlink()
    proc = run_cli("verify", data_dir, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["clean"] is False and "leading segments were lost" in report["problems"][0]
