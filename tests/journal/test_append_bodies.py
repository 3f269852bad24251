"""Journal.append_bodies: append() of a column of bodies, same bytes, same refusals."""

from __future__ import annotations

import pytest
from wal_edit import wal_bytes

from trio_replica.errors import BodyTooLargeError, InvalidAppendError, JournalFull
from trio_replica.journal import Entry, Journal
from trio_replica.storage import MemoryDirectory


async def test_append_bodies_writes_the_bytes_append_writes() -> None:
    batches = [[b"a", b"bb", b""], [b"x" * 13], [bytes(range(40)), b"q"]]
    by_entries, by_bodies = MemoryDirectory(), MemoryDirectory()
    async with await Journal.open(by_entries) as left, await Journal.open(by_bodies) as right:
        right._superblock = left._superblock  # one identity, so the segment headers match
        for batch in batches:
            first = left.last_op + 1
            await left.append([Entry(first + i, body) for i, body in enumerate(batch)])
            await right.append_bodies(first, batch)
        assert right.last_op == left.last_op == 6
        assert [e.body async for e in right.entries()] == [b for batch in batches for b in batch]
    assert wal_bytes(by_entries) == wal_bytes(by_bodies)


@pytest.mark.parametrize(
    ("first", "bodies", "error"),
    [
        (2, [b"a"], InvalidAppendError),  # a gap
        (0, [b"a"], InvalidAppendError),  # behind last_op
        (1, [], InvalidAppendError),
        (1, [b"a", bytearray(b"b")], InvalidAppendError),
        (1, [b"a", b"x" * 65], BodyTooLargeError),
        (1, [b"a"] * 9, JournalFull),
    ],
    ids=["gap", "behind", "empty", "not bytes", "too large", "journal full"],
)
async def test_bad_batches_are_refused_and_change_nothing(
    first: int, bodies: list[bytes], error: type[Exception]
) -> None:
    data = MemoryDirectory()
    async with await Journal.open(data, max_body_bytes=64, slot_count=8) as journal:
        await journal.append_bodies(1, [b"ok"])
        journal.set_watermark(1)
        before = wal_bytes(data)
        with pytest.raises(error):
            await journal.append_bodies(first + 1, bodies)
        assert journal.last_op == 1
        assert wal_bytes(data) == before
