"""Settings are checked before anything touches the disk, and memory does not
grow with settings that only say "rarely" (snapshot_every)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from trio_replica import open_replica
from trio_replica.machines import Counter
from trio_replica.replica import InvalidSettingError, ReplicaConfig, default_slot_count
from trio_replica.replica.config import DEFAULT_SLOT_CEILING
from trio_replica.storage import MemoryDirectory

BAD_SETTINGS: list[tuple[str, Any]] = [
    ("slot_count", 10.5),
    ("slot_count", 7),  # fewer than 4 * keep_snapshots
    ("slot_count", 10**9),
    ("inbox_size", 2.5),
    ("inbox_size", 0),
    ("snapshot_every", 0),
    ("snapshot_every", 1.5),
    ("snapshot_every", True),
    ("segment_bytes", 10),
    ("max_batch", "8"),
    ("keep_snapshots", 0),
    ("max_command_bytes", 2**40),
    ("applier_queue", -1),
    ("coordinator_queue", None),
    ("max_snapshot_failures", 0),
]


@pytest.mark.parametrize(("setting", "value"), BAD_SETTINGS)
async def test_bad_setting_is_refused_by_name_before_the_directory_exists(
    tmp_path: Path, setting: str, value: Any
) -> None:
    data = tmp_path / "data"
    with pytest.raises(InvalidSettingError, match=f"^{setting} must be") as caught:
        async with open_replica(data, Counter(), **{setting: value}):
            pass
    assert isinstance(caught.value, ValueError)
    assert caught.value.setting == setting
    assert caught.value.value == value
    assert not data.exists()


def test_huge_snapshot_every_is_valid() -> None:
    """2**63 raised OverflowError (the ring was sized from it)."""
    config = ReplicaConfig(snapshot_every=2**63)
    assert config.slot_count == DEFAULT_SLOT_CEILING


def test_defaults_resolve_after_validation() -> None:
    config = ReplicaConfig(max_batch=8)
    assert config.inbox_size == 8
    assert config.slot_count == default_slot_count(
        snapshot_every=10_000, keep_snapshots=2, max_batch=8
    )
    assert ReplicaConfig(slot_count=64, inbox_size=3).slot_count == 64


@pytest.mark.parametrize("snapshot_every", [10**7, 10**9])
async def test_memory_does_not_grow_with_snapshot_every(snapshot_every: int) -> None:
    """A one-op replica with snapshot_every=10**7 used 1.28 GB (the ring was
    preallocated for (keep + 2) * snapshot_every slots); 10**9 raised
    MemoryError. The ring is now capped and its size measured here."""
    tracemalloc.start()
    try:
        async with open_replica(
            MemoryDirectory(), Counter(), snapshot_every=snapshot_every
        ) as replica:
            assert await replica.submit({"add": 1}) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"peak traced memory {peak} bytes"
