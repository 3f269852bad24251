"""Enumerating crash states: every state a power loss could leave.

:func:`crash_states` yields the distinct states of one moment (the disk as
it is now); :class:`CrashRecorder` collects them after every operation of a
whole workload, together with what the workload had acknowledged at that
moment, so a test can recover each state and check the invariants against
exactly what was promised before the crash.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

import attrs

from .disk import DiskOperation, Observation, SimulatedDisk, derive_seed
from .persistence import tree_digest

__all__ = ["CrashPoint", "CrashRecorder", "crash_states"]

T = TypeVar("T", bound=Hashable)


def crash_states(
    disk: SimulatedDisk, *, max_states: int = 256, seed: int | None = None
) -> Iterator[SimulatedDisk]:
    """Yield each distinct state a crash of ``disk`` now could leave.

    What is enumerated: the product, over every operation still pending (see
    :meth:`SimulatedDisk.pending_operations`), of its possible outcomes:

    * each pending write of a file (since that file's last fsync): lost,
      kept, size grown with zeros but data not landed (appends only), and for
      every sector boundary inside it: the sectors before it landed and the
      rest cut off, zeroed or garbage, or the sectors after it landed and the
      ones before not (sectors persist out of order);
    * each pending truncate: applied or not;
    * each directory with pending creates/renames/unlinks (since its last
      fsync): any prefix of them applied (any subset with
      ``reorder_directory_ops=True``), each one atomic.

    The outcomes of different operations are chosen independently and
    replayed in issue order over the durable content, so a later write can
    land over a lost earlier one (the gap reads as zeros). States are
    de-duplicated by content (names and bytes), so at most ``max_states``
    DISTINCT states are yielded. When the product is larger than
    ``max_states``, the durable state (nothing pending survived) and the
    all-kept state come first, then a sample drawn by ``seed`` (default: the
    disk's seed): the same disk and seed always yield the same states in the
    same order. Each yielded disk is new, fully durable, and gets a seed
    derived from ``seed`` and its index; ``disk`` itself is not changed.
    """
    if max_states < 1:
        raise ValueError(f"max_states must be at least 1, got {max_states}")
    base = disk.seed if seed is None else seed
    space = disk.crash_space(garbage_seed=derive_seed(base, "states-garbage"))
    rng = random.Random(derive_seed(base, "states"))
    seen: set[str] = set()
    tried: set[int] = set()

    def candidates() -> Iterator[int]:
        if space.total <= max_states:
            yield from range(space.total)
            return
        yield 0
        yield space.all_kept
        # Sampling with a bound on attempts: duplicates (outcomes that do not
        # change content) must not make this loop forever.
        for _ in range(4 * max_states):
            yield rng.randrange(space.total)

    for index in candidates():
        if len(seen) >= max_states:
            return
        if index in tried:
            continue
        tried.add(index)
        root = space.build(index)
        digest = tree_digest(root)
        if digest in seen:
            continue
        seen.add(digest)
        yield disk._child(root, derive_seed(base, "state", index))


@attrs.frozen
class CrashPoint(Generic[T]):
    """One crash state recorded during a workload.

    ``operation`` is the disk operation after which the crash happens
    (``None``: before the first one); ``context`` is what the recorder's
    ``context()`` returned at that moment (for example the ops acknowledged
    so far); ``state`` is the disk a restart would find.
    """

    operation: DiskOperation | None
    context: T
    state: SimulatedDisk


class CrashRecorder(Generic[T]):
    """Records the crash states after every operation of a workload on ``disk``.

    Use it as a context manager around the workload::

        with CrashRecorder(disk, context=lambda: len(acked)) as recorder:
            await workload()
        for point in recorder.points:
            ...  # recover point.state; check against point.context

    After each mutating disk operation (and once on entry) it calls
    :func:`crash_states` with ``max_states_per_point`` and records one
    :class:`CrashPoint` per state. A state with the same content AND the same
    context as an earlier one is recorded once. ``context`` must return a
    hashable value (a snapshot, not a live list).
    """

    def __init__(
        self,
        disk: SimulatedDisk,
        *,
        context: Callable[[], T],
        max_states_per_point: int = 32,
        seed: int | None = None,
    ) -> None:
        self.disk = disk
        self._context = context
        self._max = max_states_per_point
        self._seed = disk.seed if seed is None else seed
        self._seen: set[tuple[str, T]] = set()
        self._observing: Observation | None = None
        self.points: list[CrashPoint[T]] = []
        """The recorded crash states, in the order they were found."""
        self.operations = 0
        """How many disk operations were observed."""
        self.sampled_points = 0
        """Moments whose crash space exceeded ``max_states_per_point``, so
        that only a sample of their states was recorded (0: exhaustive)."""

    def _on_operation(self, operation: DiskOperation | None) -> None:
        if operation is not None:
            self.operations += 1
        context = self._context()
        if self.disk.crash_space().total > self._max:
            self.sampled_points += 1
        seed = derive_seed(self._seed, "point", self.operations)
        for state in crash_states(self.disk, max_states=self._max, seed=seed):
            key = (state.digest(), context)
            if key not in self._seen:
                self._seen.add(key)
                self.points.append(CrashPoint(operation, context, state))

    @property
    def exhaustive(self) -> bool:
        """True when every crash state of every moment was recorded (no sampling)."""
        return self.sampled_points == 0

    def __enter__(self) -> CrashRecorder[T]:
        self._on_operation(None)
        self._observing = self.disk.observe(self._on_operation)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._observing is not None:
            self._observing.stop()
