"""``verify``, ``status``, ``repair`` and ``inspect`` on cluster directories with checkpoints.

Three formatted directories run an in-process cluster with a small
``checkpoint_interval``, so each takes checkpoints and compacts its journal.
A cluster checkpoint is bound to its op's prepare (the view state records
its checksum), never to the journal's chain checksum: the tools must call
these directories clean, as a restart opens them. Then copies are damaged
so that a restart refuses them (the view state names another prepare; the
checkpoint's snapshot is replaced by a valid one of another history), and
the tools must say so, as the restart does.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from tcp_processes import cli

from trio_replica.cluster import ClusterConfig, open_cluster_client, open_cluster_replica
from trio_replica.cluster.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from trio_replica.cluster.checkpoint_store import CheckpointMismatchError
from trio_replica.cluster.header import Operation, make_header
from trio_replica.coordinator import Snapshot, SnapshotStore
from trio_replica.journal import Journal
from trio_replica.machines.counter import Counter
from trio_replica.storage import OsDirectory
from trio_replica.testing import open_sim_transport

CLUSTER = 42
INTERVAL = 8


def _config() -> ClusterConfig:
    return ClusterConfig(CLUSTER, 3, checkpoint_interval=INTERVAL)


async def _run_cluster(dirs: list[Path], ops: int) -> list[int]:
    """Commit ``ops`` adds on a cluster over ``dirs``; each replica's checkpoint op."""
    config = _config()
    async with open_sim_transport(seed=5) as transport, trio.open_nursery() as nursery:
        handles: list[Any] = [None] * 3
        stop = trio.Event()
        started = [trio.Event() for _ in dirs]

        async def run(i: int) -> None:
            async with open_cluster_replica(
                OsDirectory(str(dirs[i])), Counter(), config, replica=i, transport=transport
            ) as handle:
                handles[i] = handle
                started[i].set()
                await stop.wait()

        for i in range(3):
            nursery.start_soon(run, i)
        for event in started:
            await event.wait()
        async with open_cluster_client(config, transport=transport) as client:
            with trio.fail_after(120):
                for _ in range(ops):
                    await client.submit({"add": 1})
        with trio.fail_after(120):
            # Every replica applied every op (+ the client's register op).
            while any(h.status.applied < ops + 1 for h in handles):  # noqa: ASYNC110
                await trio.sleep(0.05)
        checkpoints = [h.status.checkpoint for h in handles]
        stop.set()
    return checkpoints


async def _open_error(path: Path, replica: int) -> Exception | None:
    """What opening the directory as its cluster replica raises (None: it opens)."""
    async with open_sim_transport(seed=6) as transport:
        try:
            async with open_cluster_replica(
                OsDirectory(str(path)), Counter(), _config(), replica=replica, transport=transport
            ):
                return None
        except CheckpointMismatchError as error:
            return error


async def _set_checkpoint_checksum(path: Path, checksum: bytes) -> None:
    journal = await Journal.open(OsDirectory(str(path)))
    async with journal:
        await journal.update_superblock(checkpoint_checksum=checksum)


async def _name_older_checkpoint(path: Path, op: int) -> None:
    """The view state names checkpoint ``op`` (a crash after a newer
    checkpoint's snapshot was durable, before the view state named it)."""
    async with SnapshotStore(
        OsDirectory(str(path)), machine_name="counter", machine_version=1
    ) as store:
        header = decode_checkpoint((await store.load(op)).state).header
    journal = await Journal.open(OsDirectory(str(path)))
    async with journal:
        await journal.update_superblock(checkpoint_op=op, checkpoint_checksum=header.checksum)


async def _swap_checkpoint(path: Path, op: int) -> None:
    """Replace the snapshot of checkpoint ``op`` with a valid one of another history
    (a prepare of the same op whose parent is not this history's)."""
    data = OsDirectory(str(path))
    async with SnapshotStore(data, machine_name="counter", machine_version=1) as store:
        real = decode_checkpoint((await store.load(op)).state)
    os.remove(path / "snapshots" / next(n for n in os.listdir(path / "snapshots") if str(op) in n))
    body = b"another history"
    other = make_header(
        parent=bytes(16),
        op=op,
        view=0,
        client=1,
        request=1,
        operation=Operation.REQUEST,
        body=body,
    )
    async with SnapshotStore(data, keep=3, machine_name="counter", machine_version=1) as store:
        await store.persist(
            Snapshot(op, encode_checkpoint(Checkpoint(other, real.machine, real.clients)))
        )


