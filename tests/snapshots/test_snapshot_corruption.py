"""Corrupt snapshot files are skipped with a warning, and decoding stays bounded.

Every bit of the newest snapshot is flipped in turn (and Hypothesis samples
positions in a bigger one): the store must fall back to the older snapshot
and log a warning naming the corrupt file. Files whose lengths lie (in the
header, or inside a checksum-valid CBOR body) must fail fast with a typed
error, reading and allocating no more than the file holds.
"""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from snapshot_disk import content as file_content
from snapshot_disk import new_disk, put, restarted
from snapshot_values import same

from trio_replica.coordinator import (
    NoValidSnapshotError,
    Snapshot,
    SnapshotStore,
)
from trio_replica.coordinator.snapshot_format import (
    FIXED_HEADER_SIZE,
    encode_header,
    snapshot_name,
)
from trio_replica.coordinator.store import verify_snapshots
from trio_replica.testing import FaultyDirectory

LOGGER = "trio_replica.snapshots"
MACHINE = {"machine_name": "kv", "machine_version": 3}
OLDER = {"op": 5, "rows": [1, 2, 3]}
NEWER = {"op": 9, "rows": [1, 2, 3, 4], "big": 2**70, "blob": b"\xff\x00" * 8}
KNOWN_REASONS = (
    "bad magic",
    "unknown format version",
    "truncated",
    "length mismatch",
    "corrupt header",
    "bad checksum",
)


def store_on(directory: FaultyDirectory) -> SnapshotStore:
    return SnapshotStore(directory, keep=2, **MACHINE)


async def two_snapshots(newer: object = NEWER) -> FaultyDirectory:
    disk = new_disk()
    store = store_on(disk)
    await store.persist(Snapshot(5, OLDER))
    await store.persist(Snapshot(9, newer))
    return disk


def warnings_naming(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and path in r.getMessage()
    ]


async def load_with_newest_replaced(
    base: FaultyDirectory, content: bytes
) -> tuple[Snapshot | None, SnapshotStore, str]:
    disk = restarted(base)
    snapdir = disk.subdir("snapshots")
    put(disk, snapshot_name(9), content)
    store = store_on(disk)
    return await store.load_latest(), store, snapdir.path_of(snapshot_name(9))


async def test_every_bit_flip_in_the_newest_snapshot_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = await two_snapshots()
    original = file_content(base, snapshot_name(9))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    reasons: set[str] = set()
    for position in range(len(original)):
        for bit in range(8):
            corrupt = bytearray(original)
            corrupt[position] ^= 1 << bit
            caplog.clear()
            loaded, store, path = await load_with_newest_replaced(base, bytes(corrupt))
            assert loaded is not None
            assert loaded.op == 5 and same(loaded.state, OLDER), (position, bit)
            assert warnings_naming(caplog, path), (position, bit)
            newest = store.list()[0]
            assert newest.op == 9 and not newest.valid
            assert newest.reason is not None
            assert newest.reason.startswith(KNOWN_REASONS), newest.reason
            assert store.last_load_skipped == (newest,)
            reasons.add(next(k for k in KNOWN_REASONS if newest.reason.startswith(k)))
    # Flips in the header's fields are told apart from flips elsewhere.
    assert {
        "bad magic",
        "unknown format version",
        "bad checksum",
        "length mismatch",
        "truncated",
    } <= reasons


async def test_every_truncation_and_trailing_garbage_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = await two_snapshots()
    original = file_content(base, snapshot_name(9))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for cut in [*range(len(original)), -1]:
        content = original[:cut] if cut >= 0 else original + b"\x00"
        caplog.clear()
        loaded, store, path = await load_with_newest_replaced(base, content)
        assert loaded is not None and loaded.op == 5, cut
        assert warnings_naming(caplog, path)
        reason = store.list()[0].reason
        assert reason is not None
        assert reason.startswith("truncated" if cut >= 0 else "length mismatch"), reason


