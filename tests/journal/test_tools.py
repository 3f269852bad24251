"""The read-only tools (scan_journal, iter_records) and the explicit repair."""

from __future__ import annotations

import pytest
from journal_builder import build, contents
from wal_edit import (
    flip_bit,
    patch_file,
    read_file,
    records,
    segment_names,
    truncate_file,
    wal_bytes,
)

from trio_replica.errors import CorruptionError, DirectoryLockedError, FormatError, StorageError
from trio_replica.journal import Journal, iter_records, repair_journal, scan_journal
from trio_replica.storage import Directory, MemoryDirectory, OsDirectory


async def test_scan_journal_reports_segments_and_torn_tail(any_dir: Directory) -> None:
    _, _written = await build([3, 3, 3], data=any_dir, segment_bytes=400, body_size=40)
    result = scan_journal(any_dir)
    assert (result.first_op, result.last_op, result.records) == (1, 9, 9)
    assert result.torn_tail is None
    assert sum(s.records for s in result.segments) == 9
    assert [s.path.rsplit("/", 1)[-1] for s in result.segments] == segment_names(any_dir)
    assert all(s.size == s.valid_bytes for s in result.segments)
    last = records(any_dir)[-1]
    truncate_file(any_dir, last.name, last.offset + 20)
    before = wal_bytes(any_dir)
    result = scan_journal(any_dir)
    assert wal_bytes(any_dir) == before  # read-only
    assert result.last_op == 8
    assert result.torn_tail is not None
    assert (result.torn_tail.offset, result.torn_tail.bytes) == (last.offset, 20)


def test_scan_of_a_directory_without_a_journal(memory_dir: MemoryDirectory) -> None:
    with pytest.raises(StorageError):
        scan_journal(memory_dir)
    with pytest.raises(StorageError):
        list(iter_records(memory_dir))


async def test_iter_records_lists_ranges_and_bad_records() -> None:
    data, written = await build([2, 3, 2], segment_bytes=350, body_size=30)
    infos = list(iter_records(data))
    assert [(i.op, i.body, i.status) for i in infos] == [(e.op, e.body, "ok") for e in written]
    assert [i.batch_first for i in infos] == [1, 1, 3, 3, 3, 6, 6]
    assert all(len(i.checksum) == 32 for i in infos)
    assert [i.op for i in iter_records(data, from_op=3, to_op=5)] == [3, 4, 5]
    assert [i.op for i in iter_records(data, from_op=6)] == [6, 7]
    rec = records(data)[3]
    flip_bit(data, rec.name, rec.offset + 130)
    listed = list(iter_records(data))
    bad = [i for i in listed if i.status != "ok"]
    assert len(bad) == 1 and bad[0].op == 4 and bad[0].offset == rec.offset
    assert bad[0].body is None and "body checksum" in bad[0].status


async def test_repair_without_force_cuts_only_a_torn_tail() -> None:
    data, written = await build([2, 2])
    last = records(data)[-1]
    truncate_file(data, last.name, last.offset + 9)
    torn_content = read_file(data, last.name)
    report = repair_journal(data)
    assert report.path is not None and report.path.endswith(last.name)
    assert (report.offset, report.bytes_cut) == (last.offset, 9)
    assert len(report.broken_copies) == 1
    assert read_file(data, report.broken_copies[0].rsplit("/", 1)[-1]) == torn_content
    journal, got = await contents(data)
    assert got == written[:-1] and journal.recovery.bytes_truncated == 0
    await journal.aclose()
    assert repair_journal(data).path is None  # nothing left to repair


async def test_repair_without_force_refuses_corruption() -> None:
    data, _ = await build([2, 2, 2])
    rec = records(data)[1]
    flip_bit(data, rec.name, rec.offset + 4)
    before = wal_bytes(data)
    with pytest.raises(CorruptionError):
        repair_journal(data)
    assert wal_bytes(data) == before


async def test_forced_repair_cuts_at_the_first_bad_record_and_keeps_copies() -> None:
    data, written = await build([2] * 6, segment_bytes=350, body_size=30)
    names = segment_names(data)
    assert len(names) >= 3
    placed = records(data)
    target = next(r for r in placed if r.name == names[1] and r.op > int(names[1][:20]))
    flip_bit(data, target.name, target.offset + 130)
    before = wal_bytes(data)
    report = repair_journal(data, force=True)
    assert report.offset == target.offset and report.path is not None
    assert report.path.endswith(target.name)
    # The damaged record (its header still valid) and every later record went.
    assert report.ops_cut == len(written) - target.op + 1
    copies = {c.rsplit("/", 1)[-1] for c in report.broken_copies}
    assert copies == {f"{n}.broken" for n in names[1:]}
    for name in names[1:]:
        assert read_file(data, f"{name}.broken") == before[name]
    journal, got = await contents(data)
    assert got == written[: target.op - 1]
    await journal.append([type(got[0])(target.op, b"new")])
    await journal.aclose()
    # A second repair never overwrites the first copies.
    flip_bit(data, target.name, target.offset - 8)
    report = repair_journal(data, force=True)
    assert any(c.endswith(".1.broken") for c in report.broken_copies)


async def test_forced_repair_of_a_foreign_file(os_dir: OsDirectory) -> None:
    await build([2, 2], data=os_dir, segment_bytes=300, body_size=40)
    names = segment_names(os_dir)
    patch_file(os_dir, names[-1], 0, b"#!/bin/sh\n")
    with pytest.raises(FormatError):
        repair_journal(os_dir)
    report = repair_journal(os_dir, force=True)
    assert report.offset == 0 and names[-1] not in segment_names(os_dir)
    journal = await Journal.open(os_dir)
    assert journal.last_op == int(names[-1][:20]) - 1
    await journal.aclose()


async def test_repair_takes_the_lock(memory_dir: MemoryDirectory) -> None:
    journal = await Journal.open(memory_dir)
    with pytest.raises(DirectoryLockedError):
        repair_journal(memory_dir)
    assert repair_journal(memory_dir, lock=False).path is None
    await journal.aclose()
