"""The demo: end to end as a subprocess, its consistency check, its directory safety."""

from __future__ import annotations

import random
import re
from itertools import islice
from pathlib import Path

import cbor2
import pytest
from replica_dirs import run_cli

from trio_replica.cli.demo.consistency import check_consistency
from trio_replica.cli.demo.workdir import MARKER_NAME, prepare_demo_dir
from trio_replica.cli.errors import UsageError
from trio_replica.errors import DirectoryLockedError, InvalidCommand
from trio_replica.machines.counter import Counter
from trio_replica.machines.metadata import MetadataStateMachine
from trio_replica.machines.workload import metadata_workload
from trio_replica.storage import OsDirectory


def test_demo_end_to_end_kills_recovers_and_is_consistent(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    # Seed 1 puts the kill at 46% of the ops: room for the writer to still be
    # writing when the signal lands, even on a busy machine.
    proc = run_cli(
        "demo", "--dir", data, "--ops", 10_000, "--clients", 16, "--seed", 1, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    killed = re.search(r"killed the writer with SIGKILL mid-write: (\d+) ops acked", out)
    assert killed is not None, out
    assert 0 < int(killed.group(1)) < 10_000
    assert re.search(r"recovered in [\d.]+ s", out)
    assert re.search(r"newest valid snapshot: +op \d+", out)  # it checkpointed before the kill
    assert "ops replayed from the journal: " in out
    assert "consistency: OK" in out
    assert "verify after closing: clean" in out
    assert "continued after recovery: 25 more ops" in out
    for phase in ("start writer", "write until kill", "recover", "check", "continue + verify"):
        assert re.search(rf"\n  {re.escape(phase)} +[\d.]+ s", out), phase
    assert out.rstrip().splitlines()[-1].startswith("result: CONSISTENT")
    assert "writing: " in proc.stderr  # plain progress lines: stderr is not a terminal
    assert (data / MARKER_NAME).exists()
    assert run_cli("verify", data).returncode == 0
    # A second run replaces what the first left (every file a replica writes).
    again = run_cli("demo", "--dir", data, "--ops", 2000, "--clients", 4, "--seed", 2)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith(f"removed the previous demo data in {data}\n")


def test_demo_refuses_a_directory_it_did_not_create(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    proc = run_cli("demo", "--dir", precious, "--ops", 100)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"trio-replica: error: refusing to delete {precious}")
    assert (precious / "thesis.tex").read_text() == "years of work"


# --- the directory rules, in process ---------------------------------------


def _fake_previous_demo(path: Path) -> None:
    (path / "wal").mkdir(parents=True)
    (path / "snapshots").mkdir()
    (path / "wal" / "00000000000000000001.wal").write_bytes(b"x")
    (path / "LOCK").write_bytes(b"")
    (path / MARKER_NAME).write_text("demo")


def test_workdir_creates_reuses_empty_and_replaces_its_own(tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "b"
    assert prepare_demo_dir(fresh) is False
    assert sorted(p.name for p in fresh.iterdir()) == [MARKER_NAME]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_demo_dir(empty) is False
    old = tmp_path / "old"
    _fake_previous_demo(old)
    assert prepare_demo_dir(old) is True
    assert sorted(p.name for p in old.iterdir()) == [MARKER_NAME]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: (p / MARKER_NAME).unlink(),  # a replica's data, but not the demo's
        lambda p: (p / "notes.txt").write_text("mine"),  # something else beside it
        lambda p: (p / "wal" / "keep").mkdir(),  # a directory inside wal/
    ],
)
def test_workdir_refuses_what_is_not_a_previous_demo(tmp_path: Path, spoil: object) -> None:
    path = tmp_path / "d"
    _fake_previous_demo(path)
    spoil(path)  # type: ignore[operator]
    before = sorted(str(p) for p in path.rglob("*"))
    with pytest.raises(UsageError, match="refusing to delete"):
        prepare_demo_dir(path)
    assert sorted(str(p) for p in path.rglob("*")) == before


def test_workdir_refuses_a_directory_in_use(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _fake_previous_demo(path)
    lock = OsDirectory(path).lock("LOCK")
    try:
        with pytest.raises(DirectoryLockedError):
            prepare_demo_dir(path)
    finally:
        lock.release()
    assert (path / "wal" / "00000000000000000001.wal").exists()


# --- the consistency check can fail ---------------------------------------


def _counter_run(n: int) -> tuple[dict[int, bytes], list[tuple[int, bytes]], Counter]:
    """n acked adds, the journal that holds them, and the machine they produced."""
    acked = {op: cbor2.dumps({"add": op}) for op in range(1, n + 1)}
    journal = list(acked.items())
    machine = Counter()
    for op, body in journal:
        machine.apply(op, cbor2.loads(body))
    return acked, journal, machine


def _check(acked: dict[int, bytes], journal: list[tuple[int, bytes]], op: int, state: object):  # type: ignore[no-untyped-def]
    return check_consistency(
        acked, journal, recovered_op=op, recovered_state=state, fresh_machine=Counter()
    )


def test_consistent_input_passes() -> None:
    acked, journal, machine = _counter_run(50)
    report = _check(acked, journal, 50, machine.snapshot())
    assert report.consistent, report.problems
    assert report.replayed == 50 and report.recovered_digest == report.replayed_digest


def test_unacked_tail_in_the_journal_is_fine() -> None:
    acked, journal, machine = _counter_run(50)
    for op in range(41, 51):
        del acked[op]  # in flight at the kill: durable, never acknowledged
    assert _check(acked, journal, 50, machine.snapshot()).consistent


def test_an_acked_op_with_another_command_is_inconsistent() -> None:
    acked, journal, machine = _counter_run(50)
    acked[17] = cbor2.dumps({"add": 1000})
    report = _check(acked, journal, 50, machine.snapshot())
    assert not report.consistent
    assert report.problems == ("1 acked op(s) have a different command in the journal: 17",)


def test_an_acked_op_missing_from_the_journal_is_inconsistent() -> None:
    acked, journal, machine = _counter_run(50)
    acked[51] = cbor2.dumps({"add": 51})
    report = _check(acked, journal, 50, machine.snapshot())
    assert not report.consistent
    assert any("are missing from the journal" in p and "51" in p for p in report.problems)
    assert any("before the last acked op 51" in p for p in report.problems)


def test_a_state_that_is_not_the_replayed_prefix_is_inconsistent() -> None:
    acked, journal, machine = _counter_run(50)
    machine.apply(51, {"add": 1})  # the recovered state has one more add than its op says
    report = _check(acked, journal, 50, machine.snapshot())
    assert not report.consistent
    assert "differs from applying ops 1..50 to a fresh machine" in report.problems[0]


def test_a_journal_that_does_not_start_at_op_1_or_has_a_gap_is_inconsistent() -> None:
    acked, journal, machine = _counter_run(50)
    report = _check(acked, journal[5:], 50, machine.snapshot())
    assert "the journal starts at op 6, not 1" in report.problems[0]
    report = _check(acked, journal[:20] + journal[21:], 50, machine.snapshot())
    assert "the journal jumps from op 20 to op 22" in report.problems[0]


def test_metadata_replay_skips_rejected_commands_like_the_replica() -> None:
    commands = list(islice(metadata_workload(random.Random(3), 0), 300))
    machine = MetadataStateMachine()
    acked: dict[int, bytes] = {}
    for op, command in enumerate(commands, start=1):
        try:
            machine.apply(op, command)
        except InvalidCommand:
            continue
        acked[op] = cbor2.dumps(command)
    journal = [(op, cbor2.dumps(c)) for op, c in enumerate(commands, start=1)]
    report = check_consistency(
        acked,
        journal,
        recovered_op=300,
        recovered_state=machine.snapshot(),
        fresh_machine=MetadataStateMachine(),
    )
    assert report.consistent, report.problems
    assert report.rejected_on_replay == 300 - len(acked) > 0


def test_demo_seed_fixes_every_client_s_commands() -> None:
    from trio_replica.cli.demo.writer import client_commands, client_quota

    assert [client_quota(10, 4, i) for i in range(4)] == [3, 3, 2, 2]
    assert sum(client_quota(20_000, 64, i) for i in range(64)) == 20_000

    def plan(seed: int) -> list[list[dict[str, object]]]:
        return [list(client_commands(seed, 200, 8, i)) for i in range(8)]

    assert plan(7) == plan(7)
    assert plan(7) != plan(8)
    assert sum(map(len, plan(7))) == 200


def test_demo_help_says_what_the_seed_fixes() -> None:
    proc = run_cli("demo", "--help")
    text = " ".join(proc.stdout.split())
    assert "the commands each client submits" in text
    assert "after how many acks the writer is killed" in text
    assert "Not seeded: how the clients interleave" in text


def test_demo_json_is_one_object_with_the_verdict(tmp_path: Path) -> None:
    import json

    proc = run_cli(
        "demo", "--dir", tmp_path / "d", "--ops", 2000, "--clients", 8, "--seed", 1, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    facts = json.loads(line)
    assert facts["result"] == "CONSISTENT" and facts["seed"] == 1 and facts["clients"] == 8
    assert facts["consistency"]["consistent"] is True
    assert 0 < facts["consistency"]["acked_ops_checked"] <= facts["kill"]["acked"]
    assert facts["recovery"]["last_op"] >= facts["kill"]["last_acked_op"]
    assert facts["verify_clean"] is True
    assert set(facts["phases"]) == {
        "start writer",
        "write until kill",
        "recover",
        "check",
        "continue + verify",
    }
