"""``format --recover``: a replica whose data directory was lost rejoins safely.

In-process (Trio wiring, simulated disks): a replica's disk is replaced by a
blank one formatted to rejoin; it starts as rejoining (never a voter),
catches up from its peers, then clears the flag durably and converges with
the same state. On real files: ``trio-replica format --recover`` writes the
rejoining flag into the superblock, and a plain format does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio

from trio_replica.cli import main
from trio_replica.cluster.storage import recover_cluster_storage
from trio_replica.journal import Journal
from trio_replica.journal.superblock import FLAG_REJOINING, read_superblock
from trio_replica.stm.protocol import StateMachine
from trio_replica.storage import OsDirectory
from trio_replica.testing import SimulatedDisk


class Log(StateMachine):
    name: ClassVar[str] = "log"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def apply(self, op: int, command: Any) -> int:
        self.entries.append(command)
        return len(self.entries)

    def snapshot(self) -> Any:
        return list(self.entries)

    def restore(self, state: Any) -> None:
        self.entries = list(state)


async def _format_to_rejoin(disk: SimulatedDisk, cluster_id: int, replica: int) -> None:
    async with await Journal.open(disk) as journal:
        found = await recover_cluster_storage(
            journal, cluster_id=cluster_id, replica=replica, replica_count=3, rejoining=True
        )
        assert found.state is not None and found.state.rejoining


async def test_a_replaced_directory_rejoins_catches_up_and_votes_again(
    cluster_factory: Any, autojump_clock: Any
) -> None:
    async with cluster_factory(Log) as cluster:
        async with cluster.client() as client:
            for i in range(12):
                await client.submit(i)
        await cluster.kill(2)
        blank = SimulatedDisk(seed=99)
        await _format_to_rejoin(blank, cluster.config.cluster_id, 2)
        cluster.disks[2] = blank
        handle = await cluster.start(2)
        assert handle.status.rejoining and handle.status.status == "recovering"
        async with cluster.client() as client:
            await client.submit("after")
        with trio.fail_after(120):
            await cluster.wait_converged()
            while handle.status.rejoining:  # noqa: ASYNC110 - a status of another task
                await trio.sleep(0.1)
        assert handle.machine.entries == [*range(12), "after"]  # type: ignore[attr-defined]
        await cluster.kill(2, power_loss=True)
        # the flag was cleared durably: a restart is an ordinary one
        block = read_superblock(cluster.disks[2])
        assert block is not None and not block.flags & FLAG_REJOINING
        handle = await cluster.start(2)
        assert not handle.status.rejoining


def test_format_recover_marks_the_directory_rejoining(tmp_path: Path) -> None:
    addresses = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    common = ["--cluster-id", "9", "--replica", "1", "--addresses", addresses, "--insecure"]
    assert main(["format", str(tmp_path / "new"), *common, "--recover"]) == 0
    assert main(["format", str(tmp_path / "plain"), *common]) == 0
    recovered = read_superblock(OsDirectory(str(tmp_path / "new")))
    plain = read_superblock(OsDirectory(str(tmp_path / "plain")))
    assert recovered is not None and recovered.flags & FLAG_REJOINING
    assert recovered.replica == 1 and recovered.replica_count == 3
    assert plain is not None and plain.flags == 0


def test_format_recover_of_a_single_replica_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "format",
            str(tmp_path / "solo"),
            "--cluster-id",
            "9",
            "--replica",
            "0",
            "--addresses",
            "127.0.0.1:7001",
            "--insecure",
            "--recover",
        ]
    )
    assert code != 0
    assert "no peer to catch up from" in capsys.readouterr().err
    assert not (tmp_path / "solo").exists()
