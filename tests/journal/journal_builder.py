"""Building journals with known content for recovery tests."""

from __future__ import annotations

from collections.abc import Sequence

from trio_replica.journal import Entry, Journal
from trio_replica.storage import Directory, MemoryDirectory


def body_of(op: int, size: int | None = None) -> bytes:
    """A deterministic body for ``op`` (size varies so records are not all alike)."""
    n = (op * 37) % 61 if size is None else size
    return bytes((op * 7 + i) % 251 for i in range(n))


async def build(
    batch_sizes: Sequence[int],
    *,
    data: Directory | None = None,
    segment_bytes: int = 64 * 2**20,
    body_size: int | None = None,
) -> tuple[Directory, list[Entry]]:
    """A journal holding batches of the given sizes; returns the directory and all entries."""
    data = data if data is not None else MemoryDirectory()
    written: list[Entry] = []
    async with await Journal.open(
        data, segment_bytes=segment_bytes, slot_count=max(1, sum(batch_sizes))
    ) as journal:
        for size in batch_sizes:
            first = journal.last_op + 1
            entries = [Entry(first + i, body_of(first + i, body_size)) for i in range(size)]
            await journal.append(entries)
            written += entries
    return data, written


async def contents(data: Directory) -> tuple[Journal, list[Entry]]:
    """Open ``data`` and read everything back (the caller closes the journal)."""
    journal = await Journal.open(data, slot_count=1 << 16)
    return journal, [e async for e in journal.entries(after=journal.first_op - 1)]
