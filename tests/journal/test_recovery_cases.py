"""Every case of the recovery decision table is produced by a real on-disk state, observed
by the scan, and handled by ``Journal.open`` with the table's action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from journal_builder import build
from wal_edit import (
    flip_bit,
    patch_file,
    read_file,
    records,
    segment_names,
    truncate_file,
    wal_dir,
)

from trio_replica.errors import CorruptionError, ForeignDataError, FormatError
from trio_replica.journal import Journal, scan_journal
from trio_replica.journal.decision import REFUSALS, Action, Case, decide
from trio_replica.journal.record import (
    GENESIS_PARENT,
    checksum,
    encode_record,
    encode_segment_header,
)
from trio_replica.journal.superblock import read_superblock
from trio_replica.storage import Directory, MemoryDirectory

Scenario = Callable[[], Awaitable[Directory]]


async def valid() -> Directory:
    data, _ = await build([2, 3], segment_bytes=300, body_size=30)
    return data


async def name_invalid() -> Directory:
    data = await valid()
    wal_dir(data).open("copy-of-segment.wal", create=True).close()
    return data


async def foreign_magic() -> Directory:
    data = await valid()
    patch_file(data, segment_names(data)[0], 0, b"\x7fELF\x02\x01\x01\x00")
    return data


def directory_id(data: Directory) -> bytes:
    block = read_superblock(data)
    assert block is not None
    return block.directory_id


async def unknown_segment_version() -> Directory:
    data = await valid()
    head = bytearray(encode_segment_header(1, GENESIS_PARENT, directory_id(data))[:64])
    head[8] = 3
    patch_file(data, segment_names(data)[0], 0, bytes(head) + checksum(bytes(head)))
    return data


async def foreign_directory() -> Directory:
    # A segment of another data directory, copied in by hand.
    data, _ = await build([2, 2], segment_bytes=300, body_size=30)
    other, _ = await build([2, 2], segment_bytes=300, body_size=31)
    name = segment_names(data)[1]
    patch_file(data, name, 0, read_file(other, name))
    return data


async def name_mismatch() -> Directory:
    data = await valid()
    names = segment_names(data)
    wal_dir(data).rename(names[-1], f"{int(names[-1][:20]) + 1:020d}.wal")
    return data


async def segment_gap() -> Directory:
    data, _ = await build([2] * 4, segment_bytes=300, body_size=30)
    wal_dir(data).unlink(segment_names(data)[1])
    return data


async def segment_chain_break() -> Directory:
    # This directory's identity, another history's parent.
    data, _ = await build([2, 2], segment_bytes=300, body_size=30)
    name = segment_names(data)[1]
    patch_file(data, name, 0, encode_segment_header(3, GENESIS_PARENT, directory_id(data)))
    return data


async def journal_start_lost() -> Directory:
    data, _ = await build([2] * 4, segment_bytes=300, body_size=30)
    wal_dir(data).unlink(segment_names(data)[0])
    return data


async def journal_end_lost() -> Directory:
    data, _ = await build([2] * 4, segment_bytes=300, body_size=30)
    wal_dir(data).unlink(segment_names(data)[-1])
    return data


async def wal_missing() -> Directory:
    # A used directory whose wal/ is gone: only the superblock is left.
    data = await valid()
    bare = MemoryDirectory()
    source = data.open("superblock")
    target = bare.open("superblock", create=True)
    target.write_at(0, source.read_at(0, source.size()))
    source.close()
    target.close()
    return bare


async def last_header_torn() -> Directory:
    data = await valid()
    nxt = records(data)[-1].op + 1
    wal_dir(data).open(f"{nxt:020d}.wal", create=True).close()
    return data


async def header_invalid() -> Directory:
    data = await valid()
    flip_bit(data, segment_names(data)[0], 20)
    return data


async def record_unsupported() -> Directory:
    data = await valid()
    rec = records(data)[0]
    raw = bytearray(encode_record(1, 1, GENESIS_PARENT, b"")[:128])
    raw[111] = 1  # a flag this version does not know, under a valid checksum
    raw[:16] = checksum(bytes(raw[16:128]))
    patch_file(data, rec.name, rec.offset, bytes(raw))
    return data


async def record_op_gap() -> Directory:
    data, _ = await build([2, 2], body_size=8)
    placed = records(data)
    content = read_file(data, placed[0].name)
    patch_file(data, placed[2].name, placed[2].offset, content[80 : 80 + placed[0].size])
    return data


async def record_chain_break() -> Directory:
    data, _ = await build([2, 2], body_size=8)
    rec = records(data)[2]
    patch_file(data, rec.name, rec.offset, encode_record(3, 3, GENESIS_PARENT, b"x" * 8))
    return data


async def bad_in_sealed() -> Directory:
    data, _ = await build([2, 2], segment_bytes=300, body_size=30)
    rec = records(data)[-3]
    assert rec.name == segment_names(data)[0]
    flip_bit(data, rec.name, rec.offset + 85)
    return data


async def nothing_valid_after() -> Directory:
    data = await valid()
    rec = records(data)[-1]
    truncate_file(data, rec.name, rec.offset + 30)
    return data


async def only_same_batch_after() -> Directory:
    data, _ = await build([2, 4], body_size=30)
    rec = records(data)[-3]
    patch_file(data, rec.name, rec.offset, bytes(rec.size))
    return data


async def later_batch_after() -> Directory:
    data, _ = await build([2, 4, 1], body_size=30)
    rec = records(data)[-3]
    flip_bit(data, rec.name, rec.offset + 100)
    return data


async def stale_after() -> Directory:
    data, _ = await build([2, 2], body_size=8)
    placed = records(data)
    old = read_file(data, placed[0].name)[80 : 80 + placed[0].size]
    patch_file(data, placed[2].name, placed[2].offset, bytes(placed[2].size))
    patch_file(data, placed[3].name, placed[3].offset, old)
    return data


SCENARIOS: dict[Case, Scenario] = {
    Case.SEGMENT_HEADER_VALID: valid,
    Case.RECORD_VALID: valid,
    Case.SEGMENT_NAME_INVALID: name_invalid,
    Case.SEGMENT_FOREIGN_MAGIC: foreign_magic,
    Case.SEGMENT_UNKNOWN_VERSION: unknown_segment_version,
    Case.SEGMENT_FOREIGN_DIRECTORY: foreign_directory,
    Case.SEGMENT_NAME_MISMATCH: name_mismatch,
    Case.SEGMENT_OP_GAP: segment_gap,
    Case.SEGMENT_CHAIN_BREAK: segment_chain_break,
    Case.JOURNAL_START_LOST: journal_start_lost,
    Case.JOURNAL_END_LOST: journal_end_lost,
    Case.WAL_MISSING: wal_missing,
    Case.LAST_SEGMENT_HEADER_TORN: last_header_torn,
    Case.SEGMENT_HEADER_INVALID: header_invalid,
    Case.RECORD_UNSUPPORTED: record_unsupported,
    Case.RECORD_OP_GAP: record_op_gap,
    Case.RECORD_CHAIN_BREAK: record_chain_break,
    Case.BAD_RECORD_IN_SEALED_SEGMENT: bad_in_sealed,
    Case.BAD_RECORD_NOTHING_VALID_AFTER: nothing_valid_after,
    Case.BAD_RECORD_ONLY_SAME_BATCH_AFTER: only_same_batch_after,
    Case.BAD_RECORD_LATER_BATCH_AFTER: later_batch_after,
    Case.BAD_RECORD_STALE_AFTER: stale_after,
}


def test_every_case_has_an_on_disk_scenario() -> None:
    assert set(SCENARIOS) == set(Case)


@pytest.mark.parametrize("case", list(Case), ids=lambda c: c.name)
async def test_scenario_produces_its_case_and_open_acts_on_it(case: Case) -> None:
    data = await SCENARIOS[case]()
    observed: list[Case] = []
    action = decide(case)
    try:
        scan_journal(data, observe=lambda c, path, offset: observed.append(c))
    except CorruptionError:
        assert action in REFUSALS
    assert case in observed
    # The case is the scan's verdict: only accepted cases come before it.
    decisive = [c for c in observed if decide(c) is not Action.ACCEPT]
    if action is Action.ACCEPT:
        assert decisive == []
    else:
        assert decisive == [case]

    if action is Action.ACCEPT:
        journal = await Journal.open(data)
        assert journal.recovery.bytes_truncated == 0
        await journal.aclose()
    elif action in (Action.TRUNCATE, Action.REMOVE_SEGMENT):
        journal = await Journal.open(data)
        assert journal.recovery.action == action.value
        await journal.aclose()
        again: list[Case] = []
        scan_journal(data, observe=lambda c, path, offset: again.append(c))
        assert all(decide(c) is Action.ACCEPT for c in again)
    else:
        error = {
            Action.RAISE_FORMAT: FormatError,
            Action.RAISE_FOREIGN: ForeignDataError,
        }.get(action, CorruptionError)
        with pytest.raises(error) as info:
            await Journal.open(data)
        if action is Action.RAISE_CORRUPTION:
            assert not isinstance(info.value, (FormatError, ForeignDataError))
