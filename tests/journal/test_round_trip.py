"""Property: any sequence of batches of any bodies reads back identical after reopen,
across segment rolls, also when reopened and continued in between."""

from __future__ import annotations

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_replica.journal import Entry, Journal
from trio_replica.storage import MemoryDirectory

bodies = st.binary(max_size=200) | st.sampled_from([b"", b"\x00" * 8, b"TRJR" * 20])
batches = st.lists(st.lists(bodies, min_size=1, max_size=12), min_size=1, max_size=12)


async def check_contents(journal: Journal, written: list[Entry]) -> None:
    assert journal.last_op == len(written)
    assert [e async for e in journal.entries()] == written
    for entry in written:
        assert await journal.read(entry.op) == entry
    if written:
        middle = len(written) // 2
        assert [e async for e in journal.entries(after=middle)] == written[middle:]


@settings(max_examples=40)
@given(
    batches=batches,
    segment_bytes=st.sampled_from([208, 400, 1500, 64 * 2**20]),
    slot_count=st.sampled_from([1, 3, 64]),
    reopen_every=st.integers(1, 5),
)
def test_round_trip_across_rolls_and_reopens(
    batches: list[list[bytes]], segment_bytes: int, slot_count: int, reopen_every: int
) -> None:
    async def run() -> None:
        data = MemoryDirectory()

        async def open_journal() -> Journal:
            journal = await Journal.open(data, segment_bytes=segment_bytes, slot_count=slot_count)
            # The ring never limits this test: everything written counts as snapshotted.
            journal.set_watermark(journal.last_op)
            return journal

        journal = await open_journal()
        written: list[Entry] = []
        for i, bodies_ in enumerate(batches):
            for start in range(0, len(bodies_), slot_count):
                chunk = bodies_[start : start + slot_count]
                entries = [Entry(journal.last_op + 1 + k, b) for k, b in enumerate(chunk)]
                await journal.append(entries)
                journal.set_watermark(journal.last_op)
                written += entries
            if i % reopen_every == 0:
                await journal.aclose()
                journal = await open_journal()
                assert journal.recovery.bytes_truncated == 0
                assert journal.recovery.records == len(written)
                await check_contents(journal, written)
        await journal.aclose()
        journal = await open_journal()
        await check_contents(journal, written)
        await journal.aclose()

    trio.run(run)
