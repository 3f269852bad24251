"""Sequential models for the linearizability checker.

The checker asks one question of a model, over and over: "in state ``s``,
what does ``command`` return, and what state follows?". States must be
hashable and compare equal exactly when they are the same state, because
the search memoizes (linearized set, state) pairs (Lowe 2017) and would
otherwise revisit or, worse, wrongly merge states.

Two models are provided:

* :class:`MachineModel` drives the user's own
  :class:`~trio_replica.stm.protocol.StateMachine` through ``apply`` /
  ``snapshot`` / ``restore``. A state is named by a key computed from
  ``snapshot()``: by default its canonical CBOR encoding (RFC 8949 core
  deterministic encoding via ``cbor2.dumps(..., canonical=True)``), so
  equal states get equal keys even though Python orders sets and dicts
  differently from run to run.
* :class:`StepModel` wraps a pure function ``step(state, command) ->
  (state, result)`` over hashable states; the fastest choice when writing
  a model by hand.

A model that rejects a command (:class:`~trio_replica.errors.InvalidCommand`)
returns :class:`~trio_replica.testing.history.Rejected` and keeps its state,
which is what the ``StateMachine`` contract requires of ``apply``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any

import cbor2

from ..errors import InvalidCommand
from ..stm.protocol import StateMachine
from .history import Rejected

__all__ = ["MachineModel", "Model", "StepModel", "canonical_key"]


def canonical_key(snapshot: Any) -> bytes:
    """The canonical CBOR encoding of ``snapshot``: equal values give equal bytes."""
    return cbor2.dumps(snapshot, canonical=True)


# The machine holds a state no key was computed for: restore before use.
_UNNAMED = object()


class Model(ABC):
    """A sequential specification the checker can step.

    :meth:`initial` begins a new search (one per partition) and returns the
    state of a fresh model; :meth:`step` computes one transition. A model
    object is used by one search at a time.
    """

    @abstractmethod
    def initial(self) -> Hashable:
        """Reset to a fresh model and return its state."""

    @abstractmethod
    def step(self, state: Hashable, op: int, command: Any) -> tuple[Hashable, Any]:
        """Apply ``command`` in ``state``; return ``(next state, result)``.

        ``op`` is the 1-based position of the command in the candidate
        order being tried within its partition (what a state machine sees as
        its op number there). Results must compare equal (as the check
        compares them) whatever ``op`` is: the search leaves out operations
        that cannot matter, which shifts positions. A rejection returns ``(state, Rejected(...))``.
        Any exception other than ``InvalidCommand`` is a bug in the model and
        propagates out of the check.
        """

    def step_matching(
        self,
        state: Hashable,
        op: int,
        command: Any,
        observed: Any,
        equal: Callable[[Any, Any], bool],
    ) -> tuple[bool, Hashable]:
        """:meth:`step`, for a command whose result was ``observed``: return
        ``(True, next state)`` if ``equal(result, observed)``, else ``(False,
        anything)``. A model may skip computing the next state when the
        result does not match (the search only needs it on a match).
        """
        after, result = self.step(state, op, command)
        return equal(result, observed), after


class StepModel(Model):
    """A model given as a pure function over hashable, immutable states.

    ``initial``: the state of a fresh model. ``step(state, command)`` returns
    ``(next state, result)`` without mutating ``state``, or raises
    :class:`~trio_replica.errors.InvalidCommand` to reject the command.
    """

    def __init__(self, initial: Hashable, step: Callable[[Any, Any], tuple[Hashable, Any]]):
        self._initial = initial
        self._step = step

    def initial(self) -> Hashable:
        """The ``initial`` state given at construction."""
        return self._initial

    def step(self, state: Hashable, op: int, command: Any) -> tuple[Hashable, Any]:
        """Call the step function (``op`` unused); a rejection keeps ``state``."""
        try:
            return self._step(state, command)
        except InvalidCommand as error:
            return state, Rejected(str(error))


class MachineModel(Model):
    """The user's :class:`~trio_replica.stm.protocol.StateMachine` as the model.

    ``factory`` builds a fresh machine (called once per partition, so state
    never leaks between partitions). ``key`` maps a ``snapshot()`` to a
    hashable state name; two snapshots with equal keys must be the same
    state as far as every later result is concerned. The default,
    :func:`canonical_key`, is exact; a custom key may be faster or may
    deliberately merge states that differ only in fields no result exposes.

    The machine is moved between states with ``restore``: with the default
    key from the decoded key bytes (so the machine never shares objects with
    the memo), with a custom key from a deep copy of the stored snapshot.
    ``snapshot()`` values must therefore round-trip through ``restore``,
    which the ``StateMachine`` contract already demands. A rejected command
    must leave the state unchanged (also the contract), so no snapshot is
    taken after a rejection.

    ``uses_op=False`` promises that ``apply`` ignores its ``op`` argument
    (results and state depend only on the state and the command) and that
    results are never mutated afterwards. Transitions are then remembered
    per (state, command) for the duration of a search, and a search tries
    the same command in the same state very often, so this makes checks of
    a machine several times faster.
    """

    def __init__(
        self,
        factory: Callable[[], StateMachine],
        *,
        key: Callable[[Any], Hashable] | None = None,
        uses_op: bool = True,
    ):
        self._factory = factory
        self._custom_key = key
        self._cache = not uses_op
        self._machine: StateMachine | None = None
        self._current: Hashable = None
        # Custom keys only: the snapshot each key was computed from.
        self._snapshots: dict[Hashable, Any] = {}
        # uses_op=False only: (state, id of the command) -> (state, result).
        # The commands outlive the search that uses them, so ids are stable.
        self._transitions: dict[tuple[Hashable, int], tuple[Hashable, Any]] = {}

    def _key(self, snapshot: Any) -> Hashable:
        if self._custom_key is None:
            return canonical_key(snapshot)
        state = self._custom_key(snapshot)
        self._snapshots.setdefault(state, snapshot)
        return state

    def initial(self) -> Hashable:
        """Build a fresh machine with the factory; its state is the key of its snapshot."""
        self._machine = self._factory()
        self._snapshots = {}
        self._transitions = {}
        self._current = self._key(self._machine.snapshot())
        return self._current

    def _move_to(self, machine: StateMachine, state: Hashable) -> None:
        if self._custom_key is None:
            assert isinstance(state, bytes)
            machine.restore(cbor2.loads(state))
        else:
            machine.restore(copy.deepcopy(self._snapshots[state]))
        self._current = state

    def step(self, state: Hashable, op: int, command: Any) -> tuple[Hashable, Any]:
        """Restore ``state`` unless the machine is in it already, ``apply(op,
        command)``, and name the new state by the key of its snapshot."""
        if self._cache:
            known = self._transitions.get((state, id(command)))
            if known is None:
                known = self._transitions[(state, id(command))] = self._apply(state, op, command)
            return known
        return self._apply(state, op, command)

    def _apply(self, state: Hashable, op: int, command: Any) -> tuple[Hashable, Any]:
        machine = self._machine
        assert machine is not None, "initial() starts every search"
        if self._current != state:
            self._move_to(machine, state)
        try:
            result = machine.apply(op, command)
        except InvalidCommand as error:
            return state, Rejected(str(error))
        self._current = self._key(machine.snapshot())
        return self._current, result

    def step_matching(
        self,
        state: Hashable,
        op: int,
        command: Any,
        observed: Any,
        equal: Callable[[Any, Any], bool],
    ) -> tuple[bool, Hashable]:
        """Like :meth:`step`, but take no snapshot when the result does not
        match (most tries in a search fail, and the snapshot's encoding is
        the dearest part of a step)."""
        if self._cache:
            after, result = self.step(state, op, command)
            return equal(result, observed), after
        machine = self._machine
        assert machine is not None, "initial() starts every search"
        if self._current != state:
            self._move_to(machine, state)
        try:
            result = machine.apply(op, command)
        except InvalidCommand as error:
            return equal(Rejected(str(error)), observed), state
        if not equal(result, observed):
            self._current = _UNNAMED
            return False, state
        self._current = self._key(machine.snapshot())
        return True, self._current
