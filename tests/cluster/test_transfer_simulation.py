"""State transfer in the deterministic simulator.

Seeds with long partitions, a small checkpoint interval and a small
retention leave replicas further behind than any peer retains: they must
converge by fetching a checkpoint (vouched by a quorum) from a peer, with
every checker on (agreement, exactly once, durable before send, monotonic,
linearizability). Crashes injected right after each step of a transfer
(a chunk stored, the file installed, the state restored, the journal
restarted) must all recover. The seed set is small and bounded for CI.
"""

from __future__ import annotations

import attrs
import pytest

from trio_replica.cluster import Rules
from trio_replica.cluster.config import CORRECT_RULES
from trio_replica.testing.cluster import SimOptions, run_seed, state_transfer_options

TICKS = 1500
SEEDS = [(3, s) for s in (0, 3, 4, 8)] + [(5, s) for s in (1, 3)]


def long_partitions(
    replicas: int, seed: int, rules: Rules = CORRECT_RULES, **more: float
) -> SimOptions:
    options = state_transfer_options(seed, replicas, TICKS)
    return attrs.evolve(options, rules=rules, **more)


@pytest.mark.parametrize(("replicas", "seed"), SEEDS)
def test_long_partitions_converge_through_state_transfer(replicas: int, seed: int) -> None:
    result = run_seed(seed, long_partitions(replicas, seed, crash_in_transfer=0.0))
    assert result.ok, "\n".join(str(v) for v in result.violations)
    assert result.converged_at is not None
    assert result.stats["transfers"] > 0


@pytest.mark.parametrize(("replicas", "seed"), SEEDS[:4])
def test_crashes_during_transfers_all_recover(replicas: int, seed: int) -> None:
    result = run_seed(seed, long_partitions(replicas, seed))
    assert result.ok, "\n".join(str(v) for v in result.violations)
    assert result.stats["transfers"] > 0


def test_crashes_during_transfers_really_happen() -> None:
    crashes = sum(
        run_seed(s, long_partitions(n, s)).stats["transfer_crashes"] for n, s in SEEDS[:4]
    )
    assert crashes > 0


def test_restarting_the_journal_before_the_view_state_vouches_is_caught() -> None:
    """The seeds the default set runs with this profile (seed 1000 + s)."""
    broken = Rules(restart_journal_after_vouched=False)
    results = [run_seed(1000 + s, long_partitions(3, s, broken)) for s in (0, 2)]
    violations = [v for result in results for v in result.violations]
    assert any(v.invariant == "restart" and "missing" in v.detail for v in violations), violations
