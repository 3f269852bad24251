"""Damage that the newest valid snapshot covers never makes the data unreachable.

The input of the durability issue: 1,000 ops, snapshots at 760 and 912, one
bit flipped at op 802 in a sealed segment. Recovery serves snapshot 912 plus
ops 913..1000 (trusted because they chain to the checksum snapshot 912
carries) and reports the damage loudly; ``verify`` reaches the same
judgment. Damage above the newest snapshot is refused as before.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from replica_machines import Ledger

from trio_replica import CorruptionError, open_replica
from trio_replica.cli.verify import verify_directory
from trio_replica.journal import iter_records
from trio_replica.journal.decision import Case
from trio_replica.journal.record import RECORD_HEADER_SIZE
from trio_replica.storage import Directory, OsDirectory
from trio_replica.testing import SimulatedDisk

OPS = 1000
SNAPSHOTS = (760, 912)
SEGMENT_BYTES = 4096  # about 29 records of a small command per segment


def settings() -> dict[str, int]:
    return {"snapshot_every": 1_000_000, "segment_bytes": SEGMENT_BYTES, "keep_snapshots": 2}


async def write_history(target: Path | Directory, *, base: int = 0) -> None:
    async with open_replica(target, Ledger(), **settings()) as replica:
        for op in range(1, OPS + 1):
            await replica.submit({"v": base + op})
            if op in SNAPSHOTS:
                assert await replica.checkpoint() == op


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's history on real files, written once (1,000 fsyncs) and copied per test."""
    root = tmp_path_factory.mktemp("history") / "data"
    trio.run(write_history, root)
    return root


@pytest.fixture
def target(history: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(history, copy)
    return copy


def place(data: Directory, op: int) -> tuple[str, int, bool]:
    """(segment file name, offset of op's record, whether the segment is sealed)."""
    names = sorted(n for n in data.subdir("wal").listdir() if n.endswith(".wal"))
    for info in iter_records(data, from_op=op, to_op=op):
        assert info.status == "ok" and info.op == op, info
        name = info.path.rsplit("/", 1)[-1]
        return name, info.offset, name != names[-1]
    raise AssertionError(f"op {op} not found")


def flip(data: Directory, name: str, offset: int) -> None:
    """Flip one bit at ``offset`` of a segment, durably."""
    wal = data.subdir("wal")
    f = wal.open(name)
    try:
        byte = f.read_at(offset, 1)[0]
        f.write_at(offset, bytes([byte ^ 0x10]))
        f.sync()
    finally:
        f.close()


def snapshot_of(data: Directory, op: int) -> str:
    return data.subdir("snapshots").path_of(f"{op:020d}.snapshot")


async def assert_serves_snapshot_and_reports(
    target: Path | Directory, data: Directory, damaged_op: int, name: str, offset: int
) -> None:
    async with open_replica(target, Ledger(), **settings()) as replica:
        report = replica.recovery
        ledger = replica.machine
        assert isinstance(ledger, Ledger)
        # Every acknowledged op is served: snapshot 912 plus the intact ops.
        assert ledger.ops == list(range(1, OPS + 1))
        assert ledger.values == list(range(1, OPS + 1))
        assert report.snapshot_op == 912
        assert report.ops_replayed == OPS - 912
        damage = report.damage
        assert damage is not None and damage is report.journal.damage
        assert (damage.op, damage.offset) == (damaged_op, offset)
        assert damage.path.endswith(name)
        assert damage.snapshot_op == 912
        assert damage.snapshot_path == snapshot_of(data, 912)
        assert f"op {damaged_op}" in str(report) and name in str(report)
        # The replica goes on: a new op chains after 1000.
        assert (await replica.execute({"v": OPS + 1})).op == OPS + 1
    # verify: same judgment (opens, with damage), not clean.
    verdict = verify_directory(data, shown_path="DIR")
    assert not verdict.clean
    (line,) = [p for p in verdict.problems if "damage below the newest valid snapshot" in p]
    assert f"offset {offset}" in line and f"op {damaged_op}" in line and name in line
    assert "the directory opens" in line
    assert len(verdict.problems) == 1, verdict.problems


@pytest.mark.parametrize("where", ["body", "header"])
async def test_the_issue_input_on_real_files(
    target: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    data = OsDirectory(target)
    name, offset, sealed = place(data, 802)
    assert sealed
    flip(data, name, offset + (RECORD_HEADER_SIZE + 1 if where == "body" else 64))
    with caplog.at_level(logging.WARNING, logger="trio_replica.journal"):
        await assert_serves_snapshot_and_reports(target, data, 802, name, offset)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "damage below the newest valid snapshot" in m and name in m and "op 802" in m
        for m in warnings
    ), warnings
    # Reopening again reports it again: nothing was silently dropped or "fixed".
    async with open_replica(target, Ledger(), **settings()) as replica:
        assert replica.recovery.damage is not None
        assert replica.recovery.damage.case is Case.BAD_RECORD_IN_SEALED_SEGMENT
        assert replica.recovery.last_op == OPS + 1


async def test_the_issue_input_on_a_simulated_disk() -> None:
    disk = SimulatedDisk(seed=7)
    await write_history(disk)
    name, offset, sealed = place(disk, 802)
    assert sealed
    flip(disk, name, offset + RECORD_HEADER_SIZE + 1)
    after_crash = disk.crash()  # the flip is durable; nothing else is pending
    await assert_serves_snapshot_and_reports(after_crash, after_crash, 802, name, offset)


def first_segment_op(data: Directory) -> int:
    names = sorted(n for n in data.subdir("wal").listdir() if n.endswith(".wal"))
    return int(names[0][:20])


def segment_start_of(data: Directory, op: int) -> int:
    starts = sorted(int(n[:20]) for n in data.subdir("wal").listdir() if n.endswith(".wal"))
    return max(first for first in starts if first <= op)


@pytest.mark.parametrize(
    "pick",
    [
        "first segment",
        "snapshot segment, below the snapshot op",
        "the snapshot op itself",
    ],
)
async def test_covered_siblings_open(target: Path, pick: str) -> None:
    data = OsDirectory(target)
    if pick == "first segment":
        op = first_segment_op(data)
    elif pick == "the snapshot op itself":
        op = 912
    else:
        op = segment_start_of(data, 912)
        assert op < 912, "the test needs the snapshot op not to start its segment"
    name, offset, _sealed = place(data, op)
    flip(data, name, offset + 40)  # the parent field: the header checksum fails
    await assert_serves_snapshot_and_reports(target, data, op, name, offset)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "LOCK"
    }


