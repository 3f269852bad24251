"""The pytest plugin: seeded fixtures, --replica-seed, and the seed of a failing test."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from trio_replica.machines.counter import Counter
from trio_replica.testing import SimulatedDisk

_TEST_FILE = """
def test_uses_the_disk(simulated_disk, replica_seed):
    print("SEED", simulated_disk.seed, replica_seed)
    f = simulated_disk.open("a", create=True)
    f.append(b"x")
    assert simulated_disk.crash() is not None
    assert False, "deliberate failure"

def test_passes(simulated_disk):
    pass
"""


_PLUGIN = "trio_replica.testing.plugin"


def _pytest(tmp_path: Path, *args: str, opt_in: bool = True) -> str:
    (tmp_path / "test_seeded.py").write_text(_TEST_FILE)
    plugin = ["-p", _PLUGIN] if opt_in else []
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *plugin, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def test_failing_test_reports_its_seed_and_the_option_replays_it(tmp_path: Path) -> None:
    out = _pytest(tmp_path)
    assert "1 failed, 1 passed" in out
    match = re.search(r"this test used seed (\d+); replay it with: .*--replica-seed (\d+)", out)
    assert match is not None, out
    seed = int(match.group(1))
    assert match.group(2) == str(seed)
    assert f"SEED {seed} {seed}" in out
    # The seed is stable from run to run: derived from the test id ...
    assert seed == zlib.crc32(b"test_seeded.py::test_uses_the_disk")
    # ... and --replica-seed overrides it.
    replay = _pytest(tmp_path, "--replica-seed", "1234")
    assert "SEED 1234 1234" in replay
    assert "this test used seed 1234;" in replay
    # A passing test prints no seed section.
    assert out.count("this test used seed") == 1


_UNRELATED_TESTS = """
import sys

import pytest

def test_trio_replica_is_not_even_imported():
    assert not [m for m in sys.modules if m.split(".")[0] == "trio_replica"]

def test_no_fixture_of_the_plugin(request):
    assert not request.config.pluginmanager.has_plugin("trio_replica.testing.plugin")
    for name in ("replica_seed", "simulated_disk", "replica_factory"):
        with pytest.raises(pytest.FixtureLookupError):
            request.getfixturevalue(name)
"""


def test_installing_the_package_changes_nothing_in_other_pytest_sessions(tmp_path: Path) -> None:
    # The plugin is opt-in: a project that only installed trio-replica gets
    # no option, no fixture, and not even an import of the package.
    (tmp_path / "test_unrelated.py").write_text(_UNRELATED_TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_unrelated.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "--replica-seed" not in help_text
    assert "--replica-seed" in _pytest_help(tmp_path, "-p", _PLUGIN)


def _pytest_help(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--help"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def test_without_opting_in_the_fixtures_are_missing(tmp_path: Path) -> None:
    out = _pytest(tmp_path, opt_in=False)
    assert "fixture 'simulated_disk' not found" in out


def test_opting_in_with_pytest_plugins_in_a_module(tmp_path: Path) -> None:
    (tmp_path / "test_module_opt_in.py").write_text(
        f"pytest_plugins = [{_PLUGIN!r}]\n\ndef test_seeded(simulated_disk, replica_seed):\n"
        "    assert simulated_disk.seed == replica_seed\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_module_opt_in.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_simulated_disk_fixture_is_seeded(simulated_disk: SimulatedDisk, replica_seed: int) -> None:
    assert isinstance(simulated_disk, SimulatedDisk)
    assert simulated_disk.seed == replica_seed
    assert simulated_disk.files() == []


async def test_replica_factory_opens_replicas_on_the_test_disk(
    replica_factory: Any, simulated_disk: SimulatedDisk
) -> None:
    async with replica_factory(Counter(), snapshot_every=5) as replica:
        for _ in range(7):
            total = await replica.submit({"add": 2})
    assert total == 14
    assert any(path.startswith("wal/") for path in simulated_disk.files())
    assert any(path.startswith("snapshots/") for path in simulated_disk.files())
    machine = Counter()
    async with replica_factory(machine, disk=simulated_disk.crash()) as replica:
        assert machine.total == 14  # every acked op survived the crash
        assert replica.applied_op == 7
