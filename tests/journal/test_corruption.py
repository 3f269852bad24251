"""Damage that is not a torn tail is never truncated: it raises, naming path, offset and op.

Invariants 3 and 4 (docs/invariants.md): a bad record with a later batch after it, or in a
sealed segment, a stale or misplaced record, a missing segment and a
foreign file are all refused, and refusing changes nothing on disk.
"""

from __future__ import annotations

import pytest
from journal_builder import build
from wal_edit import (
    clone,
    flip_bit,
    patch_file,
    read_file,
    records,
    segment_names,
    wal_bytes,
    wal_dir,
)

from trio_replica.errors import CorruptionError, ForeignDataError, FormatError
from trio_replica.journal import Journal, scan_journal
from trio_replica.journal.record import GENESIS_PARENT, encode_record, encode_segment_header
from trio_replica.storage import Directory, OsDirectory

# Offsets inside a record to damage: every header field, the body, the padding.
HEADER_SPOTS = {
    "checksum": 3,
    "checksum_body": 20,
    "parent": 40,
    "client": 50,
    "op": 64,
    "view": 73,
    "request": 81,
    "batch_first": 89,
    "body_len": 96,
    "epoch": 101,
    "magic": 105,
    "version": 108,
    "kind": 110,
    "flags": 111,
    "reserved": 115,
}


async def refused(
    data: Directory, error: type[CorruptionError] = CorruptionError
) -> CorruptionError:
    """Opening ``data`` raises ``error``, scan_journal raises the same, and nothing changed."""
    before = wal_bytes(data)
    with pytest.raises(error) as scanned:
        scan_journal(data)
    with pytest.raises(error) as opened:
        await Journal.open(data)
    assert wal_bytes(data) == before
    assert type(opened.value) is type(scanned.value)
    assert (opened.value.path, opened.value.offset, opened.value.op) == (
        scanned.value.path,
        scanned.value.offset,
        scanned.value.op,
    )
    # The failed open released the lock.
    data.lock("LOCK").release()
    return opened.value


@pytest.mark.parametrize("segment_bytes", [64 * 2**20, 700])
async def test_bit_flip_in_any_record_before_the_last_batch_raises(segment_bytes: int) -> None:
    data, _written = await build([3, 1, 4, 2, 3], segment_bytes=segment_bytes, body_size=21)
    placed = records(data)
    files = wal_bytes(data)
    last_batch_first = placed[-1].batch_first
    checked = 0
    for rec in placed:
        if rec.batch_first == last_batch_first:
            continue  # the last batch: see test_damage_in_the_last_batch_is_truncated_loudly
        spots = [*HEADER_SPOTS.values(), 128, 128 + 20, rec.size - 1]  # body start/end, padding
        for spot in spots:
            state = clone(files, like=data)
            flip_bit(state, rec.name, rec.offset + spot, bit=spot % 8)
            err = await refused(state)
            assert err.op == rec.op, (rec, spot)
            assert err.offset == rec.offset
            assert err.path is not None and err.path.endswith(rec.name)
            checked += 1
    assert checked == (len(HEADER_SPOTS) + 3) * (len(placed) - 3)


async def test_bad_record_in_a_sealed_segment_always_raises() -> None:
    # Each record alone in its batch and segment, so the damaged record is the
    # last of its segment and no later record of that segment follows it: it
    # is the segment being sealed that makes it corruption.
    data, _written = await build([1] * 6, segment_bytes=250, body_size=30)
    placed = records(data)
    assert len(segment_names(data)) == 6
    files = wal_bytes(data)
    for rec in placed[:-1]:
        for spot in (5, 140):
            state = clone(files, like=data)
            flip_bit(state, rec.name, rec.offset + spot)
            err = await refused(state)
            assert (err.op, err.offset) == (rec.op, rec.offset)
            assert "sealed" in err.reason
        # Truncating a sealed segment (a lost write, not a torn one) is refused too.
        state = clone(files, like=data)
        f = wal_dir(state).open(rec.name)
        f.truncate(rec.offset + 40)
        f.close()
        err = await refused(state)
        assert err.op == rec.op


