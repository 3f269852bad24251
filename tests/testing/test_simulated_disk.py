"""The SimulatedDisk model: Directory behaviour, crash semantics, faults, determinism."""

from __future__ import annotations

import errno
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_replica.errors import DirectoryLockedError
from trio_replica.storage import Directory, run_io
from trio_replica.testing import Faults, SimulatedDisk, crash_states

# --- the Directory protocol ------------------------------------------------


def test_is_a_non_blocking_directory() -> None:
    disk = SimulatedDisk(seed=1)
    assert isinstance(disk, Directory)
    assert disk.blocking is False
    assert isinstance(disk.subdir("wal", create=True), Directory)
    assert disk.path_of("wal") == "sim:/wal"


def test_file_positional_io_matches_memory_directory() -> None:
    disk = SimulatedDisk(seed=1)
    f = disk.open("a", create=True)
    assert f.append(b"hello") == 0
    assert f.append(b" world") == 5
    f.write_at(0, b"J")
    assert f.read_at(0, 100) == b"Jello world"
    f.write_at(20, b"x")
    assert f.size() == 21
    assert f.read_at(11, 10) == bytes(9) + b"x"
    f.truncate(5)
    assert f.read_at(0, 100) == b"Jello"
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.read_at(0, 1)
    with pytest.raises(FileExistsError):
        disk.open("a", create=True)
    with pytest.raises(FileNotFoundError):
        disk.open("missing")
    with pytest.raises(ValueError, match="invalid file name"):
        disk.open("../x", create=True)


def test_rename_unlink_subdir_and_lock() -> None:
    disk = SimulatedDisk(seed=1)
    disk.open("a", create=True).append(b"A")
    disk.open("b", create=True).append(b"B")
    disk.rename("b", "a")
    assert disk.listdir() == ["a"]
    assert disk.open("a").read_at(0, 1) == b"B"
    with pytest.raises(FileNotFoundError):
        disk.subdir("sub")
    sub = disk.subdir("sub", create=True)
    assert disk.is_dir("sub") and not disk.is_dir("a")
    sub.open("x", create=True)
    assert disk.subdir("sub").listdir() == ["x"]
    with pytest.raises(NotADirectoryError):
        disk.subdir("a")
    disk.unlink("a")
    assert not disk.exists("a")
    lock = disk.lock("LOCK")
    with pytest.raises(DirectoryLockedError):
        disk.lock("LOCK")
    lock.release()
    lock.release()
    disk.lock("LOCK").release()


async def test_run_io_runs_inline() -> None:
    disk = SimulatedDisk(seed=1)
    f = disk.open("a", create=True)
    assert await run_io(disk, lambda: f.append(b"xyz")) == 0
    assert disk.log[-1].kind == "write"


# --- crash semantics: exact sets for small cases -------------------------------


def _contents(disk: SimulatedDisk, **kwargs: int) -> list[dict[str, bytes]]:
    return [s.snapshot_bytes() for s in crash_states(disk, **kwargs)]


def test_unsynced_append_is_lost_kept_zeroed_or_torn_at_sectors() -> None:
    disk = SimulatedDisk(seed=3, sector_size=4)
    f = disk.open("a", create=True)
    f.append(b"base")
    f.sync()
    disk.sync()
    f.append(b"ABCDEFGH")  # sectors [4, 8) and [8, 12): one boundary inside, at 8
    states = [s["a"] for s in _contents(disk)]
    assert b"base" in states  # lost
    assert b"baseABCDEFGH" in states  # kept
    assert b"base" + bytes(8) in states  # size grew, data not landed
    assert b"baseABCD" in states  # torn at the sector boundary, rest cut
    assert b"baseABCD" + bytes(4) in states  # torn, rest zeros
    assert b"base" + bytes(4) + b"EFGH" in states  # later sector landed first
    garbage = [s for s in states if s.startswith(b"baseABCD") and len(s) == 12]
    assert any(s[8:] not in (b"EFGH", bytes(4)) for s in garbage)  # torn, rest garbage
    early_garbage = [s for s in states if s.endswith(b"EFGH") and len(s) == 12]
    assert any(s[4:8] not in (b"ABCD", bytes(4)) for s in early_garbage)  # torn before
    for s in states:
        assert s.startswith(b"base")  # durable bytes always survive
        assert len(s) in (4, 8, 12)
    assert len(states) == len(set(states)) == 8


def test_no_tear_inside_a_sector() -> None:
    disk = SimulatedDisk(seed=3)  # 512-byte sectors
    f = disk.open("a", create=True)
    disk.sync()
    f.append(b"x" * 100)
    assert sorted(s["a"] for s in _contents(disk)) == sorted([b"", b"x" * 100, bytes(100)])


