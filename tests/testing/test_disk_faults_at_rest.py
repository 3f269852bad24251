"""Faults at rest in SimulatedDisk: bit rot, latent sector errors, lost writes.

Each fault is checked for what it does to the medium, the page cache, a
crash and a rewrite, for determinism (same seed, same place) and for its
record in ``fault_log``.
"""

from __future__ import annotations

import errno

import pytest

from trio_replica.testing import FaultEvent, Faults, SimulatedDisk, crash_states


def _disk_with(seed: int, files: dict[str, bytes]) -> SimulatedDisk:
    disk = SimulatedDisk(seed=seed, sector_size=16)
    wal = disk.subdir("wal", create=True)
    for name, content in files.items():
        f = (wal if name.startswith("wal/") else disk).open(name.split("/")[-1], create=True)
        f.append(content)
        f.sync()
    wal.sync()
    disk.sync()
    return disk


def _bit_differences(a: bytes, b: bytes) -> list[tuple[int, int]]:
    assert len(a) == len(b)
    return [(i, bit) for i in range(len(a)) for bit in range(8) if (a[i] ^ b[i]) >> bit & 1]


# --- bit rot ------------------------------------------------------------------


def test_rot_bit_flips_one_durable_bit_seen_after_a_crash_not_in_the_cache() -> None:
    content = bytes(range(64))
    disk = _disk_with(3, {"wal/seg": content, "other": b"x" * 64})
    event = disk.rot_bit("wal")
    assert event is not None and event.kind == "bit_rot" and event.path == "wal/seg"
    assert event.size == 1 and event.bit is not None
    durable = disk.snapshot_bytes(durable=True)["wal/seg"]
    assert _bit_differences(content, durable) == [(event.offset, event.bit)]
    # The page cache still shows what was read before; nothing outside wal/ changed.
    assert disk.open("other").read_at(0, 64) == b"x" * 64
    assert disk.subdir("wal").open("seg").read_at(0, 64) == content
    after = disk.crash()
    assert after.subdir("wal").open("seg").read_at(0, 64) == durable
    assert list(disk.fault_log) == [event]


def test_rot_bit_is_deterministic_from_the_seed_and_varies_with_it() -> None:
    files = {"wal/a": bytes(200), "wal/b": bytes(300)}
    events = [_disk_with(seed, files).rot_bit() for seed in (5, 5, 6, 7, 8)]
    assert events[0] == events[1]
    assert len({(e.path, e.offset, e.bit) for e in events if e is not None}) > 1


def test_rot_bit_only_strikes_durable_bytes_and_returns_none_without_any() -> None:
    disk = SimulatedDisk(seed=1)
    f = disk.open("f", create=True)
    f.append(b"never synced")
    assert disk.rot_bit() is None
    assert disk.rot_sector() is None
    assert list(disk.fault_log) == []


def test_bit_rot_probability_strikes_between_operations_and_a_crash_keeps_it() -> None:
    disk = _disk_with(11, {"wal/seg": bytes(256)})
    before = disk.snapshot_bytes(durable=True)["wal/seg"]
    disk.faults = Faults(bit_rot=1.0)
    g = disk.open("new", create=True)  # one operation: one rot, of wal/seg (the only durable data)
    disk.faults = Faults()
    g.append(b"pending")
    rots = [e for e in disk.fault_log if e.kind == "bit_rot"]
    assert len(rots) == 1 and rots[0].path == "wal/seg"
    rotted = disk.crash().subdir("wal").open("seg").read_at(0, 256)
    assert _bit_differences(before, rotted) == [(rots[0].offset, rots[0].bit)]


def test_corrupt_is_recorded_as_bit_rot() -> None:
    disk = _disk_with(1, {"wal/seg": bytes(32)})
    disk.corrupt("sim:/wal/seg", 7, 3)
    assert list(disk.fault_log) == [FaultEvent("bit_rot", "wal/seg", 7, 1, disk.operation_count, 3)]


# --- latent sector errors ----------------------------------------------------


def test_rot_sector_makes_reads_of_that_sector_fail_until_rewritten_across_crashes() -> None:
    disk = _disk_with(4, {"wal/seg": bytes(range(64))})
    event = disk.rot_sector("wal/seg")
    assert event is not None and event.kind == "bad_sector" and event.size == 16
    seg = disk.subdir("wal").open("seg")
    with pytest.raises(OSError) as raised:
        seg.read_at(event.offset + 3, 1)
    assert raised.value.errno == errno.EIO
    clean = [off for off in range(0, 64, 16) if off != event.offset]
    for off in clean:
        assert seg.read_at(off, 16) == bytes(range(off, off + 16))
    # It survives a power loss ...
    crashed = disk.crash()
    with pytest.raises(OSError):
        crashed.subdir("wal").open("seg").read_at(event.offset, 16)
    # ... and a rewrite of the sector remaps it.
    seg.write_at(event.offset, bytes(16))
    assert seg.read_at(event.offset, 16) == bytes(16)


