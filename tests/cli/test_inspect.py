"""`trio-replica inspect` as a subprocess: listing, decoding, ranges, JSON, damage."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from replica_dirs import (
    BLOB_OP,
    OPS,
    commands,
    corrupt_middle,
    flip_bit,
    newest_snapshot,
    run_cli,
    tear_tail,
)


def _record_lines(stdout: str) -> list[list[str]]:
    lines = stdout.split("records:\n", 1)[1].splitlines()[1:-1]
    return [line.split(maxsplit=4) for line in lines]


def test_lists_segments_snapshots_and_decoded_records(data_dir: Path) -> None:
    proc = run_cli("inspect", data_dir)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "segments (wal/): 13\n  00000000000000000001.wal  first op 1, " in out
    assert "snapshots (snapshots/): 2\n" in out
    assert "00000000000000000192.snapshot  op 192, " in out
    assert "machine metadata v1, valid" in out
    rows = _record_lines(out)
    assert [int(row[0]) for row in rows] == list(range(1, BLOB_OP + 1))
    _op, _size, checksum, status, body = rows[0]
    assert status == "ok" and len(checksum) == 16
    assert json.loads(body) == commands()[0]
    assert rows[-1][4] == '{"type":"blob","data":{"$bytes":"00ff726177"}}'
    assert out.endswith(f"{BLOB_OP} records listed, 0 bad\n")


def test_from_and_to_select_an_op_range(data_dir: Path) -> None:
    proc = run_cli("inspect", data_dir, "--from", 47, "--to", 52)
    assert proc.returncode == 0
    assert [int(row[0]) for row in _record_lines(proc.stdout)] == [47, 48, 49, 50, 51, 52]


def test_json_lines_carry_every_field_and_the_whole_command(data_dir: Path) -> None:
    proc = run_cli("inspect", data_dir, "--json", "--from", 190)
    assert proc.returncode == 0
    objects: list[dict[str, Any]] = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [o["kind"] for o in objects]
    segments = len(list((data_dir / "wal").glob("*.wal")))
    assert kinds == (
        ["superblock"] + ["segment"] * segments + ["snapshot"] * 2 + ["record"] * (BLOB_OP - 189)
    )
    assert objects[0]["valid"] is True and len(objects[0]["directory_id"]) == 32
    snapshot = objects[1 + segments]
    assert snapshot["op"] == 192 and snapshot["valid"] is True and snapshot["reason"] is None
    assert snapshot["machine_name"] == "metadata"
    recs = [o for o in objects if o["kind"] == "record"]
    assert [r["op"] for r in recs] == list(range(190, BLOB_OP + 1))
    for record in recs[:-1]:
        assert record["command"] == commands()[record["op"] - 1]
        assert record["status"] == "ok"
        assert set(record) == {
            "kind", "file", "offset", "op", "batch_first", "size", "checksum", "status", "command"
        }  # fmt: skip
    assert recs[-1]["command"] == {"type": "blob", "data": {"$bytes": "00ff726177"}}


def test_torn_tail_record_is_listed_as_bad(data_dir: Path) -> None:
    torn = tear_tail(data_dir)
    proc = run_cli("inspect", data_dir, "--from", OPS - 1)
    assert proc.returncode == 1
    rows = _record_lines(proc.stdout)
    assert [row[3] for row in rows] == ["ok", "ok", "BAD:"]
    assert rows[-1][0] == str(torn.op)
    assert "BAD: only 20 bytes" in proc.stdout  # the header itself was cut
    assert proc.stderr == (
        f"trio-replica: 1 record failed verification; run `trio-replica verify {data_dir}` "
        "for the details\n"
    )


def test_corrupted_record_is_listed_as_bad_with_its_reason(data_dir: Path) -> None:
    victim = corrupt_middle(data_dir)
    proc = run_cli("inspect", data_dir, "--json", "--from", victim.op - 1)
    assert proc.returncode == 1
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    bad = [r for r in recs if r["kind"] == "record" and r["status"] != "ok"]
    assert len(bad) == 1
    assert bad[0]["op"] == victim.op and bad[0]["offset"] == victim.offset
    assert "checksum" in bad[0]["status"]
    assert "command" not in bad[0]
    # The records after the bad one are listed too (the damage is in the middle).
    after = [r["op"] for r in recs if r["kind"] == "record" and r["op"] > victim.op]
    assert after == list(range(victim.op + 1, BLOB_OP + 1))
    assert all(r["status"] == "ok" for r in recs if r["kind"] == "record" and r["op"] > victim.op)
    around = run_cli("inspect", data_dir, "--from", victim.op - 1, "--to", victim.op + 1)
    assert [row[0] for row in _record_lines(around.stdout)] == [
        str(victim.op - 1),
        str(victim.op),
        str(victim.op + 1),
    ]
    assert [row[3] for row in _record_lines(around.stdout)] == ["ok", "BAD:", "ok"]


def test_corrupted_snapshot_is_listed_as_invalid(data_dir: Path) -> None:
    snapshot = newest_snapshot(data_dir)
    flip_bit(snapshot, 40)
    proc = run_cli("inspect", data_dir, "--to", 1)
    # Every listed record is fine, but damage is damage: exit 1, as verify does.
    assert proc.returncode == 1
    assert f"{snapshot.name}  op 192, " in proc.stdout
    assert "INVALID: " in proc.stdout
    assert proc.stderr.startswith(
        "trio-replica: 1 snapshot or superblock file failed verification;"
    )
    assert run_cli("verify", data_dir).returncode == 1
    assert run_cli("status", data_dir).returncode == 1


def test_held_directory_is_listed_as_advisory_missing_and_bad_range(
    held_lock: Path, tmp_path: Path
) -> None:
    # A running replica's directory is listed (a reader never stands in the
    # way), with a note that the view is advisory.
    proc = run_cli("inspect", held_lock)
    assert proc.returncode == 0 and "records listed, 0 bad" in proc.stdout
    assert proc.stderr.startswith("note: data directory ")
    assert f"(pid {os.getpid()})" in proc.stderr and "advisory view" in proc.stderr
    proc = run_cli("inspect", tmp_path / "missing")
    assert proc.returncode == 2 and "no such directory" in proc.stderr
    proc = run_cli("inspect", held_lock, "--from", 9, "--to", 3)
    assert proc.returncode == 2 and "--from 9 is after --to 3" in proc.stderr
    proc = run_cli("inspect", held_lock, "--from", "zero")
    assert proc.returncode == 2 and "not an op number" in proc.stderr


def test_op_shows_one_whole_command(data_dir: Path) -> None:
    proc = run_cli("inspect", data_dir, "--op", BLOB_OP)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("records:\n", 1)[1].splitlines()
    assert lines[1].split()[0] == str(BLOB_OP) and lines[1].endswith("ok      command:")
    command_text = "\n".join(line for line in lines[2:] if line.startswith("    "))
    assert json.loads(command_text) == {"type": "blob", "data": {"$bytes": "00ff726177"}}
    assert lines[-1] == "1 records listed, 0 bad"
    proc = run_cli("inspect", data_dir, "--op", 3, "--to", 4)
    assert proc.returncode == 2 and "--op shows one op" in proc.stderr
