"""pytest plugin for trio-replica: seeded fixtures and the seed of a failing test.

The plugin is opt-in, so installing trio-replica changes nothing in pytest
sessions that do not ask for it. Turn it on with ``pytest_plugins =
["trio_replica.testing.plugin"]`` in the root ``conftest.py`` (or a test
module), with ``-p trio_replica.testing.plugin`` in ``addopts``, or on the
command line.

Fixtures:

* ``replica_seed``: the seed of this test: ``--replica-seed N`` when given,
  otherwise one derived from the test's node id (stable from run to run, and
  different between tests).
* ``simulated_disk``: a :class:`~trio_replica.testing.SimulatedDisk` seeded
  with ``replica_seed``.
* ``cluster_factory``: ``async with cluster_factory(MachineClass, **options) as
  cluster`` runs an in-process cluster
  (:func:`~trio_replica.testing.inprocess_cluster.open_inprocess_cluster`)
  seeded with ``replica_seed``.
* ``replica_factory``: ``async with replica_factory(machine, **options) as
  replica`` opens :func:`trio_replica.open_replica` on ``simulated_disk`` (or
  on ``disk=...``).

When a test that used the seed fails, its report gets a section naming the
seed and the command line option that replays it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from .disk import SimulatedDisk

__all__ = [
    "cluster_factory",
    "pytest_addoption",
    "pytest_runtest_makereport",
    "replica_factory",
    "replica_seed",
    "simulated_disk",
]

_SEED_KEY = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--replica-seed``."""
    group = parser.getgroup("trio-replica")
    group.addoption(
        "--replica-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed for SimulatedDisk fixtures and simulations (default: derived from each "
        "test's id); a failing test prints the seed that replays it",
    )


@pytest.fixture
def replica_seed(request: pytest.FixtureRequest) -> int:
    """The seed of this test (``--replica-seed`` or derived from the test id)."""
    given: int | None = request.config.getoption("replica_seed")
    seed = given if given is not None else zlib.crc32(request.node.nodeid.encode())
    request.node.stash[_SEED_KEY] = seed
    return seed


@pytest.fixture
def simulated_disk(replica_seed: int) -> SimulatedDisk:
    """A fresh :class:`SimulatedDisk` seeded with ``replica_seed``."""
    return SimulatedDisk(seed=replica_seed)


@pytest.fixture
def replica_factory(
    simulated_disk: SimulatedDisk,
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """Open replicas on the test's disk: ``replica_factory(machine, *, disk=None, **options)``
    returns ``open_replica(disk or simulated_disk, machine, **options)``."""

    def factory(
        machine: Any, *, disk: Any = None, **options: Any
    ) -> AbstractAsyncContextManager[Any]:
        from trio_replica import open_replica  # type: ignore[attr-defined,unused-ignore]

        target = simulated_disk if disk is None else disk
        opened: AbstractAsyncContextManager[Any] = open_replica(target, machine, **options)
        return opened

    return factory


@pytest.fixture
def cluster_factory(replica_seed: int) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """Open in-process clusters seeded with ``replica_seed``:
    ``cluster_factory(machine, **options)`` returns
    ``open_inprocess_cluster(machine, seed=replica_seed, **options)``."""

    def factory(machine: Any, **options: Any) -> AbstractAsyncContextManager[Any]:
        from .inprocess_cluster import open_inprocess_cluster

        options.setdefault("seed", replica_seed)
        opened: AbstractAsyncContextManager[Any] = open_inprocess_cluster(machine, **options)
        return opened

    return factory


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Name the seed of a failing test, so that it can be replayed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    seed = item.stash.get(_SEED_KEY, None)
    if report.failed and seed is not None:
        report.sections.append(
            (
                "trio-replica seed",
                f"this test used seed {seed}; replay it with: "
                f"pytest {item.nodeid!r} --replica-seed {seed}",
            )
        )
