"""Deterministic Trio scheduling, so that a seeded simulation replays exactly.

Trio deliberately randomizes the order in which simultaneously runnable
tasks run. It also has a deterministic mode, meant for Hypothesis: tasks are
ordered by creation and shuffled with a module-level ``random.Random`` that
can be seeded. :func:`deterministic_scheduling` switches that mode on and
seeds it for the duration of a ``with`` block, then restores both.

This relies on Trio internals (the same hook Trio registers for
Hypothesis); if a Trio release changes them, it raises ``RuntimeError``
rather than silently losing determinism.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["deterministic_scheduling"]

_FLAG = "_ALLOW_DETERMINISTIC_SCHEDULING"


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Within the block, Trio schedules runnable tasks in an order chosen by ``seed``."""
    try:
        import trio._core._run as run_module
    except ImportError as exc:  # pragma: no cover - depends on the Trio version
        raise RuntimeError("this Trio version has no deterministic scheduling hook") from exc
    rng = getattr(run_module, "_r", None)
    if not isinstance(rng, random.Random) or not hasattr(run_module, _FLAG):
        raise RuntimeError("this Trio version has no deterministic scheduling hook")
    saved_flag = getattr(run_module, _FLAG)
    saved_state = rng.getstate()
    setattr(run_module, _FLAG, True)
    rng.seed(seed)
    try:
        yield
    finally:
        setattr(run_module, _FLAG, saved_flag)
        rng.setstate(saved_state)
