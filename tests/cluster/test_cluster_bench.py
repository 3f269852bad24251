"""The cluster benchmark runs end to end on a tiny size (speed is never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trio_replica.benchmarking.cluster import (
    ClusterBenchOptions,
    ClusterRow,
    format_cluster_table,
    pysyncobj_available,
    run_cluster,
)
from trio_replica.benchmarking.peers import Latency
from trio_replica.cli import bench, main


@pytest.mark.slow
def test_cluster_benchmark_measures_every_system(tmp_path: Path) -> None:
    rows = run_cluster(str(tmp_path), ops=lambda clients: 6 * clients, concurrency=(1, 3))
    assert [r.clients for r in rows] == [1, 3]
    for r in rows:
        # Every op was acknowledged (the clients submit exactly this many).
        assert r.cluster.ops == r.single.ops == 6 * r.clients
        assert r.cluster.seconds > 0 and r.cluster.p50_ms > 0
        assert r.cluster_vs_single > 0
        if pysyncobj_available():
            assert r.pysyncobj is not None and r.pysyncobj.ops == 6 * r.clients
        else:
            assert r.pysyncobj is None and r.cluster_vs_pysyncobj is None
    lines = format_cluster_table(rows).splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["clients", "ops", "|"]
    # The replicas were stopped cleanly and said so.
    log = (tmp_path / "cluster" / "replica0.log").read_text()
    assert "serving" in log and "journal is closed" in log


@pytest.mark.slow
def test_bench_cluster_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[ClusterBenchOptions] = []
    real = bench.cluster_options

    def options(args: object) -> ClusterBenchOptions:
        seen.append(real(args))  # type: ignore[arg-type]
        return seen[-1]

    monkeypatch.setattr(bench, "CLUSTER_CONCURRENCY", (2,))
    monkeypatch.setattr(bench, "cluster_ops", lambda quick, clients: 5)
    monkeypatch.setattr(bench, "cluster_options", options)
    assert main(["bench", "--cluster", "--quick", "--json", "--dir", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    measured = [r for r in rows if r["benchmark"] == "cluster"]
    assert len(measured) == 1 and measured[0]["clients"] == 2
    assert measured[0]["cluster"]["ops"] == 5 and measured[0]["transport"] == "plain TCP"
    assert seen == [ClusterBenchOptions()]
    # --cluster picks its section; combined with --only it is a usage error.
    assert main(["bench", "--cluster", "--only", "journal"]) == 2


@pytest.mark.slow
def test_bench_cluster_tls_reports_tls_and_plain_side_by_side(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(bench, "CLUSTER_CONCURRENCY", (2,))
    monkeypatch.setattr(bench, "cluster_ops", lambda quick, clients: 5)
    args = ["bench", "--cluster", "--tls", "--quick", "--json", "--dir", str(tmp_path)]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    measured = next(r for r in rows if r["benchmark"] == "cluster")
    # TLS clients completed every op against the TLS cluster (they cannot
    # talk to a plain one), plain clients against the plain one.
    assert measured["cluster_tls"]["ops"] == 5 and measured["cluster"]["ops"] == 5
    assert measured["tls_vs_plain"] > 0
    # --tls belongs to the cluster benchmark.
    assert main(["bench", "--tls", "--only", "journal"]) == 2


def test_the_table_shows_tls_next_to_plain() -> None:
    plain = Latency.of(1.0, [0.001] * 100)
    secured = Latency.of(2.0, [0.002] * 100)
    rows = [ClusterRow(4, plain, plain, None, 0, secured)]
    header, line = format_cluster_table(rows).splitlines()
    assert header.endswith("| TLS vs plain") and line.endswith("0.50")
    assert "TLS" not in format_cluster_table([ClusterRow(4, plain, plain, None, 0)])
