"""One judgment for "the snapshots and the journal fit": the rules, and open == verify."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from trio_replica import open_replica
from trio_replica.cli.verify import verify_directory
from trio_replica.coordinator.fit import FitObservation, FitProblem, judge_fit
from trio_replica.errors import CorruptionError, ForeignDataError
from trio_replica.machines import Counter
from trio_replica.storage import OsDirectory

A, B = b"a" * 16, b"b" * 16
Seen = FitObservation


@pytest.mark.parametrize(
    ("seen", "problem"),
    [
        (Seen(first_op=1, last_op=9), None),
        (Seen(first_op=5, last_op=9), FitProblem.GAP),
        (Seen(1, 9, snapshot_op=4, snapshot_chain=A, journal_chain=A), None),
        (Seen(5, 9, snapshot_op=4, snapshot_chain=A, journal_chain=A), None),
        (Seen(6, 9, snapshot_op=4, snapshot_chain=A, journal_chain=A), FitProblem.GAP),
        (
            FitObservation(1, 3, snapshot_op=4, snapshot_chain=A, journal_chain=None),
            FitProblem.AHEAD,
        ),
        (
            FitObservation(1, 9, snapshot_op=4, snapshot_chain=A, journal_chain=B),
            FitProblem.FOREIGN,
        ),
        (
            FitObservation(1, 9, snapshot_op=4, snapshot_chain=None, journal_chain=A),
            FitProblem.FOREIGN,
        ),
    ],
)
def test_the_rules(seen: FitObservation, problem: FitProblem | None) -> None:
    verdict = judge_fit(seen)
    assert (verdict.problem if verdict is not None else None) is problem


async def _replica_dir(path: Path, adds: list[int]) -> None:
    async with open_replica(path, Counter(), snapshot_every=10, segment_bytes=512) as replica:
        for n in adds:
            await replica.submit({"add": n})
        await replica.checkpoint()


async def test_a_snapshot_copied_from_another_directory_is_refused_by_open_and_verify(
    tmp_path: Path,
) -> None:
    # Same state machine, different history; the copied snapshot's op lies
    # between the local newest snapshot and the last op.
    here, there = tmp_path / "here", tmp_path / "there"
    await _replica_dir(here, [1] * 25)
    await _replica_dir(there, [2] * 40)
    async with open_replica(here, Counter(), snapshot_every=1000) as replica:
        for _ in range(15):
            await replica.submit({"add": 1})
    foreign = sorted((there / "snapshots").glob("*.snapshot"))[-1]
    assert 25 < int(foreign.name[:20]) <= 40
    shutil.copy(foreign, here / "snapshots" / foreign.name)
    with pytest.raises(ForeignDataError) as opened:
        async with open_replica(here, Counter()):
            pass  # pragma: no cover
    assert opened.value.path == str(here / "snapshots" / foreign.name)
    report = await trio.to_thread.run_sync(
        lambda: verify_directory(OsDirectory(here, read_only=True), shown_path=str(here))
    )
    assert not report.clean
    assert any(
        "does not belong to this journal" in p and foreign.name in p for p in report.problems
    )


async def test_verify_is_clean_exactly_when_open_works(tmp_path: Path) -> None:
    here = tmp_path / "here"
    await _replica_dir(here, [1] * 25)
    report = verify_directory(OsDirectory(here, read_only=True), shown_path=str(here))
    assert report.clean, report.problems
    async with open_replica(here, Counter()) as replica:
        assert replica.applied_op == 25
    # Every snapshot gone after compaction: both refuse, with the same rule.
    assert not (here / "wal" / f"{1:020d}.wal").exists()
    for snapshot in (here / "snapshots").glob("*.snapshot"):
        snapshot.unlink()
    report = verify_directory(OsDirectory(here, read_only=True), shown_path=str(here))
    with pytest.raises(CorruptionError, match="neither in a snapshot nor in the journal"):
        async with open_replica(here, Counter()):
            pass  # pragma: no cover
    assert any("neither in a snapshot nor in the journal" in p for p in report.problems)