def test_overwrite_lands_as_a_prefix_or_a_suffix_of_its_sectors() -> None:
    disk = SimulatedDisk(seed=3, sector_size=4)
    f = disk.open("a", create=True)
    f.append(b"oldoldol")
    f.sync()
    disk.sync()
    f.write_at(0, b"NEWNEWNE")
    states = {s["a"] for s in _contents(disk)}
    assert {b"oldoldol", b"NEWNEWNE", b"NEWNldol", b"NEWN" + bytes(4), b"oldoEWNE"} <= states
    assert len(states) == 7  # plus garbage after, and garbage before, the boundary
    for content in states:
        assert len(content) == 8
        assert content[:4] == b"NEWN" or content[4:] == b"EWNE" or content == b"oldoldol"


def test_fsync_makes_data_durable_but_not_the_entry() -> None:
    disk = SimulatedDisk(seed=3)
    f = disk.open("new", create=True)
    f.append(b"data")
    f.sync()
    states = _contents(disk)
    assert {} in states  # the directory entry was never synced
    assert {"new": b"data"} in states
    assert len(states) == 2
    disk.sync()
    assert _contents(disk) == [{"new": b"data"}]


def test_rename_without_directory_sync_can_be_undone() -> None:
    disk = SimulatedDisk(seed=3)
    f = disk.open("snap.tmp", create=True)
    f.append(b"v2")
    f.sync()
    disk.sync()
    disk.rename("snap.tmp", "snap")
    states = _contents(disk)
    assert {"snap.tmp": b"v2"} in states  # undone
    assert {"snap": b"v2"} in states
    assert len(states) == 2  # atomic: never both, never neither
    disk.sync()
    assert _contents(disk) == [{"snap": b"v2"}]


def test_unlink_without_directory_sync_can_be_undone() -> None:
    disk = SimulatedDisk(seed=3)
    disk.open("a", create=True).append(b"A")
    disk.open("b", create=True).append(b"B")
    for name in ("a", "b"):
        disk.open(name).sync()
    disk.sync()
    disk.unlink("a")
    disk.unlink("b")
    # Directory operations persist in order: "b gone, a kept" is impossible.
    assert sorted(map(sorted, _contents(disk))) == [[], ["a", "b"], ["b"]]
    reordering = SimulatedDisk(seed=3, reorder_directory_ops=True)
    for name in ("a", "b"):
        reordering.open(name, create=True).sync()
    reordering.sync()
    reordering.unlink("a")
    reordering.unlink("b")
    assert sorted(map(sorted, _contents(reordering))) == [[], ["a"], ["a", "b"], ["b"]]


def test_subdir_creation_is_durable_and_pending_ops_are_listed() -> None:
    disk = SimulatedDisk(seed=3)
    wal = disk.subdir("wal", create=True)
    assert disk.operations_since_sync == 0
    f = wal.open("1.wal", create=True)
    f.append(b"x")
    kinds = [op.kind for op in disk.pending_operations()]
    assert kinds == ["create", "write"]
    for state in crash_states(disk):
        assert state.is_dir("wal")


def test_crash_leaves_original_untouched_and_new_disk_fully_durable() -> None:
    disk = SimulatedDisk(seed=5)
    f = disk.open("a", create=True)
    f.append(b"x" * 2000)
    before = disk.snapshot_bytes()
    crashed = disk.crash()
    assert disk.snapshot_bytes() == before
    assert crashed.operations_since_sync == 0
    assert crashed.snapshot_bytes() == crashed.snapshot_bytes(durable=True)
    if crashed.exists("a"):
        # Lost, cut at a sector boundary, or whole-sized.
        assert crashed.open("a").size() in (0, 512, 1024, 1536, 2000)


def test_crash_states_bound_and_sampling_are_deterministic() -> None:
    def build(seed: int) -> SimulatedDisk:
        disk = SimulatedDisk(seed=seed, sector_size=16)
        disk.sync()
        for name in ("a", "b", "c"):
            disk.open(name, create=True).append(bytes(range(200)))
        return disk

    disk = build(11)
    assert disk.crash_space().total > 100
    first = [s.digest() for s in crash_states(disk, max_states=20)]
    assert len(first) == 20 == len(set(first))
    assert first == [s.digest() for s in crash_states(build(11), max_states=20)]
    assert first != [s.digest() for s in crash_states(disk, max_states=20, seed=12)]
    # The durable state and the all-kept state are always sampled first.
    assert first[0] == SimulatedDisk().digest()
    assert first[1] == disk.digest()


def test_crash_is_deterministic_by_seed() -> None:
    def run(seed: int) -> list[str]:
        disk = SimulatedDisk(seed=seed, sector_size=8)
        for i in range(5):
            disk.open(f"f{i}", create=True).append(bytes([i]) * 300)
        return [disk.crash().digest() for _ in range(10)]

    assert run(1) == run(1)
    assert run(1) != run(2)


