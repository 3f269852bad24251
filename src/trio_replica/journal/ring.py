"""The ring index: where the last ``slot_count`` ops are, in fixed memory.

Slot ``op % slot_count`` holds the op's segment (by first op), offset and
body length, plus the op itself so that a slot reused by a newer op (or left
over from ops that recovery truncated) is never mistaken for the one asked
for. Older ops are not indexed: the journal finds them by bisecting its
segment list and scanning that one segment, so memory stays bounded by
configuration, not by the size of the WAL.
"""

from __future__ import annotations

from array import array

__all__ = ["RingIndex", "RingSlot"]

RingSlot = tuple[int, int, int]
"""(segment first op, offset of the record in the segment, body length)."""


class RingIndex:
    """A fixed-size op -> location map over the most recent ops."""

    __slots__ = ("_body_lens", "_offsets", "_ops", "_segments", "slot_count")

    def __init__(self, slot_count: int) -> None:
        if slot_count < 1:
            raise ValueError(f"slot_count must be at least 1, got {slot_count}")
        self.slot_count = slot_count
        # Unsigned 64-bit arrays: 32 bytes per slot, allocated once.
        self._ops = array("Q", bytes(8 * slot_count))
        self._segments = array("Q", bytes(8 * slot_count))
        self._offsets = array("Q", bytes(8 * slot_count))
        self._body_lens = array("Q", bytes(8 * slot_count))

    def put(self, op: int, segment_first_op: int, offset: int, body_len: int) -> None:
        """Record where ``op`` is, replacing whatever op used its slot before."""
        slot = op % self.slot_count
        self._ops[slot] = op
        self._segments[slot] = segment_first_op
        self._offsets[slot] = offset
        self._body_lens[slot] = body_len

    def record(
        self, segment_first_op: int, offset: int, op: int, body_len: int, _checksum: bytes
    ) -> None:
        """:meth:`put` with the recovery scan's ``on_record`` arguments (one call per record)."""
        slot = op % self.slot_count
        self._ops[slot] = op
        self._segments[slot] = segment_first_op
        self._offsets[slot] = offset
        self._body_lens[slot] = body_len

    def put_batch(
        self, first_op: int, segment_first_op: int, offsets: list[int], body_lens: list[int]
    ) -> None:
        """Record the ops ``first_op, first_op + 1, ...`` of one batch (slice writes)."""
        count = len(offsets)
        if count > self.slot_count:  # only the newest slot_count ops are kept
            skip = count - self.slot_count
            first_op += skip
            offsets = offsets[skip:]
            body_lens = body_lens[skip:]
            count = self.slot_count
        done = 0
        while done < count:
            slot = (first_op + done) % self.slot_count
            n = min(count - done, self.slot_count - slot)
            end = slot + n
            self._ops[slot:end] = array("Q", range(first_op + done, first_op + done + n))
            self._segments[slot:end] = array("Q", [segment_first_op]) * n
            self._offsets[slot:end] = array("Q", offsets[done : done + n])
            self._body_lens[slot:end] = array("Q", body_lens[done : done + n])
            done += n

    def get(self, op: int) -> RingSlot | None:
        """Where ``op`` is, or None when its slot holds another op (or nothing)."""
        slot = op % self.slot_count
        if op < 1 or self._ops[slot] != op:
            return None
        return self._segments[slot], self._offsets[slot], self._body_lens[slot]