async def test_trailing_bytes_in_a_sealed_segment_raise() -> None:
    data, _ = await build([2, 2], segment_bytes=320, body_size=30)
    first = segment_names(data)[0]
    size = len(read_file(data, first))
    patch_file(data, first, size, bytes(16))
    err = await refused(data)
    assert err.offset == size


async def test_damage_in_the_last_batch_is_truncated_loudly() -> None:
    # The documented limit: after a crash, damage inside the last batch looks
    # exactly like a torn write of it. It is cut (never raised on), but
    # reported in the recovery report.
    data, _written = await build([3, 4], body_size=20)
    placed = records(data)
    target = placed[-3]  # second record of the last batch
    flip_bit(data, target.name, target.offset + 90)
    journal = await Journal.open(data)
    assert journal.last_op == target.op - 1
    assert journal.recovery.truncated_offset == target.offset
    assert journal.recovery.bytes_truncated > 0
    await journal.aclose()


async def test_stale_copy_of_a_record_raises() -> None:
    # Equal-sized bodies, so a copy of op 2's record fits exactly where op 5 was.
    data, _ = await build([2, 2, 2, 2], body_size=16)
    placed = records(data)
    content = read_file(data, placed[1].name)
    stale = content[placed[1].offset : placed[1].offset + placed[1].size]
    patch_file(data, placed[4].name, placed[4].offset, stale)
    err = await refused(data)
    assert (err.op, err.offset) == (5, placed[4].offset)
    assert "op 2" in err.reason


async def test_stale_record_appended_after_the_end_raises() -> None:
    data, _ = await build([2, 2], body_size=16)
    placed = records(data)
    content = read_file(data, placed[0].name)
    stale = content[placed[0].offset : placed[0].offset + placed[0].size]
    patch_file(data, placed[-1].name, len(content), stale)
    err = await refused(data)
    assert err.op == 5 and err.offset == len(content)


async def test_stale_record_after_a_torn_one_raises() -> None:
    # A bad record followed by a valid record that cannot belong after it
    # (an older op) is not a torn write of the last batch.
    data, _ = await build([2, 3], body_size=16)
    placed = records(data)
    content = read_file(data, placed[0].name)
    old = content[placed[0].offset : placed[0].offset + placed[0].size]
    patch_file(data, placed[-1].name, placed[-2].offset, bytes(placed[-2].size))
    patch_file(data, placed[-1].name, placed[-1].offset, old)
    err = await refused(data)
    assert err.op == placed[-2].op and "cannot belong" in err.reason


async def test_chain_break_inside_a_segment_raises() -> None:
    # A record with a valid checksum and the right op but another history's parent.
    data, _ = await build([2, 2, 2], body_size=16)
    placed = records(data)
    forged = encode_record(4, 3, GENESIS_PARENT, b"x" * 16)
    patch_file(data, placed[3].name, placed[3].offset, forged)
    err = await refused(data)
    assert (err.op, err.offset) == (4, placed[3].offset)
    assert "chain" in err.reason


async def test_segment_from_another_history_breaks_the_chain() -> None:
    data, _ = await build([2, 2, 2], segment_bytes=300, body_size=40)
    other, _ = await build([2, 2, 2], segment_bytes=300, body_size=41)
    names = segment_names(data)
    assert names == segment_names(other) and len(names) >= 2
    patch_file(data, names[1], 0, read_file(other, names[1]))
    err = await refused(data, ForeignDataError)
    assert err.path is not None and err.path.endswith(names[1]) and err.offset == 0
    assert "another" in err.reason or "belongs to data directory" in err.reason


async def test_missing_middle_segment_raises() -> None:
    data, _ = await build([2] * 5, segment_bytes=300, body_size=40)
    names = segment_names(data)
    assert len(names) >= 3
    wal_dir(data).unlink(names[1])
    err = await refused(data)
    assert err.path is not None and err.path.endswith(names[2]) and "missing" in err.reason


async def test_renamed_segment_raises() -> None:
    data, _ = await build([2] * 3, segment_bytes=300, body_size=40)
    names = segment_names(data)
    wal_dir(data).rename(names[-1], f"{int(names[-1][:20]) + 1:020d}.wal")
    err = await refused(data)
    assert "file name" in err.reason


