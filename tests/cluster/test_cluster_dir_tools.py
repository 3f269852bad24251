"""``inspect`` and ``verify`` on real cluster replica directories, clean and damaged.

A 3-replica cluster of ``serve`` processes commits a few ops and is stopped
(one primary killed on the way, so the view state holds a view change);
then each tool reads the directories: the view state, the prepares and
their header chain. Copies are then damaged the ways only a cluster
directory can be (every record checksum still valid): a prepare whose
parent is not the previous op's checksum, a suffix header that does not
verify, log_view above view, a membership file naming another replica.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trio
from tcp_processes import LocalCluster, cli

from trio_replica import codec
from trio_replica.cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport
from trio_replica.cluster.header import Operation, make_header
from trio_replica.cluster.storage import entries_of
from trio_replica.journal import Journal
from trio_replica.storage import OsDirectory


async def _submit(cluster: LocalCluster, count: int) -> None:
    config = ClusterConfig(cluster.cluster_id, 3, tls=cluster.client_tls)
    async with (
        open_tcp_client_transport(
            cluster.cluster_id, cluster.addresses, tls=config.tls
        ) as transport,
        open_cluster_client(config, transport=transport, retry_seconds=0.25) as client,
    ):
        with trio.fail_after(60):
            for _ in range(count):
                await client.submit({"add": 2})


async def _run(cluster: LocalCluster) -> None:
    with trio.fail_after(60):
        await cluster.wait_normal(quiet=True)
    await _submit(cluster, 10)
    primary = await cluster.primary()
    assert primary is not None
    cluster.kill(primary)  # a view change: the view state gets written
    await _submit(cluster, 10)
    cluster.start(primary)
    with trio.fail_after(60):
        await cluster.wait_normal(quiet=True)


async def _rewrite(path: Path, **changes: object) -> None:
    journal = await Journal.open(OsDirectory(str(path)))
    async with journal:
        await journal.update_superblock(**changes)


async def _relink_last(path: Path) -> int:
    """Replace the last op with a valid prepare whose parent is wrong."""
    journal = await Journal.open(OsDirectory(str(path)))
    async with journal:
        last = journal.last_op
        await journal.truncate_after(last - 1)
        body, _ = codec.encode({"add": 1})
        header = make_header(
            parent=bytes(16),
            op=last,
            view=0,
            client=1,
            request=1,
            operation=Operation.REQUEST,
            body=body,
        )
        await journal.append(entries_of([(header, body)]))
    return last


@pytest.mark.slow
def test_inspect_and_verify_read_cluster_directories(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", tls=False)
    try:
        cluster.start_all()
        trio.run(_run, cluster)
        assert cluster.stop_all() == [0, 0, 0]
    finally:
        cluster.kill_all()

    views = set()
    for d in cluster.dirs:
        done = cli("verify", d)
        assert done.returncode == 0, done.stdout
        assert "prepare header chain linked" in done.stdout and "cluster 42 replica" in done.stdout
        report = json.loads(cli("verify", d, "--json").stdout)
        state = report["cluster"]
        assert report["clean"] and state["view"] >= 1 and state["log_view"] <= state["view"]
        assert state["addresses"] == cluster.addresses and state["clients_max"] == 32
        views.add(state["view"])
    assert len(views) == 1  # one view change, seen by all

    shown = cli("inspect", cluster.dirs[0])
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = shown.stdout
    assert (
        f"cluster: replica 0 of 3 in cluster 42, addresses {', '.join(cluster.addresses)}" in text
    )
    assert f"view state: view {views.pop()}" in text and "records (prepares):" in text
    assert "register" in text and '{"add":2}' in text and "linked" in text
    assert "BROKEN" not in text
    lines = [json.loads(x) for x in cli("inspect", cluster.dirs[0], "--json").stdout.splitlines()]
    (info,) = [x for x in lines if x["kind"] == "cluster"]
    assert info["replica"] == 0 and info["problems"] == []
    records = [x for x in lines if x["kind"] == "record"]
    assert len(records) >= 22  # 2 registers (the kill re-registers nothing) + 20 adds
    assert records[0]["chain"] is True and all(r["chain"] is True for r in records)
    assert sum(r.get("command") == {"add": 2} for r in records) == 20
    assert all(r["prepare"]["op"] == r["op"] for r in records)

    # A prepare that does not link to the op before it (its record is valid).
    broken = tmp_path / "broken"
    shutil.copytree(cluster.dirs[1], broken)
    last = trio.run(_relink_last, broken)
    done = cli("verify", broken)
    assert done.returncode == 1
    assert f"the prepare of op {last} does not link to op {last - 1}'s prepare" in done.stdout
    listed = cli("inspect", broken, "--from", last - 1)
    assert listed.returncode == 1 and "BROKEN" in listed.stdout
    assert "failed verification" in listed.stderr

    # A suffix header that does not verify; log_view above view.
    state_damage = tmp_path / "view-state"
    shutil.copytree(cluster.dirs[2], state_damage)
    slot = bytearray(128)
    slot[20] = 1
    trio.run(lambda: _rewrite(state_damage, suffix_headers=(bytes(slot),), log_view=99))
    done = cli("verify", state_damage, "--json")
    problems = json.loads(done.stdout)["problems"]
    assert done.returncode == 1
    assert any("suffix header 0 does not verify" in p for p in problems)
    assert any("log_view 99 is above view" in p for p in problems)
    assert cli("inspect", state_damage).returncode == 1

    # A membership file naming another replica than the superblock.
    swapped = tmp_path / "swapped"
    shutil.copytree(cluster.dirs[0], swapped)
    membership = json.loads((swapped / "cluster.json").read_text())
    membership["replica"] = 1
    (swapped / "cluster.json").write_text(json.dumps(membership))
    done = cli("verify", swapped)
    assert done.returncode == 1
    assert "cluster.json names replica 1 of 3 in cluster 42" in done.stdout
