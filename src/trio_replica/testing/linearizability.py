"""A linearizability checker for client histories, with the user's state machine as the model.

A history is linearizable when every operation can be given a single instant
between its invocation and its completion such that applying the operations
one at a time in that order, to the sequential model, produces exactly the
results the clients saw (Herlihy & Wing 1990). This module decides it::

    from trio_replica.testing import HistoryRecorder, check_linearizability

    recorder = HistoryRecorder()
    # in each client task:
    pending = recorder.invoke(client_id, command)
    ...  # then pending.ok(result) / .rejected(reason) / .fail() / .info()

    result = check_linearizability(
        recorder.operations(),
        MyStateMachine,                      # a factory of the user's StateMachine
        partition=lambda command: command["key"],
    )
    assert result, result.describe()         # truthy only when LINEARIZABLE

The API, all importable from :mod:`trio_replica.testing`:

* :class:`~trio_replica.testing.history.HistoryRecorder`,
  :class:`~trio_replica.testing.history.Operation`,
  :class:`~trio_replica.testing.history.Outcome`,
  :class:`~trio_replica.testing.history.Rejected`: recording histories.
* :func:`check_linearizability` returns a :class:`CheckResult` whose
  :attr:`~CheckResult.verdict` is a :class:`Verdict`: ``LINEARIZABLE``,
  ``NOT_LINEARIZABLE`` (with a :class:`Counterexample`) or ``INCONCLUSIVE``
  (with a reason: the budget ran out; never reported as linearizable).
* The model: a zero-argument factory of a
  :class:`~trio_replica.stm.protocol.StateMachine`, or a
  :class:`~trio_replica.testing.sequential_model.Model` such as
  :class:`~trio_replica.testing.sequential_model.MachineModel` (the same
  with a custom state key) or
  :class:`~trio_replica.testing.sequential_model.StepModel` (a pure
  ``step(state, command)`` function).

How it works, and where each idea comes from:

* The search is Wing & Gong's (1993) with Lowe's memoization of
  (linearized set, model state) pairs (Lowe, "Testing for linearizability",
  2017); see :mod:`trio_replica.testing.wing_gong`. Porcupine
  (github.com/anishathalye/porcupine) uses the same combination; this is an
  independent implementation.
* P-compositionality (Horn & Kroening, "Faster linearizability checking via
  P-compositionality", FORTE 2015): when the model is a set of independent
  objects (keys of a key-value store, say), the history is linearizable if
  and only if each key's sub-history is, and each is searched alone with a
  fresh model, which turns one exponential search into many small ones.
  ``partition(command)`` names the key an operation touches, or a ``set`` /
  ``frozenset`` of keys for one touching several: operations sharing a key
  are searched together, so a multi-key operation joins its keys into one
  partition (with enough of them, one partition for everything, which is
  always correct). Partitioning is only sound when operations on disjoint
  keys really are independent in the model: results and state of one key
  never depend on operations of another. Without ``partition`` the whole
  history is one partition.
* Reads: ``read_only(command)`` may name the commands that never change
  the state; the search places each as soon as its result matches instead
  of trying it in every order (see :mod:`trio_replica.testing.wing_gong`).
* Unknown outcomes (Jepsen's ``:info``, Porcupine's return at infinity):
  the operation may take effect at any point after its invocation or never,
  and its result constrains nothing. FAILED operations are dropped.
* The budget: ``max_steps`` model steps and/or ``time_limit`` seconds for
  the whole check. A search that runs out reports ``INCONCLUSIVE`` with the
  reason. Steps make the outcome reproducible; a time limit does not.
* The counterexample: a violation in a partition is narrowed to the shortest
  prefix of that partition's history (cut at an operation's completion;
  operations still running at the cut become unknown, later ones are
  dropped) that is already not linearizable, found by bisection. Such a
  prefix only relaxes constraints, so it being non-linearizable proves the
  whole history is not. The report names the operation whose completion
  breaks it, the operations concurrent with it, the longest linearizable
  order the search found, and what the model would answer next after it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import attrs
import cbor2

from ..stm.protocol import StateMachine
from .history import Operation, Outcome
from .sequential_model import MachineModel, Model
from .wing_gong import Budget, SearchResult, search

__all__ = [
    "DEFAULT_MAX_STEPS",
    "CheckResult",
    "Counterexample",
    "Verdict",
    "check_linearizability",
    "results_equal",
]

DEFAULT_MAX_STEPS = 20_000_000
"""Model steps a check may spend by default (tens of seconds for simple models)."""

# How many operations of the longest linearization describe() lists.
_SHOWN = 10


class Verdict(enum.Enum):
    """The answer of a check."""

    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    INCONCLUSIVE = "inconclusive"


@attrs.frozen
class Counterexample:
    """Why a history is not linearizable, narrowed to one partition.

    ``partition``: the keys of the failing partition (``()`` when the
    history was not partitioned). ``operations``: the shortest prefix of the
    partition's history that is already not linearizable (operations still
    running at its end shown as unknown). ``operation``: the last one to
    complete in it; with its result the prefix stops being linearizable.
    ``concurrent``: the operations of the prefix overlapping ``operation``
    in time. ``linearized``: the longest order of operations of the prefix
    the search could explain. ``next_results``: for each operation with a
    known outcome that could go right after ``linearized``, the result the
    model gives it there (compare with what the client saw). ``minimal``:
    False if the budget ran out before the prefix was narrowed fully.
    """

    partition: tuple[Hashable, ...]
    operations: tuple[Operation, ...]
    operation: Operation
    concurrent: tuple[Operation, ...]
    linearized: tuple[Operation, ...]
    next_results: tuple[tuple[Operation, Any], ...]
    minimal: bool

    def describe(self) -> str:
        """A readable, multi-line account of the violation."""
        where = "the history" if not self.partition else f"partition {list(self.partition)!r}"
        lines = [
            f"{where}: the first {len(self.operations)} operations are not linearizable"
            + ("" if self.minimal else " (not narrowed further: budget spent)"),
            f"  no order explains: {self.operation.describe()}",
        ]
        if self.concurrent:
            lines.append("  concurrent with it:")
            lines += [f"    {o.describe()}" for o in self.concurrent]
        shown = self.linearized[-_SHOWN:]
        skipped = len(self.linearized) - len(shown)
        lines.append(
            f"  longest order explained ({len(self.linearized)} operations"
            + (f", last {len(shown)} shown" if skipped else "")
            + "):"
        )
        lines += [f"    {skipped + k + 1}. {o.describe()}" for k, o in enumerate(shown)]
        if self.next_results:
            lines.append("  after it the model would answer:")
            lines += [f"    {o.describe()}  model: {r!r}" for o, r in self.next_results]
        return "\n".join(lines)


@attrs.frozen
class CheckResult:
    """The result of :func:`check_linearizability`.

    Truthy exactly when the verdict is ``LINEARIZABLE`` (so ``assert
    result, result.describe()`` never passes an inconclusive check).
    ``operations``: operations checked (FAILED ones excluded).
    ``partitions``: how many partitions the history split into;
    ``partitions_checked``: how many were decided. ``steps``: model steps
    spent on the verdict; ``seconds``: wall-clock time of the check.
    ``counterexample`` is set for ``NOT_LINEARIZABLE``, ``reason`` for
    ``INCONCLUSIVE``.
    """

    verdict: Verdict
    operations: int
    partitions: int
    partitions_checked: int
    steps: int
    seconds: float
    counterexample: Counterexample | None = None
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    @property
    def linearizable(self) -> bool:
        """True exactly when the verdict is ``LINEARIZABLE``."""
        return self.verdict is Verdict.LINEARIZABLE

    def describe(self) -> str:
        """The verdict and its evidence, in words."""
        head = (
            f"{self.verdict.value}: {self.operations} operations in {self.partitions} "
            f"partition(s), {self.partitions_checked} decided, {self.steps} model steps, "
            f"{self.seconds:.2f} s"
        )
        if self.counterexample is not None:
            return f"{head}\n{self.counterexample.describe()}"
        if self.reason is not None:
            return f"{head}\n  {self.reason}"
        return head


def results_equal(model_result: Any, observed: Any) -> bool:
    """The default result comparison: ``==``, or else equal canonical CBOR.

    The second test makes a result that travelled through CBOR (tuples come
    back as lists) equal to the model's own.
    """
    if model_result == observed:
        return True
    if not (isinstance(model_result, _CONTAINERS) and isinstance(observed, _CONTAINERS)):
        # Unequal and not both containers: no encoding can make them equal.
        return False
    try:
        return bool(
            cbor2.dumps(model_result, canonical=True) == cbor2.dumps(observed, canonical=True)
        )
    except (cbor2.CBOREncodeError, TypeError, ValueError):
        return False


_CONTAINERS = (list, tuple, dict)

PartitionKeys = Hashable | set[Hashable] | frozenset[Hashable]


def check_linearizability(
    history: Iterable[Operation],
    model: Model | Callable[[], StateMachine],
    *,
    partition: Callable[[Any], PartitionKeys] | None = None,
    equal: Callable[[Any, Any], bool] = results_equal,
    read_only: Callable[[Any], bool] | None = None,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    time_limit: float | None = None,
) -> CheckResult:
    """Decide whether ``history`` is linearizable with respect to ``model``.

    ``model``: a :class:`~trio_replica.testing.sequential_model.Model`, or a
    zero-argument callable returning a fresh
    :class:`~trio_replica.stm.protocol.StateMachine` (wrapped in
    :class:`~trio_replica.testing.sequential_model.MachineModel`). The
    machine's ``apply`` receives as ``op`` the command's 1-based position in
    the order being tried within its partition, which is not the op number
    a replica assigned (the checker cannot know those). The verdict is only
    meaningful if results compared by ``equal`` never depend on ``op``: if
    results contain op numbers (or anything derived from them), pass an
    ``equal`` that ignores them. The search relies on this when it leaves
    out operations that cannot matter. ``partition(command)``: the key (or ``set`` of keys)
    the command touches (see the module docstring for when that is sound).
    ``equal(model_result, observed)``: result comparison, default
    :func:`results_equal`; a rejection compares equal to a rejection.
    ``read_only(command)``: optional; True promises that the command changes
    no state, whatever the state (a read). The search then places such a
    command as soon as its result matches and never tries it elsewhere,
    which removes most of the cost of concurrent reads; a wrong promise
    makes the verdict wrong.
    ``max_steps`` / ``time_limit``: the budget for the whole check (``None``
    for no limit); the counterexample of a violation is narrowed within a
    second budget of the same size.

    Partitions are searched smallest first; the first violation ends the
    check. Exceptions from the model (other than
    :class:`~trio_replica.errors.InvalidCommand`) and from ``partition``
    propagate.
    """
    sequential = model if isinstance(model, Model) else MachineModel(model)
    budget = Budget(max_steps=max_steps, time_limit=time_limit)
    operations = [o for o in history if o.outcome is not Outcome.FAILED]
    parts = _partitions(operations, partition)
    checked = 0
    for keys, ops in parts:
        pure = None if read_only is None else [bool(read_only(o.command)) for o in ops]
        found = search(sequential, ops, equal, budget, read_only=pure)
        if found.linearizable is None:
            return CheckResult(
                Verdict.INCONCLUSIVE,
                len(operations),
                len(parts),
                checked,
                budget.steps,
                budget.elapsed(),
                reason=f"{budget.describe()}; {checked} of {len(parts)} partitions decided, "
                f"stopped in partition {list(keys)!r} ({len(ops)} operations)",
            )
        if not found.linearizable:
            steps = budget.steps
            example = _counterexample(
                sequential,
                keys,
                ops,
                equal,
                read_only,
                hint=found.frontier,
                max_steps=max_steps,
                time_limit=time_limit,
            )
            return CheckResult(
                Verdict.NOT_LINEARIZABLE,
                len(operations),
                len(parts),
                checked + 1,
                steps,
                budget.elapsed(),
                counterexample=example,
            )
        checked += 1
    return CheckResult(
        Verdict.LINEARIZABLE,
        len(operations),
        len(parts),
        checked,
        budget.steps,
        budget.elapsed(),
    )


def _partitions(
    operations: Sequence[Operation],
    partition: Callable[[Any], PartitionKeys] | None,
) -> list[tuple[tuple[Hashable, ...], list[Operation]]]:
    """Split into independent sub-histories: keys joined by a shared operation
    are one partition (union-find). Smallest first, then by first operation."""
    if partition is None:
        return [((), list(operations))] if operations else []
    parent: dict[Hashable, Hashable] = {}

    def find(key: Hashable) -> Hashable:
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    op_keys: list[tuple[Hashable, ...]] = []
    for index, operation in enumerate(operations):
        named = partition(operation.command)
        if isinstance(named, set | frozenset):
            # An operation touching no key depends on nothing: alone.
            keys = tuple(named) if named else (_Alone(index),)
        else:
            keys = (named,)
        for key in keys:
            parent.setdefault(key, key)
        first = find(keys[0])
        for key in keys[1:]:
            other = find(key)
            if other != first:
                parent[other] = first
        op_keys.append(keys)

    groups: dict[Hashable, list[Operation]] = {}
    members: dict[Hashable, list[Hashable]] = {}
    for operation, keys in zip(operations, op_keys, strict=True):
        root = find(keys[0])
        groups.setdefault(root, []).append(operation)
        names = members.setdefault(root, [])
        for key in keys:
            if key not in names and not isinstance(key, _Alone):
                names.append(key)
    ordered = sorted(groups, key=lambda root: len(groups[root]))  # stable: first-seen order
    return [(tuple(members[root]), groups[root]) for root in ordered]


@attrs.frozen
class _Alone:
    """The private partition key of an operation that names no key."""

    index: int


def _cut(operations: Sequence[Operation], at: int) -> list[Operation]:
    """The history as it stood at time ``at``: later invocations dropped,
    operations still running shown as unknown (a relaxation, see the module
    docstring)."""
    kept = []
    for o in operations:
        if o.invoked > at:
            continue
        if o.completed is not None and o.completed > at:
            o = attrs.evolve(o, completed=None, outcome=Outcome.UNKNOWN, result=None)
        kept.append(o)
    return kept


def _counterexample(
    model: Model,
    keys: tuple[Hashable, ...],
    operations: list[Operation],
    equal: Callable[[Any, Any], bool],
    read_only: Callable[[Any], bool] | None,
    *,
    hint: int | None,
    max_steps: int | None,
    time_limit: float | None,
) -> Counterexample:
    budget = Budget(max_steps=max_steps, time_limit=time_limit)
    ends = sorted({o.completed for o in operations if o.completed is not None})
    probes: dict[int, SearchResult] = {}

    def probe(index: int) -> bool | None:
        cut = _cut(operations, ends[index])
        pure = None if read_only is None else [bool(read_only(o.command)) for o in cut]
        found = search(model, cut, equal, budget, read_only=pure, want_longest=True)
        probes[index] = found
        return found.linearizable

    # Bisection for the shortest non-linearizable prefix. Invariant: the cut
    # at ends[high] is not linearizable (the full partition is equivalent to
    # the cut at its last completion: operations invoked later all have
    # unknown outcomes) and every cut before ends[low] is. The failed
    # search's frontier is usually the answer, so it and the completion
    # before it are probed first; a refutation costs far more than an
    # acceptance, and this keeps the failing probes to about one.
    low, high = 0, len(ends) - 1
    guesses = []
    if hint is not None and hint in ends:
        guesses = [ends.index(hint), ends.index(hint) - 1]
    minimal = True
    while low < high:
        while guesses and not low <= guesses[0] < high:
            guesses.pop(0)
        middle = guesses.pop(0) if guesses else (low + high) // 2
        linearizable = probe(middle)
        if linearizable is None:
            minimal = False
            break
        if linearizable:
            low = middle + 1
        else:
            high = middle
    prefix = _cut(operations, ends[high])
    if high in probes and probes[high].linearizable is False:
        found = probes[high]
    else:
        pure = None if read_only is None else [bool(read_only(o.command)) for o in prefix]
        found = search(
            model,
            prefix,
            equal,
            Budget(max_steps=max_steps, time_limit=time_limit),
            read_only=pure,
            want_longest=True,
        )
    witness = next(o for o in prefix if o.completed == ends[high])
    end = ends[high]
    concurrent = tuple(
        o
        for o in prefix
        if o is not witness
        and o.invoked <= end
        and (o.completed is None or o.completed >= witness.invoked)
    )
    linearized = tuple(prefix[i] for i in found.longest)
    return Counterexample(
        partition=keys,
        operations=tuple(prefix),
        operation=witness,
        concurrent=concurrent,
        linearized=linearized,
        next_results=_next_results(model, prefix, found.longest),
        minimal=minimal,
    )


def _next_results(
    model: Model, prefix: Sequence[Operation], longest: Sequence[int]
) -> tuple[tuple[Operation, Any], ...]:
    """What the model answers to each known-outcome operation that could go
    right after the ``longest`` order (invoked before every other remaining
    known-outcome operation completed)."""
    state = model.initial()
    for position, i in enumerate(longest, start=1):
        state, _ = model.step(state, position, prefix[i].command)
    done = set(longest)
    remaining = [
        o for i, o in enumerate(prefix) if i not in done and o.outcome is not Outcome.UNKNOWN
    ]
    if not remaining:
        return ()
    horizon = min(o.completed for o in remaining if o.completed is not None)
    answers = []
    for o in remaining:
        if o.invoked <= horizon:
            _, result = model.step(state, len(longest) + 1, o.command)
            answers.append((o, result))
    return tuple(answers)
