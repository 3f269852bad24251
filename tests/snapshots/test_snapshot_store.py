"""The SnapshotStore API: round trips, refusals, retention and the catalog."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from snapshot_disk import content, durable_only, fail_nth, names, new_disk, put
from snapshot_values import same

from trio_replica.coordinator import (
    InvalidSnapshotOpError,
    NoValidSnapshotError,
    Snapshot,
    SnapshotEncodeError,
    SnapshotError,
    SnapshotStore,
)
from trio_replica.coordinator.snapshot_format import MAX_NESTING, snapshot_name
from trio_replica.errors import ClosedError, ReplicaError
from trio_replica.storage import MemoryDirectory, OsDirectory
from trio_replica.testing import FaultyDirectory

LOGGER = "trio_replica.snapshots"


def snapshot_files(disk: FaultyDirectory) -> list[str]:
    return disk.subdir("snapshots").listdir()


async def test_empty_directory_loads_none_and_has_no_retained_op(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "data")
    assert await store.load_latest() is None
    assert store.list() == []
    assert store.latest_op is None
    assert store.oldest_retained_op is None
    assert (tmp_path / "data" / "snapshots").is_dir()


async def test_round_trip_on_real_files_across_stores(tmp_path: Path) -> None:
    state = {
        "streams": {"orders": {"partitions": 3, "bytes": b"\x00\xff"}},
        "big": 2**100,
        "neg": -(2**100),
        "f": 1.5,
        "none": None,
        "flag": True,
        "list": [1, "two", [3.0]],
    }
    store = SnapshotStore(tmp_path, machine_name="meta", machine_version=2)
    info = await store.persist(Snapshot(42, state))
    path = tmp_path / "snapshots" / snapshot_name(42)
    assert info.op == 42 and info.valid and info.path == str(path)
    assert info.size == path.stat().st_size
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [snapshot_name(42)]
    await store.aclose()

    reopened = SnapshotStore(str(tmp_path), machine_name="meta", machine_version=2)
    loaded = await reopened.load_latest()
    assert loaded is not None and loaded.op == 42 and same(loaded.state, state)
    assert reopened.list() == [info]


async def test_a_directory_object_works_like_a_path(tmp_path: Path) -> None:
    for directory in (OsDirectory.open_path(tmp_path, create=True), MemoryDirectory()):
        store = SnapshotStore(directory)
        await store.persist(Snapshot(1, [1, 2]))
        assert await SnapshotStore(directory).load_latest() == Snapshot(1, [1, 2])


async def test_nan_and_negative_zero_survive() -> None:
    disk = MemoryDirectory()
    await SnapshotStore(disk).persist(Snapshot(1, [math.nan, -0.0, math.inf]))
    loaded = await SnapshotStore(disk).load_latest()
    assert loaded is not None and same(loaded.state, [math.nan, -0.0, math.inf])


@pytest.mark.parametrize("op", [-1, -(2**70), 2**64, True, 1.0, "3", None])
async def test_invalid_ops_are_refused_before_anything_is_written(op: object) -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.open()
    steps = len(disk.plan.calls)
    with pytest.raises(InvalidSnapshotOpError):
        await store.persist(Snapshot(op, {}))  # type: ignore[arg-type]
    assert disk.plan.calls[steps:] == []


async def test_non_increasing_ops_are_refused() -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(0, "zero"))  # op 0 (nothing applied yet) is allowed
    await store.persist(Snapshot(10, "ten"))
    steps = len(disk.plan.calls)
    for op in (10, 9, 0):
        with pytest.raises(InvalidSnapshotOpError) as info:
            await store.persist(Snapshot(op, "again"))
        assert info.value.op == op
        assert "not newer" in str(info.value)
    assert disk.plan.calls[steps:] == []
    # A new store knows the latest op from the directory.
    with pytest.raises(InvalidSnapshotOpError):
        await SnapshotStore(disk).persist(Snapshot(10, "again"))


class NotCbor:
    pass


@pytest.mark.parametrize(
    "state",
    [NotCbor(), {"a": [1, NotCbor()]}, {1: {2: lambda: None}}],
    ids=["object", "nested-object", "function"],
)
async def test_unencodable_state_is_refused_before_anything_is_written(state: object) -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(1, "first"))
    steps = len(disk.plan.calls)
    with pytest.raises(SnapshotEncodeError) as info:
        await store.persist(Snapshot(2, state))
    assert isinstance(info.value, SnapshotError) and isinstance(info.value, ReplicaError)
    assert info.value.op == 2 and not info.value.retryable
    assert info.value.__cause__ is not None
    assert disk.plan.calls[steps:] == []
    assert snapshot_files(disk) == [snapshot_name(1)]
    # The store is still usable.
    await store.persist(Snapshot(2, "second"))


def nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


async def test_nesting_up_to_the_limit_round_trips_and_deeper_is_refused() -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(1, nested(MAX_NESTING)))
    loaded = await SnapshotStore(disk).load_latest()
    assert loaded is not None and loaded.state == nested(MAX_NESTING)
    steps = len(disk.plan.calls)
    # Deeper than the decoder reads back (and deep enough to crash the
    # encoder if it were reached): refused up front.
    for depth in (MAX_NESTING + 1, 100_000):
        with pytest.raises(SnapshotEncodeError, match="nested deeper"):
            await store.persist(Snapshot(2, nested(depth)))
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(SnapshotEncodeError):
        await store.persist(Snapshot(2, cycle))
    assert disk.plan.calls[steps:] == []


async def test_mismatched_state_machine_is_refused_clearly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = MemoryDirectory()
    await SnapshotStore(disk, machine_name="orders", machine_version=1).persist(Snapshot(3, {}))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for name, version in (("orders", 2), ("users", 1), ("", 0)):
        store = SnapshotStore(disk, machine_name=name, machine_version=version)
        with pytest.raises(NoValidSnapshotError) as info:
            await store.load_latest()
        message = str(info.value)
        assert "state machine mismatch" in message
        assert "'orders' version 1" in message and f"{name!r} version {version}" in message
        assert info.value.path == "mem:/snapshots"
        (entry,) = info.value.invalid
        assert entry.op == 3 and not entry.valid
        assert store.oldest_retained_op is None and store.latest_op is None
    assert any("state machine mismatch" in r.getMessage() for r in caplog.records)


async def test_all_invalid_raises_instead_of_returning_none() -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(1, "a"))
    await store.persist(Snapshot(2, "b"))
    for op in (1, 2):
        damaged = bytearray(content(disk, snapshot_name(op)))
        damaged[-1] ^= 0x01
        put(disk, snapshot_name(op), bytes(damaged))
    fresh = SnapshotStore(disk)
    with pytest.raises(NoValidSnapshotError) as info:
        await fresh.load_latest()
    assert [i.op for i in info.value.invalid] == [2, 1]
    assert all(i.reason == "bad checksum" for i in info.value.invalid)
    assert fresh.oldest_retained_op is None


async def test_a_foreign_file_is_invalid_and_other_names_are_ignored() -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(4, "four"))
    put(disk, snapshot_name(7), b"PK\x03\x04 a zip file, not a snapshot at all")
    put(disk, "notes.txt", b"hello")
    put(disk, "7.snapshot", b"not 20 digits")
    fresh = SnapshotStore(disk)
    assert await fresh.load_latest() == Snapshot(4, "four")
    assert [(i.op, i.valid) for i in fresh.list()] == [(7, False), (4, True)]
    assert fresh.list()[0].reason is not None
    assert fresh.list()[0].reason.startswith("bad magic")  # type: ignore[union-attr]
    assert "notes.txt" in snapshot_files(disk)


async def test_a_renamed_snapshot_is_refused_by_its_op() -> None:
    disk = new_disk()
    await SnapshotStore(disk).persist(Snapshot(4, "four"))
    put(disk, snapshot_name(8), content(disk, snapshot_name(4)))
    fresh = SnapshotStore(disk)
    assert await fresh.load_latest() == Snapshot(4, "four")
    reason = fresh.list()[0].reason
    assert reason is not None and reason.startswith("op mismatch")


@pytest.mark.parametrize("keep", [1, 2, 3])
async def test_retention_keeps_the_newest_n(keep: int) -> None:
    disk = new_disk()
    store = SnapshotStore(disk, keep=keep)
    ops = [3, 7, 8, 20, 21]
    for i, op in enumerate(ops, start=1):
        await store.persist(Snapshot(op, {"op": op}))
        expected = ops[:i][-keep:]
        assert [info.op for info in store.list()] == sorted(expected, reverse=True)
        assert snapshot_files(disk) == [snapshot_name(o) for o in sorted(expected)]
        assert store.oldest_retained_op == expected[0]
        assert store.latest_op == op
    fresh = SnapshotStore(disk, keep=keep)
    await fresh.open()
    assert fresh.oldest_retained_op == ops[-keep:][0]


async def test_oldest_retained_op_counts_only_valid_snapshots() -> None:
    disk = new_disk()
    store = SnapshotStore(disk, keep=2)
    await store.persist(Snapshot(5, "five"))
    await store.persist(Snapshot(9, "nine"))
    damaged = bytearray(content(disk, snapshot_name(5)))
    damaged[40] ^= 0x80
    put(disk, snapshot_name(5), bytes(damaged))
    fresh = SnapshotStore(disk, keep=2)
    await fresh.open()
    assert fresh.oldest_retained_op == 9
    assert [(i.op, i.valid) for i in fresh.list()] == [(9, True), (5, False)]
    # The next persist keeps two valid ones (9, 12) and deletes the invalid 5.
    await fresh.persist(Snapshot(12, "twelve"))
    assert snapshot_files(disk) == [snapshot_name(9), snapshot_name(12)]
    assert fresh.oldest_retained_op == 9


async def test_invalid_file_newer_than_the_kept_ones_stays_for_inspection() -> None:
    disk = new_disk()
    store = SnapshotStore(disk, keep=1)
    await store.persist(Snapshot(5, "five"))
    put(disk, snapshot_name(50), b"garbage")
    fresh = SnapshotStore(disk, keep=1)
    await fresh.persist(Snapshot(6, "six"))  # newer than the newest VALID one
    assert snapshot_files(disk) == [snapshot_name(6), snapshot_name(50)]
    assert await fresh.load_latest() == Snapshot(6, "six")
    assert [i.op for i in fresh.last_load_skipped] == [50]


async def test_failed_delete_warns_and_is_retried_by_the_next_persist(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = new_disk()
    store = SnapshotStore(disk, keep=1)
    await store.persist(Snapshot(1, "one"))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    fail_nth(disk, "unlink")
    info = await store.persist(Snapshot(2, "two"))  # the persist itself succeeds
    assert info.op == 2
    assert any(snapshot_name(1) in r.getMessage() for r in caplog.records)
    assert snapshot_files(disk) == [snapshot_name(1), snapshot_name(2)]
    assert [i.op for i in store.list()] == [2, 1]
    assert store.oldest_retained_op == 1  # still on disk: still retained
    disk.plan.clear()
    await store.persist(Snapshot(3, "three"))
    assert snapshot_files(disk) == [snapshot_name(3)]
    assert store.oldest_retained_op == 3


async def test_failed_dirsync_after_delete_keeps_the_op_retained_until_synced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = new_disk()
    store = SnapshotStore(disk, keep=1)
    await store.persist(Snapshot(1, "one"))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    fail_nth(disk, "dir_sync", 2)  # the one after the unlink
    await store.persist(Snapshot(2, "two"))
    assert any("may reappear" in r.getMessage() for r in caplog.records)
    assert snapshot_files(disk) == [snapshot_name(2)]
    assert [i.op for i in store.list()] == [2]
    # The unlink is not durable: after a power loss the old snapshot is back,
    # so the journal must still reach back to it.
    assert store.oldest_retained_op == 1
    back = durable_only(disk)
    assert snapshot_name(1) in names(back)
    assert snapshot_name(1) in names(disk, durable=True)
    disk.plan.clear()
    await store.persist(Snapshot(3, "three"))
    assert store.oldest_retained_op == 3


async def test_a_dirsync_failure_allows_persisting_the_same_op_again() -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(1, "one"))
    fail_nth(disk, "dir_sync")
    with pytest.raises(SnapshotError):
        await store.persist(Snapshot(2, "two"))
    disk.plan.clear()
    await store.persist(Snapshot(2, "two"))
    with pytest.raises(InvalidSnapshotOpError):
        await store.persist(Snapshot(2, "two"))


async def test_open_is_idempotent_and_lazy(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "never-touched")
    assert not (tmp_path / "never-touched").exists()  # the constructor does no I/O
    await store.open()
    await store.open()
    assert (tmp_path / "never-touched" / "snapshots").is_dir()


async def test_closed_store_refuses_use() -> None:
    async with SnapshotStore(MemoryDirectory()) as store:
        await store.persist(Snapshot(1, "x"))
    await store.aclose()
    with pytest.raises(ClosedError):
        await store.persist(Snapshot(2, "y"))
    with pytest.raises(ClosedError):
        await store.load_latest()


@pytest.mark.parametrize(
    "kwargs",
    [{"keep": 0}, {"keep": True}, {"machine_version": -1}, {"machine_version": 2**32}],
)
def test_bad_constructor_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SnapshotStore(MemoryDirectory(), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SnapshotStore(MemoryDirectory(), machine_name="x" * 1025)


async def test_loads_interleaved_with_persists_see_whole_snapshots() -> None:
    disk = MemoryDirectory()
    store = SnapshotStore(disk, keep=10)
    seen: list[int] = []

    async def persister() -> None:
        for op in range(1, 6):
            await store.persist(Snapshot(op, {"op": op}))

    async def loader() -> None:
        for _ in range(10):
            snapshot = await store.load_latest()
            if snapshot is not None:
                assert snapshot.state == {"op": snapshot.op}
                seen.append(snapshot.op)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(persister)
        nursery.start_soon(loader)
    assert [i.op for i in store.list()] == [5, 4, 3, 2, 1]
    assert seen == sorted(seen)


async def test_persisting_over_an_invalid_file_of_the_same_op_replaces_it() -> None:
    disk = new_disk()
    store = SnapshotStore(disk)
    await store.persist(Snapshot(5, "five"))
    put(disk, snapshot_name(9), b"garbage")
    fresh = SnapshotStore(disk)
    await fresh.persist(Snapshot(9, "nine"))
    assert [(i.op, i.valid) for i in fresh.list()] == [(9, True), (5, True)]
    assert await SnapshotStore(disk).load_latest() == Snapshot(9, "nine")


@given(
    gaps=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    keep=st.integers(1, 4),
    reopen_every=st.integers(1, 5),
)
def test_retention_matches_a_model_across_reopens(
    gaps: list[int], keep: int, reopen_every: int
) -> None:
    async def scenario() -> None:
        disk = MemoryDirectory()
        store = SnapshotStore(disk, keep=keep)
        op = 0
        persisted: list[int] = []
        for i, gap in enumerate(gaps):
            op += gap
            await store.persist(Snapshot(op, {"op": op}))
            persisted.append(op)
            model = sorted(persisted[-keep:], reverse=True)
            assert [info.op for info in store.list()] == model
            assert store.oldest_retained_op == model[-1]
            assert store.latest_op == op
            if i % reopen_every == 0:
                store = SnapshotStore(disk, keep=keep)
                assert await store.load_latest() == Snapshot(op, {"op": op})
                assert [info.op for info in store.list()] == model

    trio.run(scenario)
