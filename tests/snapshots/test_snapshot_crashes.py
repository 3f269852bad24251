"""Crashes and I/O errors at every stage of a persist (invariant 6, docs/invariants.md).

A persist is stopped after each of its steps (the process is killed there; a
write can be left half done), and what a restart would find is rebuilt both
as a process crash (the page cache survives) and as every power-loss state
the simulated disk enumerates (only what was fsynced, torn and reordered
writes, directory entries lost or kept). A new store on each of those
directories must load exactly the previous or the new snapshot, never a
broken one, and never a temp file.
"""

from __future__ import annotations

from typing import Any

import pytest
from snapshot_disk import (
    content,
    data_synced,
    durable_only,
    every_restart,
    fail_nth,
    names,
    new_disk,
    operations,
    put,
    restarted,
)
from snapshot_values import same

from trio_replica.coordinator import (
    Snapshot,
    SnapshotDirSyncError,
    SnapshotError,
    SnapshotRenameError,
    SnapshotStore,
    SnapshotSyncError,
    SnapshotWriteError,
)
from trio_replica.coordinator.snapshot_format import snapshot_name, temp_name
from trio_replica.testing import FaultyDirectory, ProcessKilled
from trio_replica.testing.faults import FaultOperation

MACHINE = {"machine_name": "kv", "machine_version": 3}
STATE_1 = {"op": 1, "keys": {"a": 1}}
STATE_5 = {"op": 5, "keys": {"a": 1, "b": [2, 3]}, "blob": b"\x00" * 100}
STATE_9 = {"op": 9, "keys": {"a": 1, "b": [2, 3], "c": -(2**80)}, "blob": bytes(range(256)) * 8}


def store_on(directory: FaultyDirectory) -> SnapshotStore:
    return SnapshotStore(directory, keep=2, **MACHINE)


async def base_disk() -> FaultyDirectory:
    """A data directory with durable snapshots at ops 1 and 5."""
    disk = new_disk()
    store = store_on(disk)
    await store.persist(Snapshot(1, STATE_1))
    await store.persist(Snapshot(5, STATE_5))
    return durable_only(disk)


async def opened(disk: FaultyDirectory) -> tuple[SnapshotStore, int]:
    store = store_on(disk)
    await store.open()
    return store, len(disk.plan.calls)


async def full_persist_calls() -> list[tuple[str, str]]:
    disk = await base_disk()
    store, start = await opened(disk)
    await store.persist(Snapshot(9, STATE_9))
    return disk.plan.calls[start:]


async def full_file_size() -> int:
    disk = await base_disk()
    await store_on(disk).persist(Snapshot(9, STATE_9))
    return len(content(disk, snapshot_name(9)))


async def test_persist_steps_are_write_fsync_rename_dirsync_then_retention() -> None:
    calls = await full_persist_calls()
    snapdir = (await base_disk()).subdir("snapshots")
    tmp, old = snapdir.path_of(temp_name(9)), snapdir.path_of(snapshot_name(1))
    assert [operation for operation, _ in calls] == [
        "create",
        "file_write",
        "file_write",
        "file_sync",
        "rename",
        "dir_sync",
        "unlink",
        "dir_sync",
    ]
    assert calls[0] == ("create", tmp)
    assert calls[3] == ("file_sync", tmp)
    assert calls[4] == ("rename", tmp)  # to the final name:
    after = await base_disk()
    await store_on(after).persist(Snapshot(9, STATE_9))
    assert snapshot_name(9) in names(after) and temp_name(9) not in names(after)
    assert calls[5] == ("dir_sync", snapdir.path)
    assert calls[6] == ("unlink", old)


def check_loaded(snapshot: Snapshot | None, allowed: dict[int, Any]) -> int:
    assert snapshot is not None
    assert snapshot.op in allowed
    assert same(snapshot.state, allowed[snapshot.op])
    return snapshot.op


@pytest.mark.parametrize("tear", [False, True], ids=["clean-stop", "torn-write"])
async def test_crash_after_every_step_loads_previous_or_new(tear: bool) -> None:
    calls = await full_persist_calls()
    kinds = [operation for operation, _ in calls]
    rename_at = kinds.index("rename")
    dirsync_at = rename_at + 1
    body_write_at = 2
    checked = 0
    for k in range(len(calls) + 1):
        disk = await base_disk()
        store, _ = await opened(disk)
        if k < len(calls):
            disk.plan.kill(after=k, torn=tear)
            with pytest.raises(ProcessKilled):
                await store.persist(Snapshot(9, STATE_9))
        else:
            await store.persist(Snapshot(9, STATE_9))

        # The states this test claims to produce really are there.
        if tear and k == body_write_at:
            partial = content(disk, temp_name(9))
            assert 0 < len(partial) < await full_file_size()
        if k == dirsync_at:
            assert snapshot_name(9) in names(disk) and temp_name(9) not in names(disk)
            # Neither the temp file's creation nor the rename is durable yet.
            assert names(disk, durable=True) == [snapshot_name(1), snapshot_name(5)]

        views = every_restart(disk)
        for index, after in enumerate(views):
            restarted_store = store_on(after)
            loaded = check_loaded(await restarted_store.load_latest(), {5: STATE_5, 9: STATE_9})
            left = after.subdir("snapshots").listdir()
            assert not [n for n in left if n.endswith(".tmp")], left
            if k <= rename_at:
                # Not renamed yet: the temp file (complete or not) is never loaded.
                assert loaded == 5, (k, index)
            if k > dirsync_at:
                # Renamed and the directory fsynced: durable in every state.
                assert loaded == 9, (k, index)
            if index == 0 and k > rename_at:
                assert loaded == 9  # a process crash keeps the rename
            infos = restarted_store.list()
            assert infos[0].op == loaded and infos[0].valid
            retained = restarted_store.oldest_retained_op
            assert retained is not None and retained <= loaded
            checked += 1
        assert len(views) >= 2
    assert checked > 2 * (len(calls) + 1)


