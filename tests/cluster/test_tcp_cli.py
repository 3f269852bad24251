"""``format``, ``serve`` and ``status`` as real processes on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from tcp_processes import MACHINE, LocalCluster, cli

from trio_replica.cli.serve import load_machine
from trio_replica.cluster import ClusterConfig, open_cluster_client, open_tcp_client_transport


async def _submit(cluster: LocalCluster, count: int) -> list[int]:
    config = ClusterConfig(cluster.cluster_id, len(cluster.addresses), tls=cluster.client_tls)
    async with (
        open_tcp_client_transport(
            cluster.cluster_id, cluster.addresses, tls=config.tls
        ) as transport,
        open_cluster_client(config, transport=transport) as client,
    ):
        with trio.fail_after(30):
            return [await client.submit({"add": 1}) for _ in range(count)]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_format_serve_status_and_clean_shutdown(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    try:
        cluster.start_all()
        report = cluster.wait_agreed()
        assert [e["replica"] for e in report["replicas"]] == [0, 1, 2]
        assert trio.run(_submit, cluster, 25) == list(range(1, 26))

        # A second serve on a directory in use: one clear line, exit 3, nothing changed.
        second = cli("serve", cluster.dirs[0], "--machine", MACHINE, "--listen", "127.0.0.1:0")
        assert second.returncode == 3
        assert "in use by a running replica" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1

        # The example one-shot client: a reply, a rejected command, one line each.
        example = Path(__file__).resolve().parents[2] / "examples" / "cluster_client.py"
        common = [
            "--cluster-id",
            str(cluster.cluster_id),
            "--addresses",
            ",".join(cluster.addresses),
            *cluster.client_args(),
        ]
        ok = subprocess.run(
            [sys.executable, example, *common, '{"add": 5}'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0 and ok.stdout.strip() == "30", ok.stderr
        rejected = subprocess.run(
            [sys.executable, example, *common, '{"sub": 1}'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rejected.returncode == 1 and rejected.stderr.startswith("cluster_client: rejected:")
        assert len(rejected.stderr.strip().splitlines()) == 1

        text = cli("status", *cluster.addresses, *cluster.client_args())
        assert text.returncode == 0 and "the replicas agree" in text.stdout
        # Without a certificate, a TLS replica answers no status.
        plain = cli("status", *cluster.addresses)
        assert plain.returncode == 3 and "answers TLS clients only" in plain.stdout

        # SIGTERM and SIGINT: clean shutdown, exit 0, logged.
        codes = [cluster.stop(0, signal.SIGTERM), cluster.stop(1, signal.SIGINT)]
        assert codes == [0, 0]
        assert "shutting down" in cluster.log_text(0) and "journal is closed" in cluster.log_text(1)
        # The remaining replica alone cannot agree with unreachable peers.
        down = cli("status", *cluster.addresses, "--json", *cluster.client_args())
        assert down.returncode == 1
        assert json.loads(down.stdout)["agree"] is False
        assert cluster.stop(2) == 0
        none = cli("status", *cluster.addresses, *cluster.client_args())
        assert none.returncode == 3 and "unreachable" in none.stdout
    finally:
        cluster.kill_all()
    logs = cluster.log_text(0) + cluster.log_text(1) + cluster.log_text(2)
    assert "view " in logs and "committed up to op" in logs
    for d in cluster.dirs:
        done = cli("verify", d)
        assert done.returncode == 0, done.stdout + done.stderr


def test_serve_refuses_unformatted_and_missing_directories(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        done = cli("serve", target, "--machine", MACHINE)
        assert done.returncode == 2
        assert "trio-replica format" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "empty").iterdir()) == []  # nothing was formatted implicitly
    assert not (tmp_path / "missing").exists()


def test_format_refuses_existing_paths_and_bad_arguments(tmp_path: Path) -> None:
    addresses = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
    # Neither TLS files nor --insecure: refused, nothing created.
    unsure = cli(
        "format", tmp_path / "r0", "--cluster-id", 9, "--replica", 0, "--addresses", addresses
    )
    assert unsure.returncode == 2 and "--insecure" in unsure.stderr
    assert not (tmp_path / "r0").exists()
    ok = cli(
        "format", tmp_path / "r0", "--cluster-id", 9, "--replica", 0, "--addresses", addresses,
        "--insecure",
    )  # fmt: skip
    assert ok.returncode == 0
    # It says where the replica will serve, not that something listens already.
    assert "listening" not in ok.stdout and "to serve at 127.0.0.1:" in ok.stdout
    # A missing parent is a usage error, not a silently created tree.
    orphan = cli(
        "format", tmp_path / "nonexist" / "r0", "--cluster-id", 9, "--replica", 0,
        "--addresses", addresses, "--insecure",
    )  # fmt: skip
    assert orphan.returncode == 2 and "does not exist" in orphan.stderr, orphan.stderr
    assert len(orphan.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nonexist").exists()
    membership = json.loads((tmp_path / "r0" / "cluster.json").read_text())
    assert membership["cluster_id"] == 9 and membership["addresses"] == addresses.split(",")
    before = sorted(p.name for p in (tmp_path / "r0").iterdir())
    again = cli(
        "format", tmp_path / "r0", "--cluster-id", 9, "--replica", 0, "--addresses", addresses,
        "--insecure",
    )  # fmt: skip
    assert again.returncode == 2 and "exists" in again.stderr
    assert sorted(p.name for p in (tmp_path / "r0").iterdir()) == before
    for bad in (
        ["--replica", "3", "--addresses", addresses],
        ["--replica", "0", "--addresses", "127.0.0.1:1,127.0.0.1:2"],
        ["--replica", "0", "--addresses", "nohost"],
    ):
        done = cli("format", tmp_path / "x", "--cluster-id", 9, *bad, "--insecure")
        assert done.returncode == 2, done.stderr
        assert not (tmp_path / "x").exists()
    zero = cli(
        "format", tmp_path / "x", "--cluster-id", 0, "--replica", 0, "--addresses", addresses,
        "--insecure",
    )  # fmt: skip
    assert zero.returncode == 2
    # The formatted directory is a valid, empty cluster replica directory.
    assert cli("verify", tmp_path / "r0").returncode == 0


def test_serve_rejects_a_bad_machine_path(tmp_path: Path) -> None:
    LocalCluster(tmp_path, n=1)
    for machine in (
        "nomodule",
        "no_such_module_x:Foo",
        "trio_replica.machines.counter:Nope",
        "json:dumps",
    ):
        done = cli("serve", tmp_path / "replica0", "--machine", machine)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_serve_blames_the_users_machine_not_itself(tmp_path: Path) -> None:
    """A module raising on import, a class needing arguments, a missing file:
    one line naming what to fix, exit 2 (never "a bug in trio-replica", 70);
    a ``file.py:Class`` path is loaded from the file."""
    LocalCluster(tmp_path, n=1, tls=False)
    (tmp_path / "raises_sm.py").write_text("raise RuntimeError('config missing')\n")
    (tmp_path / "tally_sm.py").write_text(
        "from trio_replica.machines.counter import Counter\n"
        "class Tally(Counter):\n"
        "    pass\n"
        "class NeedsArgs(Counter):\n"
        "    def __init__(self, start):\n"
        "        super().__init__()\n"
    )
    cases = {
        f"{tmp_path / 'raises_sm.py'}:Tally": "RuntimeError: config missing",
        f"{tmp_path / 'tally_sm.py'}:NeedsArgs": "NeedsArgs() raised TypeError",
        f"{tmp_path / 'absent_sm.py'}:Tally": "there is no file",
        f"{tmp_path / 'tally_sm.py'}:Missing": "has no Missing",
    }
    for machine, reason in cases.items():
        done = cli("serve", tmp_path / "replica0", "--machine", machine)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], done.stderr
        assert "bug in trio-replica" not in done.stderr
    # The file path form loads the class from the file.
    assert load_machine(f"{tmp_path / 'tally_sm.py'}:Tally").__name__ == "Tally"


def test_plain_tcp_only_when_asked_and_warned_at_every_start(tmp_path: Path) -> None:
    """``--insecure`` at format (or serve) is the only way to plain TCP, and
    ``serve`` says so at WARNING every time it starts."""
    cluster = LocalCluster(tmp_path / "plain", n=1, tls=False)
    membership = json.loads((cluster.dirs[0] / "cluster.json").read_text())
    assert membership["tls"] is None and membership["insecure"] is True
    try:
        for _ in range(2):
            cluster.start(0)
            cluster.wait_agreed()
            assert cluster.stop(0) == 0
    finally:
        cluster.kill_all()
    assert cluster.log_text(0).count("WARNING trio_replica.serve: serving on PLAIN TCP") == 2

    # A TLS directory served with --insecure: plain, and warned about.
    secure = LocalCluster(tmp_path / "tls", n=1)
    membership = json.loads((secure.dirs[0] / "cluster.json").read_text())
    assert membership["tls"]["ca"] == str(secure.certs / "ca.pem")
    # A directory that records no choice (formatted before TLS existed): refused.
    del membership["tls"], membership["insecure"]
    (secure.dirs[0] / "cluster.json").write_text(json.dumps(membership))
    refused = cli("serve", secure.dirs[0], "--machine", MACHINE)
    assert refused.returncode == 2 and "--insecure" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    # TLS options and --insecure together: refused.
    both = cli(
        "serve", secure.dirs[0], "--machine", MACHINE, "--insecure", "--tls-dir", secure.certs
    )
    assert both.returncode == 2 and "--insecure" in both.stderr
    # Missing files: a clear error.
    missing = cli("serve", secure.dirs[0], "--machine", MACHINE, "--tls-dir", tmp_path / "none")
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_clients_max_is_set_at_format_and_checked(tmp_path: Path) -> None:
    bad = cli("format", tmp_path / "x", "--cluster-id", 1, "--replica", 0,
              "--addresses", "127.0.0.1:1", "--clients-max", 0)  # fmt: skip
    assert bad.returncode == 2 and "--clients-max" in bad.stderr
    assert not (tmp_path / "x").exists()
    clients = 40  # more than the default 32: with it they would evict each other
    cluster = LocalCluster(tmp_path, clients_max=clients, tls=False)  # 120 connections: kept cheap
    membership = json.loads((cluster.dirs[0] / "cluster.json").read_text())
    assert membership["clients_max"] == clients
    # serve checks a --clients-max it is given against the directory's.
    other = cli("serve", cluster.dirs[0], "--machine", MACHINE, "--clients-max", 32)
    assert other.returncode == 2 and "differs from the 40" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1

    async def many() -> list[int]:
        config = ClusterConfig(cluster.cluster_id, 3, clients_max=clients)
        totals: list[int] = []

        async def one() -> None:
            async with (
                open_tcp_client_transport(cluster.cluster_id, cluster.addresses) as transport,
                open_cluster_client(config, transport=transport) as client,
            ):
                for _ in range(3):
                    totals.append(await client.submit({"add": 1}))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(clients):
                    nursery.start_soon(one)  # a SessionEvictedError would fail the test
        return totals

    try:
        cluster.start_all()
        report = cluster.wait_agreed()
        assert {e["clients_max"] for e in report["replicas"]} == {clients}
        totals = trio.run(many)
        assert sorted(totals) == list(range(1, 3 * clients + 1))
        assert cluster.stop_all() == [0, 0, 0]
    finally:
        cluster.kill_all()
    assert "up to 40 client sessions" in cluster.log_text(0)
