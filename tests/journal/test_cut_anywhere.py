""" "truncate" has one meaning wherever a table could apply it: the journal ends there.

The decision table cuts only in the last segment; a table weakened to cut
in a sealed segment (tests/testing/test_refusal_rows.py) must still leave a
coherent journal: the segment cut at the bad record, every later segment
deleted, the superblock's journal-end evidence moved back, so that the
shorter journal opens again, and appends continue after the cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

import pytest

from trio_replica.errors import CorruptionError
from trio_replica.journal import Entry, Journal, decision, iter_records
from trio_replica.journal.decision import Action, Case, Replication
from trio_replica.journal.superblock import read_superblock
from trio_replica.testing import SimulatedDisk


@contextmanager
def cutting(case: Case) -> Iterator[None]:
    saved = decision.DECISION_COLUMNS
    column = dict(saved[Replication.SINGLE])
    column[case] = Action.TRUNCATE
    decision.DECISION_COLUMNS = MappingProxyType(
        {**saved, Replication.SINGLE: MappingProxyType(column)}
    )
    try:
        yield
    finally:
        decision.DECISION_COLUMNS = saved


async def four_segments() -> SimulatedDisk:
    disk = SimulatedDisk(seed=5)
    async with await Journal.open(disk, segment_bytes=1024) as journal:
        for op in range(1, 41):
            await journal.append([Entry(op, b"x" * 40)])
        assert len(journal.segment_first_ops) >= 4
    return disk.crash()


def wal_segments(disk: SimulatedDisk) -> list[str]:
    return sorted(n for n in disk.subdir("wal").listdir() if n.endswith(".wal"))


@pytest.mark.parametrize("where", ["record", "header"])
async def test_a_cut_in_a_sealed_segment_ends_the_journal_there(where: str) -> None:
    disk = await four_segments()
    names = wal_segments(disk)
    victim = names[1]
    first = int(victim[:20])
    if where == "record":
        [rec] = [r for r in iter_records(disk, from_op=first + 2, to_op=first + 2)]
        disk.corrupt(f"wal/{victim}", rec.offset + 50)
        case, last_op = Case.BAD_RECORD_IN_SEALED_SEGMENT, first + 1
    else:
        disk.corrupt(f"wal/{victim}", 30)
        case, last_op = Case.SEGMENT_HEADER_INVALID, first - 1
    with pytest.raises(CorruptionError):
        await Journal.open(disk)  # the real table refuses, changing nothing
    assert wal_segments(disk) == names
    with cutting(case):
        async with await Journal.open(disk) as journal:
            assert journal.last_op == last_op
            assert journal.recovery.bytes_truncated > 0
            kept = names[:2] if where == "record" else names[:1]
            assert wal_segments(disk) == kept
            block = read_superblock(disk)
            assert block is not None and block.wal_head_op == int(kept[-1][:20])
            await journal.append([Entry(last_op + 1, b"after the cut")])
    # The shorter journal opens with the real table: the cut was made whole.
    async with await Journal.open(disk.crash()) as journal:
        assert journal.last_op == last_op + 1
        assert journal.recovery.bytes_truncated == 0
