"""The recovery scan's fast path judges exactly like the record-by-record path.

``scan_wal`` verifies runs of valid records with ``verify_run`` (no objects,
each record verified once) and only asks ``check_record`` about the record
where a run stops. With an ``observe`` callback it takes the record-by-record
path instead. Both must reach the same judgment on any journal, damaged or
not: the same result, or the same refusal at the same file, offset and op;
the same records given to ``on_record``; and, with a ``Replay``, exactly the
bodies of the kept records above its op, in order, from the verified bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from journal_builder import body_of, build
from wal_edit import clone, wal_bytes

from trio_replica.errors import CorruptionError
from trio_replica.journal import Replay
from trio_replica.journal.plan import plan_open
from trio_replica.journal.record import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, checksum
from trio_replica.journal.segment import SegmentReader, verify_run
from trio_replica.storage import Directory

# Three segments of small batches: damage can land in a sealed segment, in
# the last one, in a header, a body or padding, or cut the file anywhere.
_BASE, _ENTRIES = trio.run(lambda: build([3, 1, 4, 2, 5, 3, 2], segment_bytes=1200))
_FILES = wal_bytes(_BASE)
_NAMES = sorted(_FILES)
assert len(_NAMES) >= 3


def _judge(data: Directory, *, slow: bool, after: int) -> tuple[Any, list[Any], list[Any]]:
    """Scan ``data``; the outcome (result or refusal), on_record calls, replayed bodies."""
    seen: list[Any] = []
    bodies: list[tuple[int, bytes]] = []

    def apply(op: int, body: memoryview) -> None:
        bodies.append((op, bytes(body)))

    def observe(*_: object) -> None:
        pass

    try:
        plan = plan_open(
            data,
            create=False,
            on_record=lambda *args: seen.append(args),
            observe=observe if slow else None,
            replay=Replay(after, apply),
        )
    except CorruptionError as exc:
        return (type(exc), exc.path, exc.offset, exc.op), seen, bodies
    return plan.scan, seen, bodies


@given(
    segment=st.integers(0, len(_NAMES) - 1),
    where=st.floats(0, 1),
    change=st.one_of(
        st.integers(1, 255).map(lambda x: ("xor", x)),
        st.just(("cut", 0)),
    ),
    after=st.sampled_from([0, 5, 12]),
)
def test_fast_and_record_by_record_paths_agree_on_any_damage(
    segment: int, where: float, change: tuple[str, int], after: int
) -> None:
    files = dict(_FILES)
    name = _NAMES[segment]
    content = bytearray(files[name])
    at = min(len(content) - 1, int(where * len(content)))
    kind, mask = change
    if kind == "xor":
        content[at] ^= mask
    else:
        del content[at:]
    files[name] = bytes(content)
    fast = _judge(clone(files, like=_BASE), slow=False, after=after)
    slow = _judge(clone(files, like=_BASE), slow=True, after=after)
    assert fast == slow
    outcome, seen, bodies = fast
    if not isinstance(outcome, tuple):
        # Every kept record above ``after`` was replayed once, in order, with its body.
        kept = [args[2] for args in seen]
        assert kept == list(range(1, outcome.last_op + 1))
        assert bodies == [(op, body_of(op)) for op in kept if op > after]


def test_an_undamaged_journal_replays_every_body_once_in_order() -> None:
    outcome, seen, bodies = _judge(clone(_FILES, like=_BASE), slow=False, after=0)
    assert not isinstance(outcome, tuple)
    assert outcome.last_op == len(_ENTRIES)
    assert bodies == [(entry.op, entry.body) for entry in _ENTRIES]
    assert [args[2] for args in seen] == [entry.op for entry in _ENTRIES]


def test_a_replay_refusal_names_the_record_file_and_offset() -> None:
    data = clone(_FILES, like=_BASE)

    def apply(op: int, body: memoryview) -> None:
        if op == 7:
            raise CorruptionError("not a command", op=op)

    with pytest.raises(CorruptionError) as raised:
        plan_open(data, create=False, replay=Replay(0, apply))
    error = raised.value
    assert error.op == 7 and error.reason == "not a command"
    assert error.path is not None and error.path.endswith(".wal")
    assert error.offset is not None and error.offset >= SEGMENT_HEADER_SIZE


def test_verify_run_stops_before_the_first_bad_record_and_counts_what_it_verified() -> None:
    files = dict(_FILES)
    first = _NAMES[0]
    content = bytearray(files[first])
    # The second record's body: the run verifies one record, then stops there.
    second = SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + ((len(body_of(1)) + 7) & ~7)
    content[second + RECORD_HEADER_SIZE] ^= 1
    files[first] = bytes(content)
    data = clone(files, like=_BASE)
    storage = data.subdir("wal").open(first)
    try:
        header_parent = storage.read_at(24, 16)  # the segment header's parent
        run = verify_run(
            SegmentReader(storage, storage.size()),
            SEGMENT_HEADER_SIZE,
            1,
            header_parent,
            segment_first_op=1,
            path=storage.path,
        )
    finally:
        storage.close()
    assert (run.records, run.expected_op, run.offset, run.batch_first) == (1, 2, second, 1)


# Fields a record of another version (or a bug) may carry under a valid header
# checksum: (offset in the header, replacement bytes).
_RESEALED = {
    "parent": (32, bytes(16)),
    "op": (64, (99).to_bytes(8, "little")),
    "batch_first (0)": (88, bytes(8)),
    "batch_first (after op)": (88, (10**6).to_bytes(8, "little")),
    "epoch": (100, b"\x01\x00\x00\x00"),
    "version": (108, b"\x03\x00"),
    "kind": (110, b"\x02"),
    "flags": (111, b"\x01"),
    "reserved": (127, b"\x01"),
}


@pytest.mark.parametrize("field", sorted(_RESEALED))
@pytest.mark.parametrize("record", [0, 2, 5])
def test_paths_agree_on_records_with_a_valid_checksum_and_a_wrong_field(
    field: str, record: int
) -> None:
    files = dict(_FILES)
    name = _NAMES[-1]
    content = bytearray(files[name])
    offset = SEGMENT_HEADER_SIZE
    for _ in range(record):  # walk to the record-th record of the segment
        body_len = int.from_bytes(content[offset + 96 : offset + 100], "little")
        offset += RECORD_HEADER_SIZE + ((body_len + 7) & ~7)
    at, value = _RESEALED[field]
    content[offset + at : offset + at + len(value)] = value
    # Re-seal the header so that only the field is wrong, not the checksum.
    content[offset : offset + 16] = checksum(bytes(content[offset + 16 : offset + 128]))
    files[name] = bytes(content)
    fast = _judge(clone(files, like=_BASE), slow=False, after=0)
    slow = _judge(clone(files, like=_BASE), slow=True, after=0)
    assert fast == slow
    outcome = fast[0]
    # Never accepted as valid: refused, or cut as the (never acknowledged) tail.
    if not isinstance(outcome, tuple):
        assert outcome.torn_tail is not None and outcome.torn_tail.offset == offset