# --- crash semantics: properties -------------------------------------------------

_names = st.sampled_from(["a", "b", "c"])
_ops = st.one_of(
    st.tuples(st.just("create"), _names),
    st.tuples(st.just("append"), _names, st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("write"), _names, st.integers(0, 60), st.binary(min_size=1, max_size=30)),
    st.tuples(st.just("truncate"), _names, st.integers(0, 60)),
    st.tuples(st.just("sync"), _names),
    st.tuples(st.just("rename"), _names, _names),
    st.tuples(st.just("unlink"), _names),
    st.tuples(st.just("dirsync")),
)


def _run_ops(disk: SimulatedDisk, ops: list[tuple[object, ...]]) -> None:
    for op in ops:
        kind = op[0]
        if kind == "dirsync":
            disk.sync()
            continue
        name = str(op[1])
        if kind == "create":
            if not disk.exists(name):
                disk.open(name, create=True)
        elif not disk.exists(name):
            continue
        elif kind == "append":
            disk.open(name).append(bytes(op[2]))  # type: ignore[arg-type]
        elif kind == "write":
            disk.open(name).write_at(int(op[2]), bytes(op[3]))  # type: ignore[call-overload,arg-type]
        elif kind == "truncate":
            disk.open(name).truncate(int(op[2]))  # type: ignore[call-overload]
        elif kind == "sync":
            disk.open(name).sync()
        elif kind == "rename":
            disk.rename(name, str(op[2]))
        elif kind == "unlink":
            disk.unlink(name)


@given(st.lists(_ops, max_size=25), st.lists(_ops, max_size=6), st.integers(0, 2**32))
def test_durable_content_survives_every_crash(
    synced: list[tuple[object, ...]], unsynced: list[tuple[object, ...]], seed: int
) -> None:
    disk = SimulatedDisk(seed=seed, sector_size=8)
    _run_ops(disk, synced)
    for name in disk.listdir():
        disk.open(name).sync()
    disk.sync()
    durable = disk.snapshot_bytes()
    assert durable == disk.snapshot_bytes(durable=True)
    assert [s.snapshot_bytes() for s in crash_states(disk)] == [durable]
    _run_ops(disk, unsynced)
    touched_names = {str(op[1]) for op in unsynced if len(op) > 1} | {
        str(op[2]) for op in unsynced if op[0] == "rename"
    }
    untouched = {n: c for n, c in durable.items() if n not in touched_names}
    states = list(crash_states(disk, max_states=64)) + [disk.crash() for _ in range(3)]
    for state in states:
        got = state.snapshot_bytes()
        # Files no pending operation mentions survive exactly.
        for name, content in untouched.items():
            assert got.get(name) == content
        # Nothing appears from nowhere.
        assert set(got) <= set(durable) | touched_names


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64), st.integers())
def test_unsynced_writes_yield_only_allowed_states(
    base: bytes, extra: bytes, offset_seed: int
) -> None:
    sector = 8
    disk = SimulatedDisk(seed=1, sector_size=sector)
    f = disk.open("f", create=True)
    f.append(base)
    f.sync()
    disk.sync()
    offset = offset_seed % (len(base) + 16)
    f.write_at(offset, extra)
    end = offset + len(extra)
    new = bytearray(base)
    if offset > len(new):
        new.extend(bytes(offset - len(new)))
    new[offset:end] = extra
    states = [s.snapshot_bytes()["f"] for s in crash_states(disk, max_states=500)]
    assert base in states and bytes(new) in states
    first_touched = offset // sector * sector
    for content in states:
        assert len(base) <= len(content) <= max(len(base), end)
        landed = []
        for lo in range(0, len(content), sector):
            got = content[lo : lo + sector]
            old = base[lo : lo + sector].ljust(len(got), b"\0")[: len(got)]
            if lo + sector <= offset or lo >= end:
                # Sectors the write did not touch keep their old bytes (or
                # zeros where the file grew).
                assert got == old
            elif lo >= first_touched:
                wanted = bytes(new[lo : lo + sector])[: len(got)]
                if wanted == old or wanted == bytes(len(wanted)) or len(wanted) < 4:
                    # No evidence either way: the write does not change this
                    # sector, its new bytes are zeros (a torn sector may read
                    # as zeros), or it is a partial sector so short that the
                    # random bytes of a torn sector match it by chance.
                    continue
                landed.append(got == wanted)
        # What landed is a prefix or a suffix of the write's sectors, never a
        # hole in the middle: at most one change between landed and not.
        changes = sum(a != b for a, b in itertools.pairwise(landed))
        assert changes <= 1, landed


# --- faults ------------------------------------------------------------------