def test_bad_sector_probability_is_seeded() -> None:
    def run(seed: int) -> list[FaultEvent]:
        disk = _disk_with(seed, {"wal/a": bytes(100), "wal/b": bytes(100)})
        disk.faults = Faults(bad_sector=0.5)
        for n in range(10):
            disk.open(f"f{n}", create=True)
        return list(disk.fault_log)

    first = run(21)
    assert first == run(21)
    assert first and all(e.kind == "bad_sector" and e.path.startswith("wal/") for e in first)


# --- lost writes ---------------------------------------------------------------


def test_a_lost_write_is_read_back_and_synced_but_never_reaches_the_medium() -> None:
    disk = _disk_with(2, {"wal/seg": b"A" * 32})
    seg = disk.subdir("wal").open("seg")
    disk.lose_writes("wal/seg")
    seg.write_at(8, b"B" * 8)  # lost: an overwrite
    seg.write_at(0, b"C" * 4)  # not lost: the order was for one write
    seg.sync()  # succeeds
    assert seg.read_at(0, 32) == b"C" * 4 + b"A" * 4 + b"B" * 8 + b"A" * 16
    assert disk.snapshot_bytes(durable=True)["wal/seg"] == b"C" * 4 + b"A" * 28
    assert disk.lost_writes == 1
    assert [(e.kind, e.path, e.offset, e.size) for e in disk.fault_log] == [
        ("lost_write", "wal/seg", 8, 8)
    ]
    # Every crash state and a dropped cache show the old bytes.
    for state in crash_states(disk):
        assert state.subdir("wal").open("seg").read_at(0, 32) == b"C" * 4 + b"A" * 28
    seg.drop_cache()
    assert seg.read_at(0, 32) == b"C" * 4 + b"A" * 28


def test_a_lost_append_keeps_its_size_but_reads_as_zeros_after_a_crash() -> None:
    disk = _disk_with(2, {"wal/seg": b"A" * 16})
    disk.faults = Faults(lost_write=1.0)
    seg = disk.subdir("wal").open("seg")
    seg.append(b"B" * 16)
    disk.faults = Faults()
    # Before the fsync a crash may keep the size change or not, never the data.
    contents = {s.subdir("wal").open("seg").read_at(0, 64) for s in crash_states(disk)}
    assert contents == {b"A" * 16, b"A" * 16 + bytes(16)}
    seg.sync()
    assert disk.crash().subdir("wal").open("seg").read_at(0, 64) == b"A" * 16 + bytes(16)


def test_lose_writes_scope_and_count() -> None:
    disk = _disk_with(2, {"wal/seg": bytes(8), "other": bytes(8)})
    disk.lose_writes("wal", count=2)
    other = disk.open("other")
    other.write_at(0, b"o")  # outside the scope: kept
    seg = disk.subdir("wal").open("seg")
    for n in range(3):
        seg.write_at(n, b"s")
    seg.sync()
    other.sync()
    durable = disk.snapshot_bytes(durable=True)
    assert durable["other"][:1] == b"o"
    assert durable["wal/seg"][:3] == b"\0\0s"
    with pytest.raises(ValueError, match="count"):
        disk.lose_writes(count=0)


def test_faults_validate_and_say_which_damage() -> None:
    with pytest.raises(ValueError, match="bit_rot"):
        Faults(bit_rot=2.0)
    assert not Faults(fsync_failure=1.0).damaging
    for name in ("lost_write", "bit_rot", "bad_sector", "read_error"):
        assert Faults(**{name: 0.1}).damaging


def test_faults_at_rest_off_leave_the_random_stream_unchanged() -> None:
    def digest(faults: Faults) -> str:
        disk = SimulatedDisk(seed=9, faults=faults)
        f = disk.open("f", create=True)
        for n in range(20):
            f.append(bytes([n]) * 50)
        return disk.crash().digest()

    assert digest(Faults()) == digest(Faults(bit_rot=0.0, lost_write=0.0, bad_sector=0.0))


