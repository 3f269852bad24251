"""SimulatedDisk.observe: registering cannot silently do nothing."""

from __future__ import annotations

from trio_replica.testing import DiskOperation, SimulatedDisk


def test_observe_without_with_observes_until_stopped() -> None:
    disk = SimulatedDisk(seed=1)
    seen: list[str] = []
    observation = disk.observe(lambda op: seen.append(op.kind))  # as docs/testing.md writes it
    disk.open("a", create=True).append(b"x")
    assert seen and observation.active
    observation.stop()
    count = len(seen)
    disk.open("a").append(b"y")
    assert len(seen) == count and not observation.active
    observation.stop()  # idempotent


def test_observe_as_a_context_manager_stops_at_the_end_of_the_block() -> None:
    disk = SimulatedDisk(seed=1)
    seen: list[DiskOperation] = []
    with disk.observe(seen.append) as observation:
        disk.open("a", create=True).append(b"x")
        assert observation.active
    count = len(seen)
    assert count > 0 and not observation.active
    disk.open("a").append(b"y")
    assert len(seen) == count