def test_fsync_failure_raises_eio_and_the_data_never_becomes_durable() -> None:
    disk = SimulatedDisk(seed=1, faults=Faults(fsync_failure=1.0))
    disk.faults = Faults()
    f = disk.open("a", create=True)
    disk.sync()
    f.append(b"lost")
    disk.faults = Faults(fsync_failure=1.0)
    with pytest.raises(OSError) as info:
        f.sync()
    assert info.value.errno == errno.EIO
    assert f.read_at(0, 4) == b"lost"  # the page cache still shows it
    disk.faults = Faults()
    f.sync()  # "succeeds", as a retried fsync does on Linux
    assert disk.snapshot_bytes(durable=True) == {"a": b""}
    assert {s.snapshot_bytes()["a"] for s in crash_states(disk)} == {b""}


def test_latent_sector_error_persists_until_rewritten_and_across_crashes() -> None:
    disk = SimulatedDisk(seed=1)
    f = disk.open("a", create=True)
    f.append(bytes(2048))
    f.sync()
    disk.sync()
    disk.mark_bad_sector("a", 600)
    assert f.read_at(0, 512) == bytes(512)
    with pytest.raises(OSError) as info:
        f.read_at(500, 20)
    assert info.value.errno == errno.EIO
    crashed = disk.crash()
    with pytest.raises(OSError):
        crashed.open("a").read_at(512, 1)
    f.write_at(512, b"\1" * 512)
    assert f.read_at(512, 1) == b"\1"


def test_injected_read_errors_and_bitflips() -> None:
    disk = SimulatedDisk(seed=9)
    f = disk.open("a", create=True)
    f.append(bytes(4096))
    disk.faults = Faults(read_bitflip=1.0)
    flipped = f.read_at(0, 4096)
    assert sum(bin(b).count("1") for b in flipped) == 1
    assert disk.snapshot_bytes()["a"] == bytes(4096)  # stored bytes intact
    disk.faults = Faults(read_error=1.0)
    with pytest.raises(OSError):
        f.read_at(0, 4096)
    assert disk.read_errors == 1


def test_write_corruption_stores_a_flipped_bit() -> None:
    disk = SimulatedDisk(seed=9, faults=Faults(write_corruption=1.0))
    f = disk.open("a", create=True)
    f.append(bytes(100))
    disk.faults = Faults()
    stored = f.read_at(0, 100)
    assert sum(bin(b).count("1") for b in stored) == 1
    assert disk.bitflips == 1


def test_fault_stream_is_deterministic_by_seed() -> None:
    def run(seed: int) -> list[object]:
        disk = SimulatedDisk(seed=seed, faults=Faults(read_bitflip=0.3, read_error=0.1))
        f = disk.open("a", create=True)
        f.append(bytes(range(256)) * 8)
        out: list[object] = []
        for i in range(50):
            try:
                out.append(f.read_at((i * 37) % 2048, 64))
            except OSError:
                out.append("EIO")
        return out

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_targeted_corruption_hits_durable_and_cached_bytes() -> None:
    disk = SimulatedDisk(seed=1)
    wal = disk.subdir("wal", create=True)
    f = wal.open("x", create=True)
    f.append(b"\0" * 8)
    f.sync()
    wal.sync()
    disk.corrupt("wal/x", 3, bit=2)
    assert f.read_at(3, 1) == b"\4"
    assert disk.snapshot_bytes(durable=True)["wal/x"][3] == 4
    disk.corrupt("sim:/wal/x", 3, bit=2)
    assert f.read_at(3, 1) == b"\0"
    with pytest.raises(FileNotFoundError):
        disk.corrupt("wal/missing", 0)
    with pytest.raises(ValueError):
        Faults(read_error=1.5)


def test_observers_see_every_mutation_and_counters() -> None:
    disk = SimulatedDisk(seed=1)
    seen: list[str] = []
    with disk.observe(lambda op: seen.append(op.kind)):
        f = disk.open("a", create=True)
        f.append(b"x")
        f.sync()
        disk.rename("a", "b")
        disk.sync()
        disk.unlink("b")
    disk.sync()
    assert seen == ["create", "write", "sync", "rename", "dirsync", "unlink"]
    assert disk.fsync_count == 3
    assert disk.files() == []


@given(st.lists(_ops, max_size=20), st.integers(0, 2**32))
def test_crash_and_crash_states_replay_exactly_for_any_history(
    ops: list[tuple[object, ...]], seed: int
) -> None:
    def run() -> tuple[list[str], list[str], str]:
        disk = SimulatedDisk(seed=seed, sector_size=8)
        _run_ops(disk, ops)
        states = [s.digest() for s in crash_states(disk, max_states=16)]
        crashes = [disk.crash().digest() for _ in range(3)]
        return states, crashes, disk.digest()

    first = run()
    assert first == run()
    states, _crashes, current = first
    assert len(states) == len(set(states))  # distinct by content
    assert current in states  # the all-kept state (the page cache now) is always there
