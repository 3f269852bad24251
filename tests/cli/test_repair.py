"""`trio-replica repair --truncate-tail` as a subprocess: what it cuts, keeps and refuses."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_cuts_a_torn_tail_and_keeps_a_broken_copy(data_dir: Path) -> None:
    torn = tear_tail(data_dir)
    segment = Path(torn.path)
    original = segment.read_bytes()
    proc = run_cli("repair", data_dir, "--truncate-tail")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"cut 20 bytes at offset {torn.offset} of file {segment} "
        "(0 records with an intact header among them)"
    )
    assert lines[1].startswith("why: torn tail: ")
    assert lines[2] == f"kept a copy of the original: {segment}.broken"
    assert Path(f"{segment}.broken").read_bytes() == original
    assert segment.stat().st_size == torn.offset
    assert run_cli("verify", data_dir).returncode == 0
    assert [r.op for r in records(data_dir)] == list(range(1, OPS + 1))
    listing = run_cli("inspect", data_dir, "--to", 1).stdout
    assert "segments (wal/): 13, other files: 1" in listing
    assert f"  {segment.name}.broken  a copy kept by repair, not read, " in listing


def test_refuses_to_cut_corruption_before_a_later_batch(data_dir: Path) -> None:
    victim = corrupt_middle(data_dir)
    before = tree_state(data_dir)
    proc = run_cli("repair", data_dir, "--truncate-tail")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("trio-replica: error: ")
    assert f"offset {victim.offset}, op {victim.op}" in line
    assert "not a torn tail" in line and "--force" in line
    after = tree_state(data_dir)
    # LOCK names its last holder (not data); nothing else changed, not even
    # a .broken copy.
    after.pop("LOCK")
    before.pop("LOCK")
    assert after == before


def test_force_cuts_at_the_first_bad_record(data_dir: Path) -> None:
    victim = corrupt_middle(data_dir)
    proc = run_cli("repair", data_dir, "--truncate-tail", "--force")
    assert proc.returncode == 0, proc.stderr
    assert f"at offset {victim.offset} of file {victim.path}" in proc.stdout
    assert f"kept a copy of the original: {victim.path}.broken" in proc.stdout
    assert [r.op for r in records(data_dir)] == list(range(1, victim.op))
    # What is left verifies (the newest snapshot, at op 192, is still covered).
    proc = run_cli("verify", data_dir)
    assert proc.returncode == 0
    assert f"{victim.op - 1} records (ops 1..{victim.op - 1})" in proc.stdout


def test_damage_the_newest_snapshot_covers_is_left_as_open_leaves_it(data_dir: Path) -> None:
    # Damage in the first (sealed) segment, far below the newest snapshot
    # (op 192), and the journal after it chains to that snapshot: opening
    # serves the snapshot, so repair (even forced) neither refuses nor cuts.
    victim = corrupt_sealed(data_dir)
    before = tree_state(data_dir)
    proc = run_cli("repair", data_dir, "--truncate-tail", "--force")
    assert proc.returncode == 0, proc.stderr
    assert "left as it is (opening serves the snapshot)" in proc.stdout
    assert f"op {victim.op}" in proc.stdout
    after = tree_state(data_dir)
    after.pop("LOCK")
    before.pop("LOCK")
    assert after == before


def test_force_never_deletes_ops_after_the_newest_valid_snapshot(data_dir: Path) -> None:
    # Damage in the first (sealed) segment, far below the newest snapshot
    # (op 192), and the record of op 192 and the header of the segment that
    # starts at op 193 damaged too, so nothing after the damage is proven to
    # chain to that snapshot: open refuses, and a forced cut at the first
    # damage would delete ops 193.. that recovery from that snapshot needs.
    # Repair refuses and changes nothing.
    victim = corrupt_sealed(data_dir)
    [rec] = [r for r in records(data_dir) if r.op == 192]
    flip_bit(Path(rec.path), rec.offset + 20)
    assert (data_dir / "wal" / f"{193:020d}.wal").exists(), "the template rolls at op 193"
    flip_bit(data_dir / "wal" / f"{193:020d}.wal", 30)
    before = tree_state(data_dir)
    proc = run_cli("repair", data_dir, "--truncate-tail", "--force")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert f"op {victim.op}" in line
    assert "newest valid snapshot (op 192)" in line and "nothing was changed" in line
    after = tree_state(data_dir)
    after.pop("LOCK")
    before.pop("LOCK")
    assert after == before
    assert not list((data_dir / "wal").glob("*.broken"))


def test_clean_journal_has_nothing_to_cut(data_dir: Path) -> None:
    before = tree_state(data_dir)
    proc = run_cli("repair", data_dir, "--truncate-tail")
    assert proc.returncode == 0
    assert proc.stdout == "nothing to cut: the journal has no torn tail and no bad record\n"
    after = tree_state(data_dir)
    after.pop("LOCK")  # the exclusive lock is taken (repair writes), nothing else changes
    before.pop("LOCK")
    assert after == before


def test_needs_truncate_tail_and_an_unlocked_directory(held_lock: Path) -> None:
    proc = run_cli("repair", held_lock)
    assert proc.returncode == 2
    assert "repair needs --truncate-tail" in proc.stderr
    proc = run_cli("repair", held_lock, "--truncate-tail")
    assert proc.returncode == 3
    [line] = proc.stderr.splitlines()
    assert "is in use by another replica or process" in line


def test_leaves_a_corrupted_snapshot_alone_and_says_so(data_dir: Path) -> None:
    snapshot = newest_snapshot(data_dir)
    flip_bit(snapshot, 50)
    damaged = snapshot.read_bytes()
    proc = run_cli("repair", data_dir, "--truncate-tail")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "nothing to cut: the journal has no torn tail and no bad record"
    assert lines[1].startswith(f"note: snapshot file {snapshot} (op 192) is invalid (")
    assert snapshot.read_bytes() == damaged


def test_json_output_of_a_repair(data_dir: Path) -> None:
    torn = tear_tail(data_dir)
    proc = run_cli("repair", data_dir, "--truncate-tail", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["file"] == torn.path and report["offset"] == torn.offset
    assert report["bytes_cut"] == 20 and report["broken_copies"] == [f"{torn.path}.broken"]


def test_lost_newest_segment_is_not_offered_a_force_that_then_refuses(data_dir: Path) -> None:
    """A lost segment has no record to cut at: repair says it cannot fix it
    automatically, with and without --force, and changes nothing."""
    newest = max(p for p in (data_dir / "wal").iterdir() if p.suffix == ".wal")
    newest.unlink()
    before = tree_state(data_dir)
    before.pop("LOCK", None)
    plain = run_cli("repair", data_dir, "--truncate-tail")
    forced = run_cli("repair", data_dir, "--truncate-tail", "--force")
    for proc in (plain, forced):
        assert proc.returncode == 1, proc.stderr
        [line] = proc.stderr.splitlines()
        assert "cannot fix it automatically" in line
        assert "nothing was changed" in line
    assert "--force" not in plain.stderr
    after = tree_state(data_dir)
    after.pop("LOCK", None)
    assert after == before
