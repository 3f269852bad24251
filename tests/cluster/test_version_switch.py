"""A state machine's version switch in a cluster is a committed op: every
replica switches at the same op, whatever code it runs, across restarts
and checkpoints."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio

from trio_replica.cluster.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from trio_replica.cluster.header import ROOT
from trio_replica.errors import InvalidCommand, MachineVersionError
from trio_replica.stm.protocol import StateMachine
from trio_replica.testing.inprocess_cluster import open_inprocess_cluster


class AdderV1(StateMachine):
    """Version 1: ``add`` adds its amount."""

    name: ClassVar[str] = "adder"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.total = 0

    def apply(self, op: int, command: Any) -> int:
        self.total += command
        return self.total

    def snapshot(self) -> Any:
        return self.total

    def restore(self, state: Any) -> None:
        self.total = state


class AdderV2(AdderV1):
    """Version 2 adds twice the amount, and can still apply as version 1."""

    version: ClassVar[int] = 2

    def __init__(self) -> None:
        super().__init__()
        self.active = 2

    def switch_version(self, version: int) -> None:
        if version not in (1, 2):
            raise MachineVersionError("no such version", version=version, code_version=2)
        self.active = version

    def apply(self, op: int, command: Any) -> int:
        self.total += command if self.active == 1 else 2 * command
        return self.total


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _totals(cluster: Any) -> set[int]:
    return {r.machine.total for r in cluster.replicas if r is not None}


async def test_a_rolling_upgrade_switches_every_replica_at_one_op(autojump_clock: Any) -> None:
    async with open_inprocess_cluster(
        AdderV1, seed=3, checkpoint_interval=4, machine_version=1
    ) as cluster:
        async with cluster.client() as client:
            assert await client.submit(1) == 1
            # Roll the new code out one replica at a time, primary last: each
            # restarts (from a checkpoint or by replaying from op 1) still
            # applying as version 1, the cluster's.
            cluster.machine = AdderV2
            for replica in sorted(range(3), key=lambda r: r == cluster.primary()):
                await cluster.kill(replica, power_loss=False)
                await cluster.start(replica)
                assert await client.submit(1) >= 2
                with trio.fail_after(60):
                    await cluster.wait_converged()
                assert len(_totals(cluster)) == 1
            assert _totals(cluster) == {4}  # every add counted once: version 1
            at = await client.switch_version(2)
            assert at > 4
            assert await client.submit(5) == 14  # version 2 doubles
            with pytest.raises(InvalidCommand, match="cannot switch the cluster to version 3"):
                await client.switch_version(3)  # above every replica's code: never committed
            with trio.fail_after(60):
                await cluster.wait_converged()
            for _ in range(4):  # past the next checkpoint op
                await client.submit(1)
            with trio.fail_after(60):
                await cluster.wait_converged()
        assert _totals(cluster) == {22}
        assert {r.machine.active for r in cluster.replicas if r is not None} == {2}  # type: ignore[union-attr]
        # A restart from a checkpoint taken after the switch is switched again
        # before anything is applied.
        await cluster.kill(1, power_loss=True)
        handle = await cluster.start(1)
        assert handle.status.checkpoint >= at
        assert handle.machine.active == 2  # type: ignore[attr-defined]
        with trio.fail_after(60):
            await cluster.wait_converged()
        assert _totals(cluster) == {22}


async def test_a_replica_whose_code_is_too_old_stops_at_the_switch(autojump_clock: Any) -> None:
    made = iter([AdderV2, AdderV2, AdderV1])
    stopped = []
    try:
        async with (
            open_inprocess_cluster(lambda: next(made)(), seed=5, machine_version=1) as cluster,
            cluster.client() as client,
        ):
            assert await client.submit(3) == 3
            await client.switch_version(2)  # replica 2 runs version 1 code
            with trio.fail_after(60):
                await trio.sleep_forever()
    except* MachineVersionError as group:
        stopped = _leaves(group)
    assert len(stopped) == 1
    error = stopped[0]
    assert isinstance(error, MachineVersionError)
    assert (error.version, error.code_version) == (2, 1) and error.op is not None


def test_the_machine_version_is_in_the_checkpoint_and_its_digest() -> None:
    a = Checkpoint(ROOT, 5, [], 1)
    b = Checkpoint(ROOT, 5, [], 2)
    assert a.digest() != b.digest()
    assert decode_checkpoint(encode_checkpoint(b)).version == 2
