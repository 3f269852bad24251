"""The cluster benchmark runs end to end on a tiny size (speed is never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trio_replica.benchmarking.cluster import (
    ClusterBenchOptions,
    format_cluster_table,
    pysyncobj_available,
    run_cluster,
)
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