STAGES: list[tuple[FaultOperation, int, type[SnapshotError], bool]] = [
    # (operation, which occurrence, error class, retryable)
    ("create", 1, SnapshotWriteError, False),
    ("file_write", 1, SnapshotWriteError, False),
    ("file_write", 2, SnapshotWriteError, False),
    ("file_sync", 1, SnapshotSyncError, False),
    ("rename", 1, SnapshotRenameError, True),
    ("dir_sync", 1, SnapshotDirSyncError, False),
]


@pytest.mark.parametrize(("kind", "nth", "error_class", "retryable"), STAGES)
async def test_each_stage_error_maps_to_its_class_and_can_be_retried(
    kind: FaultOperation, nth: int, error_class: type[SnapshotError], retryable: bool
) -> None:
    disk = await base_disk()
    store, _ = await opened(disk)
    snapdir = disk.subdir("snapshots")
    fail_nth(disk, kind, nth)
    with pytest.raises(SnapshotError) as info:
        await store.persist(Snapshot(9, STATE_9))
    error = info.value
    assert type(error) is error_class
    assert error.retryable is retryable
    assert error.op == 9
    assert isinstance(error.__cause__, OSError)
    if kind == "dir_sync":
        assert error.path == snapdir.path
    else:
        assert error.path == snapdir.path_of(temp_name(9))

    left = snapdir.listdir()
    if kind == "rename":
        # Retryable: the complete, fsynced temp file stays.
        assert temp_name(9) in left
        assert data_synced(disk, temp_name(9))
        assert len(content(disk, temp_name(9))) == await full_file_size()
    else:
        assert temp_name(9) not in left
    in_place = kind == "dir_sync"
    assert (snapshot_name(9) in left) is in_place
    assert store.latest_op == (9 if in_place else 5)
    # The old snapshots are untouched: retention runs only after success.
    assert snapshot_name(1) in left and snapshot_name(5) in left

    # A restart right now loads the previous snapshot, or the new one if it
    # was already renamed into place.
    after = store_on(restarted(disk))
    check_loaded(await after.load_latest(), {5: STATE_5} if not in_place else {9: STATE_9})

    # Retry: the same persist again, with the fault gone.
    disk.plan.clear()
    start = len(disk.plan.calls)
    await store.persist(Snapshot(9, STATE_9))
    kinds = operations(disk, start)
    if retryable:
        # Retried as is: only the rename (and what follows) is redone.
        assert kinds == ["rename", "dir_sync", "unlink", "dir_sync"]
    else:
        assert kinds[:6] == [
            "create",
            "file_write",
            "file_write",
            "file_sync",
            "rename",
            "dir_sync",
        ]
    assert store.latest_op == 9
    assert [i.op for i in store.list()] == [9, 5]
    assert temp_name(9) not in snapdir.listdir()
    for state in every_restart(disk):
        check_loaded(await store_on(state).load_latest(), {9: STATE_9})


async def test_rename_retry_with_a_different_state_rewrites_the_temp_file() -> None:
    disk = await base_disk()
    store, _ = await opened(disk)
    fail_nth(disk, "rename")
    with pytest.raises(SnapshotRenameError):
        await store.persist(Snapshot(9, STATE_9))
    disk.plan.clear()
    start = len(disk.plan.calls)
    other = {"something": "else"}
    await store.persist(Snapshot(9, other))
    kinds = operations(disk, start)
    assert kinds[:7] == [
        "unlink",
        "create",
        "file_write",
        "file_write",
        "file_sync",
        "rename",
        "dir_sync",
    ]
    loaded = await store_on(restarted(disk)).load_latest()
    assert loaded == Snapshot(9, other)


async def test_a_newer_persist_after_a_failed_rename_discards_the_stale_temp() -> None:
    disk = await base_disk()
    store, _ = await opened(disk)
    fail_nth(disk, "rename")
    with pytest.raises(SnapshotRenameError):
        await store.persist(Snapshot(9, STATE_9))
    disk.plan.clear()
    await store.persist(Snapshot(12, {"op": 12}))
    assert disk.subdir("snapshots").listdir() == [snapshot_name(5), snapshot_name(12)]


async def test_failed_write_leaves_no_temp_even_if_torn() -> None:
    # The write of the body fails.
    disk = await base_disk()
    store, _ = await opened(disk)
    fail_nth(disk, "file_write", 2)
    with pytest.raises(SnapshotWriteError):
        await store.persist(Snapshot(9, STATE_9))
    assert [n for n in disk.subdir("snapshots").listdir() if n.endswith(".tmp")] == []


async def test_leftover_temp_files_are_removed_on_open_and_never_loaded() -> None:
    disk = await base_disk()
    # A complete, valid snapshot body under a temp name: still never loaded.
    put(disk, temp_name(9), content(disk, snapshot_name(5)))
    put(disk, temp_name(11), b"half a snapsh")
    store = store_on(disk)
    loaded = await store.load_latest()
    assert loaded is not None and loaded.op == 5
    assert disk.subdir("snapshots").listdir() == [snapshot_name(1), snapshot_name(5)]
    assert names(disk, durable=True) == [snapshot_name(1), snapshot_name(5)]
