"""Cancellation at every schedule point: prove code is cancellation-safe in one call.

:func:`cancel_at_each_schedule_point` runs a scenario once per schedule point
it reaches, cancelling run n at its n-th schedule point, and calls a check
after every run. (Trio's own documentation calls these "checkpoints"; this
project keeps "checkpoint" for a replica's snapshot plus compaction.) What a
schedule point means here, precisely: every time a task of the
scenario (the task running it, or any task started, directly or not, in a
nursery the scenario opened) yields to the Trio scheduler and is still
alive. Each such yield is a schedule point; most are also cancel points
(``trio.sleep``, channel operations, the start of ``run_io``...).
Cancelling "at" schedule point n means: the scenario's cancel scope is cancelled
the moment its n-th yield happens, so the Cancelled exception is raised right
there when it is a cancel point, and at the next cancel point of that task
when it is only a schedule point (``cancel_shielded_checkpoint``), exactly as
a real cancellation arriving at that moment would behave.

Trio shuffles the order of tasks that are runnable at the same time; every
run here starts that shuffle from the same seed, so a scenario that is
itself deterministic reaches the same schedule points in the same order in
every run, even with several concurrent tasks.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from .scheduling import deterministic_scheduling

__all__ = ["CancellationReport", "CancelledRun", "cancel_at_each_schedule_point"]


@attrs.frozen
class CancelledRun:
    """One run of the scenario: the schedule point it was cancelled at, the
    name of the task that was at that schedule point, and whether a
    ``Cancelled`` actually ended the run (False when the scenario reached that
    schedule point but finished anyway, for example in a shielded section)."""

    schedule_point: int
    cancelled: bool
    task: str = ""


@attrs.frozen
class CancellationReport:
    """What :func:`cancel_at_each_schedule_point` exercised.

    ``schedule_points``: schedule points of the scenario's uncancelled run.
    ``runs``: every run (the cancelled ones plus the final complete one).
    ``cancellation_points``: runs that were cancelled at a schedule point.
    ``delivered``: runs that a ``Cancelled`` actually ended.
    ``exhaustive``: False when ``max_schedule_points`` stopped the sweep early.
    ``history``: one :class:`CancelledRun` per cancelled run, in order.
    """

    schedule_points: int
    runs: int
    cancellation_points: int
    delivered: int
    exhaustive: bool
    history: tuple[CancelledRun, ...]


class _SchedulePointCounter(trio.abc.Instrument):
    """Counts the yields of one task tree and cancels a scope at the n-th."""

    def __init__(self, root: trio.lowlevel.Task, scope: trio.CancelScope, cancel_at: int | None):
        self.root = root
        self.scope = scope
        self.cancel_at = cancel_at
        self.count = 0
        self.cancelled_task = ""
        self.exited: set[trio.lowlevel.Task] = set()
        self._member: dict[trio.lowlevel.Task, bool] = {root: True}

    def _in_tree(self, task: trio.lowlevel.Task) -> bool:
        known = self._member.get(task)
        if known is not None:
            return known
        nursery = task.parent_nursery
        member = nursery is not None and self._in_tree(nursery.parent_task)
        self._member[task] = member
        return member

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.exited.add(task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task in self.exited or not self._in_tree(task):
            return
        self.count += 1
        if self.count == self.cancel_at:
            # The task has just parked at its schedule point (its abort function
            # is set), so cancelling now delivers Cancelled exactly there.
            self.cancelled_task = task.name
            self.scope.cancel()


@contextmanager
def _scheduling(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    try:
        context = deterministic_scheduling(seed)
        context.__enter__()
    except RuntimeError:
        # No hook in this Trio: runs are still correct, only the order of
        # simultaneously runnable tasks may differ between them.
        yield
        return
    try:
        yield
    finally:
        context.__exit__(None, None, None)


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


async def _run_once(
    scenario: Callable[..., Awaitable[object]],
    args: tuple[Any, ...],
    cancel_at: int | None,
) -> tuple[int, bool, str]:
    """Run the scenario once in its own task; return (schedule points,
    cancelled, name of the task cancelled)."""
    result: dict[str, Any] = {}

    async def runner() -> None:
        scope = trio.CancelScope()
        counter = _SchedulePointCounter(trio.lowlevel.current_task(), scope, cancel_at)
        result["counter"] = counter
        trio.lowlevel.add_instrument(counter)
        try:
            with scope:
                await scenario(*args)
        except BaseException as exc:
            # Handed to the caller as is, not wrapped in the nursery's group.
            result["error"] = exc
        finally:
            trio.lowlevel.remove_instrument(counter)
        result["cancelled"] = scope.cancelled_caught

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner)
    if "error" in result:
        raise result["error"]
    counter: _SchedulePointCounter = result["counter"]
    return counter.count, bool(result.get("cancelled", False)), counter.cancelled_task


async def cancel_at_each_schedule_point(
    scenario: Callable[..., Awaitable[object]],
    check: Callable[..., object],
    *,
    setup: Callable[[], object] | None = None,
    max_schedule_points: int | None = None,
    scheduling_seed: int | None = 0,
) -> CancellationReport:
    """Run ``scenario`` cancelling it at its 1st, 2nd, ... schedule point, with
    ``check`` after each run, until a run completes before the cancel point.

    ``scenario`` is an async callable. Without ``setup`` it takes no
    arguments, and ``check()`` takes none either: the scenario then usually
    opens a fresh resource each run (for example ``disk.crash()`` of a
    prepared disk). With ``setup``, each run first calls ``ctx = setup()``
    (sync or async), then ``await scenario(ctx)`` and ``check(ctx)``.
    ``check`` may be sync or async; it runs after every run, including the
    final uncancelled one, and fails the sweep by raising.

    The scenario runs in a task of its own inside the current Trio run (await
    this from a test); see the module docstring for what a schedule point is.
    Use ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock``
    fixture) when the scenario sleeps, so that timeouts cost no real time.

    An exception other than ``Cancelled`` escaping a run propagates, with a
    note naming the schedule point. ``max_schedule_points`` bounds the sweep:
    after cancelling at that many schedule points, one uncancelled run is made
    and the report says ``exhaustive=False`` if more remained.

    Each run starts Trio's scheduler from the same ``scheduling_seed`` (see
    :func:`~trio_replica.testing.scheduling.deterministic_scheduling`), so a
    deterministic scenario with several tasks reaches its schedule points in
    the same order in every run and schedule point n means the same place
    each time.
    ``None`` leaves Trio's randomized order alone (as does a Trio version
    without the hook).
    """
    history: list[CancelledRun] = []
    n = 1
    while True:
        cancel_at = None if max_schedule_points is not None and n > max_schedule_points else n
        args: tuple[Any, ...] = ()
        if setup is not None:
            ctx = setup()
            if inspect.isawaitable(ctx):
                ctx = await ctx
            args = (ctx,)
        try:
            with _scheduling(scheduling_seed):
                count, cancelled, task = await _run_once(scenario, args, cancel_at)
        except BaseException as exc:
            where = f"schedule point {cancel_at}" if cancel_at is not None else "no cancellation"
            exc.add_note(f"cancel_at_each_schedule_point: run {n}, cancelled at {where}")
            raise
        hit = cancel_at is not None and count >= cancel_at
        if hit:
            history.append(CancelledRun(n, cancelled, task))
        try:
            await _maybe_await(check(*args))
        except BaseException as exc:
            where = f"schedule point {cancel_at}" if hit else "no cancellation (complete run)"
            exc.add_note(f"cancel_at_each_schedule_point: check failed after run {n}, {where}")
            raise
        if not hit:
            return CancellationReport(
                schedule_points=count,
                runs=n,
                cancellation_points=len(history),
                delivered=sum(run.cancelled for run in history),
                exhaustive=cancel_at is not None or count <= (max_schedule_points or 0),
                history=tuple(history),
            )
        n += 1
