"""The performance goals, each a ratio measured in one run next to its target.

Every goal reads "higher is better": a speed ratio is trio-replica's speed
divided by the peer's (or by its own speed at another setting), and a goal
is met when the measured value is at least the target. The targets are the
design's:

========================================  =======  ==================================
goal                                      target   measured as
========================================  =======  ==================================
64 submitters vs raw fsync loop           5.0      ops/s / raw write+fdatasync per op
64 submitters vs sqlite group commit      2.0      ops/s / sqlite, one writer thread
256 submitters vs 64                      1.0      ops/s at 256 / ops/s at 64
1 submitter vs raw fsync loop             0.4      ops/s / raw loop
submit_many(256) vs raw fsync loop        10.0     ops/s / raw loop
journal append, batch 256, vs raw         0.4      ops/s / raw write+fdatasync, same bytes
recovery replay vs decode+apply           0.25     replay ops/s / decode+apply ops/s
recovery replay rate (1M ops)             1.0      replay ops/s / 300,000
snapshot load vs plain read               0.2      read time / load time (<= 5x)
snapshot persist vs plain write+fsync     0.667    write time / persist time (<= 1.5x)
cluster at 64 clients vs single replica   0.5      3-replica ops/s / 1-replica ops/s
cluster at C clients vs PySyncObj         1.0      ops/s / PySyncObj's (C = 1, 64, 256)
========================================  =======  ==================================
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["Goal", "format_goals"]

TARGETS: dict[str, float] = {
    "64 submitters vs raw fsync loop": 5.0,
    "64 submitters vs sqlite group commit": 2.0,
    "256 submitters vs 64": 1.0,
    "1 submitter vs raw fsync loop": 0.4,
    "submit_many(256) vs raw fsync loop": 10.0,
    "journal append, batch 256, vs raw": 0.4,
    "recovery replay vs decode+apply": 0.25,
    "recovery replay rate vs 300k ops/s": 1.0,
    "snapshot load vs plain read": 0.2,
    "snapshot persist vs plain write+fsync": 0.667,
    "cluster at 64 clients vs single replica": 0.5,
    "cluster at 1 clients vs PySyncObj": 1.0,
    "cluster at 64 clients vs PySyncObj": 1.0,
    "cluster at 256 clients vs PySyncObj": 1.0,
}
"""Each goal's name and target ratio (see the module docstring)."""


@attrs.frozen
class Goal:
    """One goal: its ``name``, the ``measured`` ratio and the ``target``."""

    name: str
    measured: float
    target: float

    @property
    def met(self) -> bool:
        """Whether the measured ratio reaches the target."""
        return self.measured >= self.target

    @classmethod
    def of(cls, name: str, measured: float) -> Goal:
        """The goal called ``name`` (a key of :data:`TARGETS`) with its measurement."""
        return cls(name, measured, TARGETS[name])


def format_goals(goals: Sequence[Goal]) -> str:
    """A plain-text table: each goal's measured ratio next to its target."""
    width = max([len(goal.name) for goal in goals] + [4])
    lines = [f"{'goal':<{width}}  {'measured':>8}  {'target':>6}  met"]
    for goal in goals:
        lines.append(
            f"{goal.name:<{width}}  {goal.measured:>8.2f}  {goal.target:>6.2f}  "
            f"{'yes' if goal.met else 'NO'}"
        )
    return "\n".join(lines)
