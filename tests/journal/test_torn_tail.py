"""Torn tails: a crash during the last batch's write is cut back to the last whole record.

Invariant 3 of docs/invariants.md (only a provable torn tail is truncated) and 2 (recovery
yields a prefix that includes every acknowledged op).
"""

from __future__ import annotations

import logging
import random

import pytest
from journal_builder import build, contents
from wal_edit import clone, patch_file, read_file, records, segment_names, truncate_file, wal_bytes

from trio_replica.journal import Entry, Journal, scan_journal
from trio_replica.storage import Directory, OsDirectory


async def reopen_and_continue(data: Directory, expected: list[Entry]) -> None:
    """The journal holds exactly ``expected``, accepts the next op, and still chains after."""
    journal, got = await contents(data)
    assert got == expected
    assert journal.last_op == (expected[-1].op if expected else 0)
    nxt = Entry(journal.last_op + 1, b"after the tear")
    await journal.append([nxt])
    await journal.aclose()
    journal, got = await contents(data)
    assert got == [*expected, nxt]
    assert journal.recovery.bytes_truncated == 0  # nothing torn any more: the chain holds
    await journal.aclose()


async def test_truncation_at_every_byte_of_the_last_record() -> None:
    data, written = await build([5, 1, 7, 3, 1], segment_bytes=900, body_size=50)
    assert len(segment_names(data)) >= 2
    last = records(data)[-1]
    assert last.op == written[-1].op and last.size == 128 + 56
    files = wal_bytes(data)
    for cut in range(last.offset, last.offset + last.size):
        state = clone(files, like=data)
        truncate_file(state, last.name, cut)
        journal, got = await contents(state)
        assert got == written[:-1], cut
        assert journal.recovery.bytes_truncated == cut - last.offset
        if cut > last.offset:
            assert journal.recovery.truncated_offset == last.offset
            assert journal.recovery.truncated_path is not None
            assert journal.recovery.truncated_path.endswith(last.name)
        await journal.aclose()
        await reopen_and_continue(state, written[:-1])


async def test_torn_tail_on_a_real_file(os_dir: OsDirectory) -> None:
    _, written = await build([3, 4], data=os_dir, body_size=100)
    last = records(os_dir)[-1]
    for cut in (last.offset + 1, last.offset + 127, last.offset + 128, last.offset + 180):
        content = read_file(os_dir, last.name)
        truncate_file(os_dir, last.name, cut)
        journal, got = await contents(os_dir)
        assert got == written[:-1]
        await journal.aclose()
        # The cut was made durable on disk, not only in memory.
        assert len(read_file(os_dir, last.name)) == last.offset
        patch_file(os_dir, last.name, 0, content)  # restore for the next cut
    await reopen_and_continue(os_dir, written)


@pytest.mark.parametrize("filler", ["zeros", "garbage", "ones"])
@pytest.mark.parametrize("bad_index", [0, 1, 3])
async def test_torn_batch_with_surviving_later_records(filler: str, bad_index: int) -> None:
    # The last batch (5 records) was torn: record ``bad_index`` of it never
    # reached the disk, later records of the same batch did (sectors persist
    # out of order). It was never acknowledged, so it is cut at the bad record.
    data, written = await build([4, 2, 5], body_size=40)
    placed = records(data)
    target = placed[-5 + bad_index]
    rng = random.Random(bad_index)
    content = {
        "zeros": bytes(target.size),
        "ones": b"\xff" * target.size,
        "garbage": rng.randbytes(target.size),
    }[filler]
    patch_file(data, target.name, target.offset, content)
    result = scan_journal(data)
    assert result.torn_tail is not None and result.torn_tail.offset == target.offset
    journal, got = await contents(data)
    assert got == written[: target.op - 1]
    assert journal.recovery.truncated_offset == target.offset
    await journal.aclose()
    await reopen_and_continue(data, written[: target.op - 1])


@pytest.mark.parametrize("tail", [bytes(8), bytes(4096), b"\x00" * 3, b"\xde\xad" * 50])
async def test_zeros_or_garbage_after_the_last_record(tail: bytes) -> None:
    # A crash after the file grew but before the data landed leaves zeros
    # (or junk) after the last whole record.
    data, written = await build([3, 3])
    name = segment_names(data)[-1]
    size = len(read_file(data, name))
    patch_file(data, name, size, tail)
    journal, got = await contents(data)
    assert got == written
    assert journal.recovery.bytes_truncated == len(tail)
    assert journal.recovery.truncated_offset == size
    await journal.aclose()
    assert len(read_file(data, name)) == size


async def test_torn_tail_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    data, _written = await build([2, 2])
    last = records(data)[-1]
    truncate_file(data, last.name, last.offset + 10)
    with caplog.at_level(logging.WARNING, logger="trio_replica.journal"):
        journal, _ = await contents(data)
    await journal.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name == "trio_replica.journal"]
    assert any("truncated" in m and str(last.offset) in m for m in messages), messages
    assert journal.recovery.reason is not None and "torn tail" in journal.recovery.reason


@pytest.mark.parametrize("kept", [0, 5, 20, 79])
async def test_torn_creation_of_the_last_segment_is_removed(kept: int) -> None:
    # A crash while a new segment was being created (before its header was
    # durable): a short or zeroed header and no records. The segment goes.
    data, written = await build([3, 3], segment_bytes=500, body_size=60)
    names = segment_names(data)
    assert len(names) >= 2
    last_name = names[-1]
    header = read_file(data, last_name)[:80]
    files = wal_bytes(data)
    last_first = records(data)[-1].op + 1
    new_name = f"{last_first:020d}.wal"
    for content in (header[:kept], bytes(kept)):
        state = clone({**files, new_name: content}, like=data)
        journal, got = await contents(state)
        assert got == written
        assert journal.recovery.action == "remove_segment"
        assert journal.recovery.truncated_path is not None
        assert journal.recovery.truncated_path.endswith(new_name)
        assert new_name not in segment_names(state)
        await journal.aclose()
        await reopen_and_continue(state, written)


async def test_a_lone_first_segment_with_a_torn_header_goes(memory_dir: Directory) -> None:
    journal = await Journal.open(memory_dir)
    await journal.aclose()
    wal = memory_dir.subdir("wal")
    wal.open("00000000000000000001.wal", create=True).close()
    journal, got = await contents(memory_dir)
    assert got == [] and journal.recovery.action == "remove_segment"
    await journal.aclose()
    await reopen_and_continue(memory_dir, [])
