"""Upgrading a state machine: older snapshots converted, old commands replayed by the new code."""

from __future__ import annotations

from typing import Any

import pytest

from trio_replica import (
    InvalidCommand,
    NoValidSnapshotError,
    StateMachine,
    StateMachineError,
    open_replica,
)
from trio_replica.coordinator import verify_snapshots
from trio_replica.testing import SimulatedDisk


class LedgerV1(StateMachine):
    """Version 1: a total; commands ``{"add": n}``."""

    name = "ledger"
    version = 1

    def __init__(self) -> None:
        self.total = 0

    def apply(self, op: int, command: Any) -> int:
        self.total += command["add"]
        return self.total

    def snapshot(self) -> dict[str, int]:
        return {"total": self.total}

    def restore(self, state: Any) -> None:
        self.total = state["total"]


class LedgerV2(StateMachine):
    """Version 2: a balance and a currency; still applies v1's ``{"add": n}``."""

    name = "ledger"
    version = 2

    def __init__(self) -> None:
        self.balance = 0
        self.currency = "EUR"
        self.upgraded: list[tuple[int, Any]] = []

    def apply(self, op: int, command: Any) -> int:
        if "add" in command:  # a version 1 command: applied exactly as v1 did
            self.balance += command["add"]
        elif command.get("type") == "deposit":
            if command["amount"] <= 0:
                raise InvalidCommand("a deposit must be positive")
            self.balance += command["amount"]
        else:
            raise InvalidCommand(f"unknown command {command!r}")
        return self.balance

    def snapshot(self) -> dict[str, Any]:
        return {"balance": self.balance, "currency": self.currency}

    def restore(self, state: Any) -> None:
        self.balance, self.currency = state["balance"], state["currency"]

    def upgrade_snapshot(self, version: int, state: Any) -> Any:
        self.upgraded.append((version, state))
        if version != 1:
            raise ValueError(f"no upgrade from version {version}")
        return {"balance": state["total"], "currency": "EUR"}


class LedgerV2WithoutUpgrade(LedgerV2):
    upgrade_snapshot = StateMachine.upgrade_snapshot


async def _written_by_v1(disk: SimulatedDisk) -> None:
    async with open_replica(disk, LedgerV1(), snapshot_every=5) as replica:
        for n in range(1, 13):
            await replica.submit({"add": n})  # snapshots at ops 5 and 10; 11, 12 after


async def test_v2_upgrades_the_v1_snapshot_and_replays_v1_commands() -> None:
    disk = SimulatedDisk(seed=1)
    await _written_by_v1(disk)
    machine = LedgerV2()
    async with open_replica(disk, machine, snapshot_every=5) as replica:
        assert machine.upgraded == [(1, {"total": sum(range(1, 11))})]  # the snapshot at op 10
        assert replica.recovery.snapshot_op == 10 and replica.recovery.ops_replayed == 2
        assert machine.balance == sum(range(1, 13))  # ops 11, 12: v1 commands, v2 code
        assert await replica.submit({"type": "deposit", "amount": 100}) == 178
        await replica.checkpoint()
    newest = max(verify_snapshots(disk), key=lambda info: info.op)
    assert (newest.op, newest.machine_version) == (13, 2)  # written by the new version
    again = LedgerV2()
    async with open_replica(disk, again):
        assert again.upgraded == [] and again.balance == 178


async def test_without_an_upgrade_the_old_snapshot_is_refused_with_a_hint() -> None:
    disk = SimulatedDisk(seed=2)
    await _written_by_v1(disk)
    with pytest.raises(NoValidSnapshotError, match=r"implement upgrade_snapshot\(\)"):
        async with open_replica(disk, LedgerV2WithoutUpgrade()):
            pass


async def test_a_failed_upgrade_stops_the_open_naming_op_and_versions() -> None:
    disk = SimulatedDisk(seed=3)
    await _written_by_v1(disk)

    class Strict(LedgerV2):
        def upgrade_snapshot(self, version: int, state: Any) -> Any:
            raise ValueError("the accountants say no")

    with pytest.raises(StateMachineError, match="written by version 1") as caught:
        async with open_replica(disk, Strict()):
            pass
    assert caught.value.op == 10 and "version 2 could not upgrade" in str(caught.value)


async def test_older_code_never_reads_a_newer_snapshot() -> None:
    disk = SimulatedDisk(seed=4)
    await _written_by_v1(disk)
    async with open_replica(disk, LedgerV2(), snapshot_every=5) as replica:
        await replica.submit({"type": "deposit", "amount": 1})  # a command v1 does not know
        await replica.checkpoint()  # a version 2 snapshot at op 13
    # Version 1 skips the v2 snapshot (it cannot read it), falls back to its
    # own at op 10, and then meets op 13, which only v2 understands.
    with pytest.raises(StateMachineError, match="replaying op 13") as caught:
        async with open_replica(disk, LedgerV1()):
            pass
    assert caught.value.op == 13