@pytest.mark.parametrize("op", [913, 950, 1000])
async def test_damage_above_the_snapshot_is_refused(target: Path, op: int) -> None:
    data = OsDirectory(target)
    name, offset, sealed = place(data, op)
    flip(data, name, offset + RECORD_HEADER_SIZE + 1)
    before = files(target)
    if op == OPS:
        # The last batch, nothing after it: indistinguishable from a torn
        # write (a documented limit), cut loudly; then the journal ends at
        # 999, after the snapshot: nothing above it is skipped.
        assert not sealed
        async with open_replica(target, Ledger(), **settings()) as replica:
            assert replica.recovery.damage is None
            assert replica.recovery.bytes_truncated > 0
            assert replica.recovery.last_op == OPS - 1
        return
    with pytest.raises(CorruptionError) as refused:
        async with open_replica(target, Ledger(), **settings()):
            pass
    assert refused.value.op == op
    assert refused.value.offset == offset
    assert refused.value.path is not None and refused.value.path.endswith(name)
    assert files(target) == before  # a refused open changes nothing
    verdict = verify_directory(data, shown_path="DIR")
    assert not any("opens" in p for p in verdict.problems)
    assert any(f"offset {offset}" in p for p in verdict.problems)


async def test_without_the_covering_snapshot_damage_is_refused(target: Path) -> None:
    """Snapshot 912 gone: the newest valid one (760) is below the damage at 802."""
    data = OsDirectory(target)
    name, offset, _sealed = place(data, 802)
    flip(data, name, offset + RECORD_HEADER_SIZE + 1)
    (target / "snapshots" / f"{912:020d}.snapshot").unlink()
    with pytest.raises(CorruptionError) as refused:
        async with open_replica(target, Ledger(), **settings()):
            pass
    assert (refused.value.op, refused.value.offset) == (802, offset)


async def test_a_snapshot_the_journal_does_not_chain_to_covers_nothing(
    target: Path,
) -> None:
    """Snapshot 912 carries another history's chain checksum: nothing chains to it."""
    data = OsDirectory(target)
    name, offset, _sealed = place(data, 802)
    flip(data, name, offset + RECORD_HEADER_SIZE + 1)
    other = SimulatedDisk(seed=3)
    await write_history(other, base=OPS)  # other commands: another chain
    snapshot = f"{912:020d}.snapshot"
    source = other.subdir("snapshots").open(snapshot)
    try:
        content = source.read_at(0, source.size())
    finally:
        source.close()
    (target / "snapshots" / snapshot).write_bytes(content)
    with pytest.raises(CorruptionError) as refused:
        async with open_replica(target, Ledger(), **settings()):
            pass
    assert (refused.value.op, refused.value.offset) == (802, offset)
    assert "does not chain" in str(refused.value)


