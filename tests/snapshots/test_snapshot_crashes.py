"""Crashes and I/O errors at every stage of a persist (invariant 6, docs/invariants.md).

A persist is stopped after each of its steps (the process dies there; a
write can be left half done), and what a restart would find is rebuilt both
as a process crash and as power losses that keep only what was fsynced (with
or without half of the unsynced data, with or without unsynced directory
entries). A new store on each of those directories must load exactly the
previous or the new snapshot, never a broken one, and never a temp file.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from recording_directory import DataView, ProcessDied, RecordingDirectory, fail_nth
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

MACHINE = {"machine_name": "kv", "machine_version": 3}
STATE_1 = {"op": 1, "keys": {"a": 1}}
STATE_5 = {"op": 5, "keys": {"a": 1, "b": [2, 3]}, "blob": b"\x00" * 100}
STATE_9 = {"op": 9, "keys": {"a": 1, "b": [2, 3], "c": -(2**80)}, "blob": bytes(range(256)) * 8}

VIEWS: list[tuple[Literal["volatile", "durable"], DataView]] = [
    ("volatile", "volatile"),  # process crash: the kernel kept everything
    ("durable", "synced"),  # power loss: only what was fsynced
    ("durable", "torn"),
    ("durable", "volatile"),
    ("volatile", "synced"),  # entries reached the disk, unsynced data did not
    ("volatile", "torn"),
]


def store_on(directory: RecordingDirectory) -> SnapshotStore:
    return SnapshotStore(directory, keep=2, **MACHINE)


async def base_disk() -> RecordingDirectory:
    """A data directory with durable snapshots at ops 1 and 5."""
    disk = RecordingDirectory()
    store = store_on(disk)
    await store.persist(Snapshot(1, STATE_1))
    await store.persist(Snapshot(5, STATE_5))
    return disk.after_crash(entries="durable", data="synced")


async def opened(disk: RecordingDirectory) -> tuple[SnapshotStore, int]:
    store = store_on(disk)
    await store.open()
    return store, len(disk.recorder.steps)


async def full_persist_steps() -> list[str]:
    disk = await base_disk()
    store, start = await opened(disk)
    await store.persist(Snapshot(9, STATE_9))
    return disk.recorder.steps[start:]


async def test_persist_steps_are_write_fsync_rename_dirsync_then_retention() -> None:
    steps = await full_persist_steps()
    tmp, final, old = temp_name(9), snapshot_name(9), snapshot_name(1)
    assert [s.split(" ")[0] for s in steps] == [
        "create",
        "write",
        "write",
        "fsync",
        "rename",
        "dirsync",
        "unlink",
        "dirsync",
    ]
    assert steps[0] == f"create {tmp}"
    assert steps[3] == f"fsync {tmp}"
    assert steps[4] == f"rename {tmp} -> {final}"
    assert steps[5] == "dirsync rec:/snapshots"
    assert steps[6] == f"unlink {old}"


def check_loaded(snapshot: Snapshot | None, allowed: dict[int, Any]) -> int:
    assert snapshot is not None
    assert snapshot.op in allowed
    assert same(snapshot.state, allowed[snapshot.op])
    return snapshot.op


@pytest.mark.parametrize("tear", [False, True], ids=["clean-stop", "torn-write"])
async def test_crash_after_every_step_loads_previous_or_new(tear: bool) -> None:
    steps = await full_persist_steps()
    rename_at = next(i for i, s in enumerate(steps) if s.startswith("rename"))
    dirsync_at = rename_at + 1
    body_write_at = 2
    checked = 0
    for k in range(len(steps) + 1):
        disk = await base_disk()
        store, start = await opened(disk)
        disk.recorder.crash_at = start + k
        disk.recorder.tear_on_crash = tear
        if k < len(steps):
            with pytest.raises(ProcessDied):
                await store.persist(Snapshot(9, STATE_9))
        else:
            await store.persist(Snapshot(9, STATE_9))
        snapdir = disk.subdirs["snapshots"]

        # The states this test claims to produce really are there.
        if tear and k == body_write_at:
            partial = snapdir.file_bytes(temp_name(9))
            assert len(partial) > 0
            full_size = sum(int(s.rsplit("+", 1)[1]) for s in steps if s.startswith("write"))
            assert len(partial) < full_size
        if k == dirsync_at:
            renamed = snapdir.entries
            assert snapshot_name(9) in renamed and temp_name(9) not in renamed
            # Neither the temp file's creation nor the rename is durable yet.
            assert set(snapdir.durable_entries) == {snapshot_name(1), snapshot_name(5)}

        for entries, data in VIEWS:
            after = disk.after_crash(entries=entries, data=data)
            restarted = store_on(after)
            loaded = check_loaded(await restarted.load_latest(), {5: STATE_5, 9: STATE_9})
            names = after.subdirs["snapshots"].listdir()
            assert not [n for n in names if n.endswith(".tmp")], names
            if k <= rename_at:
                # Not renamed yet: the temp file (complete or not) is never loaded.
                assert loaded == 5, (k, entries, data)
            if k > dirsync_at:
                # Renamed and the directory fsynced: durable in every view.
                assert loaded == 9, (k, entries, data)
            if (entries, data) == ("volatile", "volatile") and k > rename_at:
                assert loaded == 9
            infos = restarted.list()
            assert infos[0].op == loaded and infos[0].valid
            retained = restarted.oldest_retained_op
            assert retained is not None and retained <= loaded
            checked += 1
    assert checked == (len(steps) + 1) * len(VIEWS)


STAGES = [
    # (step kind, which occurrence, error class, retryable)
    ("create", 1, SnapshotWriteError, False),
    ("write", 1, SnapshotWriteError, False),
    ("write", 2, SnapshotWriteError, False),
    ("fsync", 1, SnapshotSyncError, False),
    ("rename", 1, SnapshotRenameError, True),
    ("dirsync", 1, SnapshotDirSyncError, False),
]


@pytest.mark.parametrize(("kind", "nth", "error_class", "retryable"), STAGES)
async def test_each_stage_error_maps_to_its_class_and_can_be_retried(
    kind: str, nth: int, error_class: type[SnapshotError], retryable: bool
) -> None:
    disk = await base_disk()
    store, _ = await opened(disk)
    snapdir = disk.subdirs["snapshots"]
    disk.recorder.should_fail = fail_nth(kind, nth)
    with pytest.raises(SnapshotError) as info:
        await store.persist(Snapshot(9, STATE_9))
    error = info.value
    assert type(error) is error_class
    assert error.retryable is retryable
    assert error.op == 9
    assert isinstance(error.__cause__, OSError)
    if kind == "dirsync":
        assert error.path == snapdir.path
    else:
        assert error.path == snapdir.path_of(temp_name(9))

    names = snapdir.listdir()
    if kind == "rename":
        # Retryable: the complete, fsynced temp file stays.
        assert temp_name(9) in names
        assert snapdir.entries[temp_name(9)].synced == snapdir.file_bytes(temp_name(9))
    else:
        assert temp_name(9) not in names
    in_place = kind == "dirsync"
    assert (snapshot_name(9) in names) is in_place
    assert store.latest_op == (9 if in_place else 5)
    # The old snapshots are untouched: retention runs only after success.
    assert snapshot_name(1) in names and snapshot_name(5) in names

    # A restart right now loads the previous snapshot, or the new one if it
    # was already renamed into place.
    restarted = store_on(disk.after_crash())
    check_loaded(await restarted.load_latest(), {5: STATE_5} if not in_place else {9: STATE_9})

    # Retry: the same persist again, with the fault gone.
    disk.recorder.should_fail = None
    start = len(disk.recorder.steps)
    await store.persist(Snapshot(9, STATE_9))
    kinds = [s.split(" ")[0] for s in disk.recorder.steps[start:]]
    if retryable:
        # Retried as is: only the rename (and what follows) is redone.
        assert kinds == ["rename", "dirsync", "unlink", "dirsync"]
    else:
        assert kinds[:6] == ["create", "write", "write", "fsync", "rename", "dirsync"]
    assert store.latest_op == 9
    assert [i.op for i in store.list()] == [9, 5]
    assert temp_name(9) not in snapdir.listdir()
    for entries, data in VIEWS:
        restarted = store_on(disk.after_crash(entries=entries, data=data))
        check_loaded(await restarted.load_latest(), {9: STATE_9})


async def test_rename_retry_with_a_different_state_rewrites_the_temp_file() -> None:
    disk = await base_disk()
    store, _ = await opened(disk)
    disk.recorder.should_fail = fail_nth("rename")
    with pytest.raises(SnapshotRenameError):
        await store.persist(Snapshot(9, STATE_9))
    disk.recorder.should_fail = None
    start = len(disk.recorder.steps)
    other = {"something": "else"}
    await store.persist(Snapshot(9, other))
    kinds = [s.split(" ")[0] for s in disk.recorder.steps[start:]]
    assert kinds[:7] == ["unlink", "create", "write", "write", "fsync", "rename", "dirsync"]
    loaded = await store_on(disk.after_crash()).load_latest()
    assert loaded == Snapshot(9, other)


async def test_a_newer_persist_after_a_failed_rename_discards_the_stale_temp() -> None:
    disk = await base_disk()
    store, _ = await opened(disk)
    disk.recorder.should_fail = fail_nth("rename")
    with pytest.raises(SnapshotRenameError):
        await store.persist(Snapshot(9, STATE_9))
    disk.recorder.should_fail = None
    await store.persist(Snapshot(12, {"op": 12}))
    names = disk.subdirs["snapshots"].listdir()
    assert names == [snapshot_name(5), snapshot_name(12)]


async def test_failed_write_leaves_no_temp_even_if_torn() -> None:
    # The write fails after half of the body reached the file.
    disk = await base_disk()
    store, _ = await opened(disk)
    disk.recorder.should_fail = fail_nth("write", 2)
    with pytest.raises(SnapshotWriteError):
        await store.persist(Snapshot(9, STATE_9))
    assert [n for n in disk.subdirs["snapshots"].listdir() if n.endswith(".tmp")] == []


async def test_leftover_temp_files_are_removed_on_open_and_never_loaded() -> None:
    disk = await base_disk()
    snapdir = disk.subdirs["snapshots"]
    # A complete, valid snapshot body under a temp name: still never loaded.
    snapdir.set_file_bytes(temp_name(9), snapdir.file_bytes(snapshot_name(5)))
    snapdir.set_file_bytes(temp_name(11), b"half a snapsh")
    store = store_on(disk)
    loaded = await store.load_latest()
    assert loaded is not None and loaded.op == 5
    assert snapdir.listdir() == [snapshot_name(1), snapshot_name(5)]
    assert snapdir.durable_entries.keys() == {snapshot_name(1), snapshot_name(5)}