async def test_unparseable_segment_name_raises_but_other_files_are_ignored() -> None:
    data, written = await build([2, 2])
    files = wal_bytes(data)
    state = clone(
        {**files, "00000000000000000001.wal.broken": b"junk", "notes.txt": b"x"}, like=data
    )
    journal = await Journal.open(state)
    assert journal.last_op == len(written)
    await journal.aclose()
    state = clone({**files, "backup.wal": b"junk"}, like=data)
    err = await refused(state)
    assert err.path is not None and err.path.endswith("backup.wal")


@pytest.mark.parametrize("position", ["first", "last"])
async def test_foreign_file_is_refused_with_format_error(position: str) -> None:
    data, _ = await build([2, 2], segment_bytes=250, body_size=40)
    names = segment_names(data)
    name = names[0] if position == "first" else names[-1]
    patch_file(data, name, 0, b"SQLite format 3\x00")
    err = await refused(data, FormatError)
    assert err.path is not None and err.path.endswith(name) and err.offset == 0


async def test_unknown_segment_version_is_refused(os_dir: OsDirectory) -> None:
    await build([2], data=os_dir)
    name = segment_names(os_dir)[0]
    header = bytearray(encode_segment_header(1, GENESIS_PARENT)[:64])
    header[8] = 9
    from trio_replica.journal.record import checksum

    patch_file(os_dir, name, 0, bytes(header) + checksum(bytes(header)))
    err = await refused(os_dir, FormatError)
    assert "version" in err.reason


async def test_unknown_record_version_is_refused() -> None:
    data, _ = await build([1])
    placed = records(data)
    raw = bytearray(encode_record(1, 1, GENESIS_PARENT, b"")[:128])
    raw[108] = 3  # version 3, with a valid header checksum
    from trio_replica.journal.record import checksum

    raw[:16] = checksum(bytes(raw[16:128]))
    patch_file(data, placed[0].name, placed[0].offset, bytes(raw))
    err = await refused(data, FormatError)
    assert err.op == 1 and "version" in err.reason


async def test_invalid_header_of_last_segment_with_records_after_raises() -> None:
    data, _ = await build([2, 2], segment_bytes=250, body_size=40)
    names = segment_names(data)
    patch_file(data, names[-1], 0, bytes(80))
    err = await refused(data)
    # The superblock names this segment, so its header was durable: not torn.
    assert err.offset == 0 and "created whole" in err.reason


async def test_invalid_header_of_a_sealed_segment_raises() -> None:
    data, _ = await build([2, 2, 2], segment_bytes=250, body_size=40)
    names = segment_names(data)
    flip_bit(data, names[0], 30)
    err = await refused(data)
    assert err.path is not None and err.path.endswith(names[0]) and err.offset == 0


async def test_lone_compacted_segment_with_invalid_header_raises() -> None:
    # After compaction the first segment's name is the only record of where
    # the journal starts; its header can never be silently dropped.
    data, _ = await build([2, 2, 2], segment_bytes=250, body_size=40)
    names = segment_names(data)
    journal = await Journal.open(data)
    journal.set_watermark(journal.last_op)
    assert await journal.compact() == len(names) - 1
    await journal.aclose()
    patch_file(data, names[-1], 0, bytes(80))
    f = wal_dir(data).open(names[-1])
    f.truncate(80)
    f.close()
    err = await refused(data)
    assert err.offset == 0


async def test_leading_segments_deleted_by_hand_are_refused() -> None:
    # The superblock records where the journal starts: deleting old segments
    # by hand (not by compaction) is a loss, never a silently later start.
    data, _ = await build([2, 2, 2], segment_bytes=250, body_size=40)
    names = segment_names(data)
    wal_dir(data).unlink(names[0])
    err = await refused(data)
    assert "leading segments were lost" in err.reason


@pytest.mark.parametrize("lost", ["newest", "all"])
async def test_trailing_segments_deleted_are_refused(lost: str) -> None:
    # The superblock names the newest segment ever created: losing it (or
    # all of them) is refused, never opened as a shorter (or empty) journal.
    data, _ = await build([2, 2, 2], segment_bytes=250, body_size=40)
    names = segment_names(data)
    for name in names[-1:] if lost == "newest" else names:
        wal_dir(data).unlink(name)
    err = await refused(data)
    assert "trailing segments were lost" in err.reason