async def test_verify_decodes_the_ops_after_the_snapshot_as_replay_does(tmp_path: Path) -> None:
    """Damage at op 25, snapshot at 30 and op 35 not a command, all in one sealed
    segment: open refuses op 35 (replay decodes it) and verify names the same
    record, reading from where the scan resumed, not stopping at the damage."""
    import cbor2

    from trio_replica.coordinator import Snapshot, SnapshotStore
    from trio_replica.journal import Entry, Journal

    target = tmp_path / "data"
    # 40 records of 136 bytes fill the first segment exactly; op 41 rolls.
    async with await Journal.open(target, segment_bytes=80 + 40 * 136) as journal:
        for op in range(1, 42):
            body = b"\xff\xff" if op == 35 else cbor2.dumps({"v": op})
            await journal.append([Entry(op, body)])
        assert len(journal.segment_first_ops) == 2
        ledger = Ledger()
        for op in range(1, 31):
            ledger.apply(op, {"v": op})
        store = SnapshotStore(
            target,
            machine_name=Ledger.name,
            machine_version=Ledger.version,
            directory_id=journal.directory_id,
            chain_checksum=journal.checksum_at,
        )
        await store.persist(Snapshot(30, ledger.snapshot()))
        await store.aclose()
        bad_path, bad_offset = await journal.location_of(35)
    data = OsDirectory(target)
    name, offset, sealed = place(data, 25)
    assert sealed
    flip(data, name, offset + RECORD_HEADER_SIZE + 1)
    with pytest.raises(CorruptionError) as refused:
        async with open_replica(target, Ledger()):
            pass  # pragma: no cover
    assert (refused.value.path, refused.value.offset, refused.value.op) == (
        bad_path,
        bad_offset,
        35,
    )
    verdict = verify_directory(data, shown_path="DIR")
    assert [p for p in verdict.problems if f"offset {bad_offset}, op 35" in p], verdict.problems


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "trio_replica", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


@pytest.mark.parametrize("force", [False, True])
async def test_repair_judges_covered_damage_as_open_does(target: Path, force: bool) -> None:
    """`repair --truncate-tail` (with or without --force) on the issue's input:
    open serves snapshot 912 around the damage at op 802, so repair refuses
    nothing and cuts nothing, says what it left, and exits 0."""
    data = OsDirectory(target)
    name, offset, _sealed = place(data, 802)
    flip(data, name, offset + RECORD_HEADER_SIZE + 1)
    before = files(target)
    proc = run_cli("repair", target, "--truncate-tail", *(["--force"] if force else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to cut" in proc.stdout
    assert "left as it is" in proc.stdout and "op 802" in proc.stdout and name in proc.stdout
    assert files(target) == before  # no .broken copy, no cut
    await assert_serves_snapshot_and_reports(target, data, 802, name, offset)


async def test_repair_still_refuses_damage_above_the_snapshot(target: Path) -> None:
    data = OsDirectory(target)
    name, offset, _sealed = place(data, 950)
    flip(data, name, offset + RECORD_HEADER_SIZE + 1)
    before = files(target)
    proc = run_cli("repair", target, "--truncate-tail")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"offset {offset}" in proc.stderr and "--force" in proc.stderr
    assert files(target) == before


def segment_holding(data: Directory, op: int) -> tuple[str, int]:
    """(file name, first op) of the segment that holds ``op``."""
    first = segment_start_of(data, op)
    return f"{first:020d}.wal", first


@pytest.mark.parametrize(
    "pick", ["wholly below the snapshot", "the first segment", "holding the snapshot op"]
)
async def test_a_damaged_segment_header_below_the_snapshot_is_served(
    target: Path, pick: str
) -> None:
    """A sealed segment's header fails its checksum (one flipped bit in the
    parent field): damage at the segment's first op, covered by snapshot 912
    like record damage is, reported with the file and offset 0."""
    data = OsDirectory(target)
    op = {"wholly below the snapshot": 802, "the first segment": first_segment_op(data)}.get(
        pick, 912
    )
    name, first = segment_holding(data, op)
    if pick == "holding the snapshot op":
        assert first < 912, "the test needs op 912 inside a segment, not starting it"
    flip(data, name, 30)
    await assert_serves_snapshot_and_reports(target, data, first, name, 0)
    async with open_replica(target, Ledger(), **settings()) as replica:
        assert replica.recovery.damage is not None
        assert replica.recovery.damage.case is Case.SEGMENT_HEADER_INVALID
    # repair judges it as open does: nothing to cut, nothing refused.
    proc = run_cli("repair", target, "--truncate-tail")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "left as it is" in proc.stdout and name in proc.stdout


async def test_a_damaged_segment_header_above_the_snapshot_is_refused(target: Path) -> None:
    data = OsDirectory(target)
    name, first = segment_holding(data, 950)
    assert first > 912
    flip(data, name, 30)
    before = files(target)
    with pytest.raises(CorruptionError) as refused:
        async with open_replica(target, Ledger(), **settings()):
            pass  # pragma: no cover
    assert (refused.value.op, refused.value.offset) == (first, 0)
    assert refused.value.path is not None and refused.value.path.endswith(name)
    assert files(target) == before
    assert not any("opens" in p for p in verify_directory(data, shown_path="DIR").problems)