# --- misdirected writes ----------------------------------------------------------


def test_a_misdirected_write_lands_where_the_previous_write_went() -> None:
    disk = _disk_with(2, {"wal/seg": b""})
    seg = disk.subdir("wal").open("seg")
    seg.append(b"A" * 8)  # the file's first write on this disk: never misdirected
    disk.misdirect_writes("wal/seg")
    seg.append(b"B" * 8)  # lands on the A's
    seg.sync()
    assert seg.read_at(0, 16) == b"A" * 8 + b"B" * 8  # the page cache shows it in place
    assert disk.snapshot_bytes(durable=True)["wal/seg"] == b"B" * 8 + bytes(8)
    assert [(e.kind, e.path, e.offset, e.size) for e in disk.fault_log] == [
        ("misdirected_write", "wal/seg", 0, 8)
    ]
    assert disk.crash().subdir("wal").open("seg").read_at(0, 16) == b"B" * 8 + bytes(8)
    seg.drop_cache()
    assert seg.read_at(0, 16) == b"B" * 8 + bytes(8)


def test_misdirected_write_probability_spares_a_files_first_write() -> None:
    disk = SimulatedDisk(seed=4, faults=Faults(misdirected_write=1.0))
    f = disk.open("f", create=True)
    f.append(b"1111")
    f.append(b"2222")
    f.append(b"3333")
    f.sync()
    disk.sync()
    # The second write landed on the first, the third on the second's place.
    assert disk.snapshot_bytes(durable=True)["f"] == b"2222" + b"3333" + bytes(4)
    assert [e.offset for e in disk.fault_log] == [0, 4]
    with pytest.raises(ValueError, match="count"):
        disk.misdirect_writes(count=0)


# --- content from another time or another history -------------------------------


def test_restore_file_puts_back_a_whole_image_on_the_medium_and_logs_it() -> None:
    disk = _disk_with(1, {"wal/seg": b"n" * 64})
    disk.mark_bad_sector("wal/seg", 0)
    event = disk.restore_file("wal/seg", b"o" * 40)
    assert event == FaultEvent("restored_file", "wal/seg", 0, 40, event.tick)
    assert disk.subdir("wal").open("seg").read_at(0, 40) == b"o" * 40  # rewritten: readable
    for state in (disk, disk.crash()):
        assert state.snapshot_bytes(durable=True)["wal/seg"] == b"o" * 40
    assert list(disk.fault_log)[-1] == event


def test_an_interrupted_restore_keeps_the_files_own_bytes_after_it() -> None:
    disk = _disk_with(1, {"wal/seg": b"n" * 64})
    event = disk.restore_file("wal/seg", b"o" * 48, interrupted_at=32)
    assert (event.kind, event.offset, event.size) == ("restored_file", 0, 32)
    assert disk.crash().snapshot_bytes(durable=True)["wal/seg"] == b"o" * 32 + b"n" * 32
    with pytest.raises(ValueError, match="sector boundary"):
        disk.restore_file("wal/seg", b"o" * 48, interrupted_at=20)
    with pytest.raises(ValueError, match="sector boundary"):
        disk.restore_file("wal/seg", b"o" * 16, interrupted_at=32)


def test_stale_read_returns_older_whole_sectors_from_then_on() -> None:
    disk = _disk_with(1, {"wal/seg": b"n" * 64})
    event = disk.stale_read("wal/seg", 16, b"o" * 16)
    assert (event.kind, event.path, event.offset, event.size) == ("stale_read", "wal/seg", 16, 16)
    want = b"n" * 16 + b"o" * 16 + b"n" * 32
    assert disk.subdir("wal").open("seg").read_at(0, 64) == want
    assert disk.crash().snapshot_bytes(durable=True)["wal/seg"] == want
    for offset, old in ((8, b"o" * 16), (16, b"o" * 8), (16, b""), (64, b"o" * 16)):
        with pytest.raises(ValueError):
            disk.stale_read("wal/seg", offset, old)


def test_newer_writer_replaces_bytes_inside_the_file_only() -> None:
    disk = _disk_with(1, {"wal/seg": b"n" * 64})
    event = disk.newer_writer("wal/seg", 10, b"v3")
    assert (event.kind, event.offset, event.size) == ("newer_writer", 10, 2)
    assert disk.crash().snapshot_bytes(durable=True)["wal/seg"] == b"n" * 10 + b"v3" + b"n" * 52
    with pytest.raises(ValueError):
        disk.newer_writer("wal/seg", 63, b"v3")