@pytest.mark.slow
def test_tools_judge_cluster_checkpoints_as_a_restart_does(tmp_path: Path) -> None:
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    addresses = ",".join(f"127.0.0.1:{7100 + i}" for i in range(3))
    for i, d in enumerate(dirs):
        done = cli(
            "format",
            d,
            "--cluster-id",
            CLUSTER,
            "--replica",
            i,
            "--addresses",
            addresses,
            "--insecure",
        )
        assert done.returncode == 0, done.stderr
    checkpoints = trio.run(_run_cluster, dirs, 4 * INTERVAL + 3)
    assert all(c >= 3 * INTERVAL for c in checkpoints), checkpoints

    for d, checkpoint in zip(dirs, checkpoints, strict=True):
        done = cli("verify", d)
        assert done.returncode == 0, done.stdout
        assert f"checkpoint op {checkpoint} (prepare " in done.stdout
        assert "matches its snapshot and the journal" in done.stdout
        report = json.loads(cli("verify", d, "--json").stdout)
        assert report["clean"] and report["problems"] == []
        assert report["checkpoint"]["op"] == checkpoint and report["checkpoint"]["problems"] == []

        shown = cli("status", d)
        assert shown.returncode == 0, shown.stdout
        assert f"cluster checkpoint (named by the view state): op {checkpoint}" in shown.stdout
        assert "problem" not in shown.stdout
        status = json.loads(cli("status", d, "--json").stdout)
        assert status["checkpoint_op"] == checkpoint and status["problems"] == []

        listed = cli("inspect", d)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert f"checkpoint op {checkpoint} (prepare " in listed.stdout
        assert "BAD" not in listed.stdout

    # repair leaves a healthy cluster directory alone (with and without --force).
    for force in ((), ("--force",)):
        copy = tmp_path / f"repair{len(force)}"
        shutil.copytree(dirs[0], copy)
        done = cli("repair", copy, "--truncate-tail", *force)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "nothing to cut" in done.stdout
        assert sorted(os.listdir(copy / "wal")) == sorted(os.listdir(dirs[0] / "wal"))
    assert trio.run(_open_error, dirs[0], 0) is None  # it opens, as verify said

    # A snapshot newer than the checkpoint the view state names is not
    # loaded by a restart: no problem.
    older = tmp_path / "older"
    shutil.copytree(dirs[0], older)
    trio.run(_name_older_checkpoint, older, checkpoints[0] - INTERVAL)
    done = cli("verify", older)
    assert done.returncode == 0, done.stdout
    assert f"checkpoint op {checkpoints[0] - INTERVAL} (prepare " in done.stdout
    assert cli("status", older).returncode == 0
    assert trio.run(_open_error, older, 0) is None

    # The view state names a prepare the checkpoint's snapshot does not hold.
    named = tmp_path / "named"
    shutil.copytree(dirs[1], named)
    trio.run(_set_checkpoint_checksum, named, bytes(range(16)))
    done = cli("verify", named)
    assert done.returncode == 1 and "NOT CLEAN" in done.stdout
    assert f"the snapshot of checkpoint op {checkpoints[1]}" in done.stdout
    assert bytes(range(16)).hex() in done.stdout and "refuses to open" in done.stdout
    shown = cli("status", named)
    assert shown.returncode == 1 and "problem: checkpoint:" in shown.stdout
    listed = cli("inspect", named)
    assert listed.returncode == 1 and "BAD: checkpoint:" in listed.stdout
    assert "checkpoint check failed verification" in listed.stderr
    done = cli("repair", named, "--truncate-tail")  # a journal repair does not hide it
    assert done.returncode == 1 and "still does not open" in done.stderr
    refused = trio.run(_open_error, named, 1)  # the restart refuses it too
    assert isinstance(refused, CheckpointMismatchError) and refused.op == checkpoints[1]

    # The checkpoint's snapshot replaced by a valid one of another history.
    swapped = tmp_path / "swapped"
    shutil.copytree(dirs[2], swapped)
    trio.run(_swap_checkpoint, swapped, checkpoints[2])
    done = cli("verify", swapped)
    assert done.returncode == 1, done.stdout
    assert "holds prepare" in done.stdout and "refuses to open" in done.stdout
    assert json.loads(cli("verify", swapped, "--json").stdout)["checkpoint"]["problems"]
    assert cli("status", swapped).returncode == 1
    refused = trio.run(_open_error, swapped, 2)
    assert isinstance(refused, CheckpointMismatchError) and refused.op == checkpoints[2]