@given(data=st.data())
def test_sampled_bit_flips_in_a_larger_snapshot(data: st.DataObject) -> None:
    # A body of ~40 KB with nested values; positions cover header and body.
    newer = {
        "rows": [{"k": i, "v": bytes([i % 256]) * 100, "n": -(2**65) - i} for i in range(300)],
        "text": "é" * 1000,
    }
    base = trio.run(two_snapshots, newer)
    original = file_content(base, snapshot_name(9))
    region = data.draw(st.sampled_from(["header", "body"]))
    header_end = FIXED_HEADER_SIZE + len("kv") + 16
    if region == "header":
        position = data.draw(st.integers(0, header_end - 1))
    else:
        position = data.draw(st.integers(header_end, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    corrupt = bytearray(original)
    corrupt[position] ^= 1 << bit
    loaded, store, _ = trio.run(load_with_newest_replaced, base, bytes(corrupt))
    assert loaded is not None and loaded.op == 5
    assert not store.list()[0].valid


async def test_bit_flip_on_real_files_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SnapshotStore(tmp_path, **MACHINE)
    await store.persist(Snapshot(5, OLDER))
    await store.persist(Snapshot(9, NEWER))
    newest = tmp_path / "snapshots" / snapshot_name(9)
    original = newest.read_bytes()
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for position in (0, 9, 20, FIXED_HEADER_SIZE + 1, len(original) // 2, len(original) - 1):
        corrupt = bytearray(original)
        corrupt[position] ^= 0x10
        newest.write_bytes(bytes(corrupt))
        caplog.clear()
        loaded = await SnapshotStore(tmp_path, **MACHINE).load_latest()
        assert loaded is not None and loaded.op == 5 and same(loaded.state, OLDER)
        assert warnings_naming(caplog, str(newest))


# --- bounded decoding ----------------------------------------------------

# CBOR heads that claim 2**60 bytes or items, followed by only a few bytes.
HUGE_CLAIMS = {
    "byte string": b"\x5b" + (2**60).to_bytes(8, "big") + b"abc",
    "text string": b"\x7b" + (2**60).to_bytes(8, "big") + b"abc",
    "array": b"\x9b" + (2**60).to_bytes(8, "big") + b"\x01",
    "map": b"\xbb" + (2**60).to_bytes(8, "big") + b"\x01\x01",
    "bignum": b"\xc2\x5b" + (2**60).to_bytes(8, "big") + b"\x01",
    "nested in a map": b"\xa1\x61k\x5b" + (2**60).to_bytes(8, "big") + b"abc",
}


def crafted_file(op: int, body: bytes) -> bytes:
    """A file with a correct header and a VALID checksum over a lying body."""
    return encode_header(op=op, machine_name="kv", machine_version=3, body=body) + body


@pytest.mark.parametrize("claim", sorted(HUGE_CLAIMS))
async def test_checksum_valid_body_claiming_2_pow_60_bytes_fails_fast(claim: str) -> None:
    disk = new_disk()
    content = crafted_file(9, HUGE_CLAIMS[claim])
    put(disk, snapshot_name(9), content)
    store = store_on(disk)
    tracemalloc.start()
    try:
        with pytest.raises(NoValidSnapshotError) as info:
            await store.load_latest()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # nowhere near 2**60: a small, fixed amount
    assert disk.plan.largest_read <= len(content)
    (entry,) = info.value.invalid
    assert entry.op == 9 and not entry.valid
    assert entry.reason is not None and entry.reason.startswith("undecodable body"), entry.reason


async def test_checksum_valid_lying_body_falls_back_to_the_older_snapshot() -> None:
    base = await two_snapshots()
    loaded, store, _ = await load_with_newest_replaced(
        base, crafted_file(9, HUGE_CLAIMS["byte string"])
    )
    assert loaded is not None and loaded.op == 5
    assert store.list()[0].reason is not None


async def test_header_body_length_of_2_pow_60_is_refused_before_reading() -> None:
    base = await two_snapshots()
    original = bytearray(file_content(base, snapshot_name(9)))
    original[24:32] = (2**60).to_bytes(8, "little")  # the body length field
    disk = restarted(base)
    put(disk, snapshot_name(9), bytes(original))
    store = store_on(disk)
    loaded = await store.load_latest()
    assert loaded is not None and loaded.op == 5
    reason = store.list()[0].reason
    assert reason is not None and reason.startswith("truncated"), reason
    assert disk.plan.largest_read <= len(original)


async def test_trailing_bytes_after_the_cbor_value_are_refused() -> None:
    base = await two_snapshots()
    loaded, store, _ = await load_with_newest_replaced(base, crafted_file(9, b"\x01\x02"))
    assert loaded is not None and loaded.op == 5
    reason = store.list()[0].reason
    assert reason is not None and "after the CBOR value" in reason


async def test_verify_snapshots_reports_every_file_and_writes_nothing() -> None:
    base = await two_snapshots()
    disk = restarted(base)
    put(disk, snapshot_name(12), crafted_file(12, HUGE_CLAIMS["array"]))
    put(disk, "00000000000000000013.snapshot.tmp", b"leftover")
    corrupt = bytearray(file_content(disk, snapshot_name(5)))
    corrupt[-1] ^= 1
    put(disk, snapshot_name(5), bytes(corrupt))
    before = list(disk.plan.calls)
    infos = verify_snapshots(disk)
    assert disk.plan.calls == before  # read-only
    assert [(i.op, i.valid) for i in infos] == [(12, False), (9, True), (5, False)]
    assert infos[0].reason is not None and infos[0].reason.startswith("undecodable body")
    assert infos[2].reason == "bad checksum"
    assert infos[1].machine_name == "kv" and infos[1].machine_version == 3
    mismatched = verify_snapshots(disk, machine_name="other", machine_version=3)
    assert not mismatched[1].valid
    assert verify_snapshots(new_disk()) == []
