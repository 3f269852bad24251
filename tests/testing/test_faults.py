"""The fault-injecting directory: pass-through, countdowns, path filters,
skips, gates that fail loudly, and counts."""

from __future__ import annotations

import errno

import pytest
import trio

from trio_replica.storage import Directory, MemoryDirectory, run_io
from trio_replica.testing import CountingDirectory, FaultyDirectory, ProcessKilled, SimulatedDisk


def test_passes_through_and_wraps_down_the_tree() -> None:
    root = CountingDirectory(MemoryDirectory())
    assert isinstance(root, Directory)
    sub = root.subdir("wal", create=True)
    assert isinstance(sub, CountingDirectory)  # wrapping continues into subdirectories
    f = sub.open("a", create=True)
    f.append(b"xyz")
    f.sync()
    assert f.read_at(0, 3) == b"xyz" and f.size() == 3
    assert root.file_syncs == 1 and root.plan.calls[-1] == ("file_sync", sub.path_of("a"))
    sub.rename("a", "b")
    sub.sync()
    assert root.subdir("wal").listdir() == ["b"] and root.is_dir("wal")
    assert root.dir_syncs == 1
    assert not root.blocking
    assert [op for op, _ in root.plan.calls] == [
        "create",
        "file_write",
        "file_sync",
        "rename",
        "dir_sync",
    ]


def test_countdown_then_a_number_of_failures() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    f = disk.open("a", create=True)
    rule = disk.plan.fail("file_sync", after=2, times=2)
    f.sync()
    f.sync()
    for _ in range(2):
        with pytest.raises(OSError) as failed:
            f.sync()
        assert failed.value.errno == errno.EIO and disk.path_of("a") in str(failed.value)
    f.sync()  # the rule is spent
    assert rule.hits == 2 and disk.plan.failures == 2


def test_path_filter_matches_a_suffix_or_a_directory() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    disk.plan.fail("create", where=".tmp", errno=errno.ENOSPC)
    disk.plan.fail("unlink", where="wal")
    disk.open("x.snapshot", create=True)
    with pytest.raises(OSError) as full:
        disk.open("x.snapshot.tmp", create=True)
    assert full.value.errno == errno.ENOSPC
    wal = disk.subdir("wal", create=True)
    wal.open("1.wal", create=True)
    with pytest.raises(OSError):
        wal.unlink("1.wal")
    disk.unlink("x.snapshot")  # not under wal/
    with disk.plan.failing("dir_sync", where="wal"):
        with pytest.raises(OSError):
            wal.sync()
        disk.sync()
    wal.sync()


def test_armed_rule_acts_only_after_its_trigger() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    wal = disk.subdir("wal", create=True)
    wal.open("1.wal", create=True)
    disk.plan.fail("dir_sync", where="wal", armed_by="unlink")
    wal.sync()  # no unlink yet
    wal.unlink("1.wal")
    with pytest.raises(OSError):
        wal.sync()


async def test_skip_claims_success_without_doing_it() -> None:
    disk = SimulatedDisk(seed=5)
    broken = FaultyDirectory(disk)
    broken.plan.skip("file_sync", where="wal")
    f = broken.subdir("wal", create=True).open("1.wal", create=True)
    f.append(b"data")
    f.sync()  # skipped: nothing is durable
    disk.subdir("wal").sync()
    after = disk.crash()
    assert after.subdir("wal").open("1.wal").size() == 0
    assert broken.plan.counts["file_sync"] == 1


async def test_gate_holds_a_call_until_opened() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    f = disk.open("a", create=True)
    gate = disk.plan.gate("file_sync")
    assert disk.blocking  # held calls must run in a worker thread
    done = trio.Event()

    async def sync() -> None:
        await run_io(disk, f.sync)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync)
        with trio.fail_after(10):
            await gate.reached.wait()
        await trio.sleep(0.01)
        assert not done.is_set()
        gate.open()
    assert done.is_set()


async def test_a_gate_nobody_opens_fails_loudly() -> None:
    disk = FaultyDirectory(MemoryDirectory())
    f = disk.open("a", create=True)
    disk.plan.gate("file_sync", timeout=0.05)
    with pytest.raises(TimeoutError, match="gate on file_sync"):
        await run_io(disk, f.sync)


def test_unknown_operation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        FaultyDirectory(MemoryDirectory()).plan.fail("fsync")  # type: ignore[arg-type]


def test_kill_stops_the_process_at_the_chosen_call_leaving_half_a_write() -> None:
    disk = SimulatedDisk(seed=9)
    faulty = FaultyDirectory(disk)
    f = faulty.open("a", create=True)
    faulty.plan.kill(after=1, torn=True)
    f.write_at(0, b"1234")  # the one call that passes
    with pytest.raises(ProcessKilled) as killed:
        f.write_at(4, b"abcdefgh")
    assert killed.value.operation == "file_write" and killed.value.torn
    assert disk.snapshot_bytes()["a"] == b"1234abcd"  # half of it landed
    f.sync()  # killed once: later calls run (the test decides what to look at)
    assert faulty.plan.counts["file_write"] == 1  # the killed call was never performed whole


def test_largest_read_is_recorded() -> None:
    faulty = FaultyDirectory(MemoryDirectory())
    f = faulty.open("a", create=True)
    f.write_at(0, b"x" * 10)
    f.read_at(0, 3)
    f.read_at(2, 7)
    assert faulty.plan.largest_read == 7
