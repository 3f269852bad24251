"""The search at the heart of the linearizability checker, for one partition.

Algorithm: Wing & Gong, "Testing and verifying concurrent objects" (J.
Parallel and Distributed Computing 17, 1993), as refined by Lowe, "Testing
for linearizability" (Concurrency and Computation 29(4), 2017): the history
is a doubly linked list of call and return events in time order. The search
walks it from the front; at a call it tries to linearize that operation next
(the model must produce the recorded result), removing ("lifting") its call
and return from the list and starting over from the front; reaching a
return whose operation is not yet linearized means no operation can go next
in this branch, so it backtracks. Lowe's memoization keeps every
(linearized set, model state) pair ever reached and never enters one twice:
two branches that linearized the same operations into the same state have
the same future. The linearized set is a bitset (a Python int).

Operations with an unknown outcome (Jepsen's ``:info``; Porcupine models
them with a return at infinity) have a call event and no return event, so
they never force a backtrack and their result is not compared: they may be
linearized at any point after their invocation, or never. The search ends
as soon as every operation with a known outcome is linearized.

Unknown operations multiply the orders to consider, so three rules, all
instances of one dominance argument, keep them in check. A search node is
(known operations linearized, state, unknown operations linearized); a node
with the same known set and state but a *subset* of the unknown ones can do
everything the other can (an unknown operation may always "never happen").
So: the memo stores, per (known set, state), the unknown sets reached, and
a node whose unknown set contains one of them is not entered; an unknown
operation whose step leaves the state unchanged is not linearized (this
makes unknown reads free); and an unknown operation placed right after
another unknown one that it makes pointless (going from the earlier one's
starting state gives the same state) is not linearized there. Unknown
operations are also tried after the known-outcome candidates at each point,
so they get placed where a result needs them rather than eagerly.

Unknown operations with equal commands are interchangeable once both are
invoked (neither has a result or a return to respect), so of several equal
ones only the earliest not yet linearized is tried: any order using a later
one can use the earlier one instead. This turns subsets of equal pending
commands (a client retrying the same command after timeouts, say) into
counts.

Read-only operations, when the caller names them: if an operation that
changes no state in any state is a candidate and its result matches in the
current state, placing it right now loses nothing (in any completion it
could be moved to the front: its result is the same here, and no other
operation sees a difference). So it is placed, and if that fails the node
before it fails too, without trying the other candidates; this removes the
exponential cost of orderings among concurrent reads. A read-only operation
with an unknown outcome is left out altogether.

Events with equal times: calls sort before returns, so such operations are
concurrent (the conservative reading, as in Porcupine).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import attrs
import cbor2

from .history import Operation, Outcome
from .sequential_model import Model

__all__ = ["Budget", "SearchResult", "search"]

# How many model steps pass between two looks at the clock.
_CLOCK_EVERY = 512


class Budget:
    """A shared allowance of model steps and wall-clock time.

    ``max_steps``: most model steps in all (``None``: no limit).
    ``time_limit``: seconds from construction (``None``: no limit). Once
    either is spent every search stops and reports that it ran out.
    """

    def __init__(self, *, max_steps: int | None, time_limit: float | None):
        self.max_steps = max_steps
        self.time_limit = time_limit
        self.steps = 0
        self.started = time.monotonic()
        self.deadline = None if time_limit is None else self.started + time_limit

    def elapsed(self) -> float:
        """Seconds since the budget was created."""
        return time.monotonic() - self.started

    def steps_left(self) -> int | None:
        return None if self.max_steps is None else max(0, self.max_steps - self.steps)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def exhausted(self) -> bool:
        left = self.steps_left()
        return (left is not None and left <= 0) or self.out_of_time()

    def describe(self) -> str:
        """Which limit was reached, in words."""
        if self.max_steps is not None and self.steps >= self.max_steps:
            return f"step budget of {self.max_steps} model steps spent"
        return f"time limit of {self.time_limit} s reached after {self.steps} model steps"


@attrs.frozen
class SearchResult:
    """``linearizable``: True, False, or ``None`` when the budget ran out
    first. ``longest``: when asked for, the longest linearized sequence seen
    that ends with a known-outcome operation (indices into the searched
    operations). ``frontier``: the latest completion time the search was
    ever held up at (every known operation completed earlier was placed),
    ``None`` if never; a failed search's frontier is usually the completion
    of the operation no order explains."""

    linearizable: bool | None
    longest: tuple[int, ...] = ()
    frontier: int | None = None


def search(
    model: Model,
    operations: Sequence[Operation],
    equal: Callable[[Any, Any], bool],
    budget: Budget,
    *,
    read_only: Sequence[bool] | None = None,
    want_longest: bool = False,
) -> SearchResult:
    """Decide whether ``operations`` (one partition, no FAILED ones) are linearizable.

    ``equal(model_result, observed_result)`` compares results. Spends
    ``budget`` and returns ``linearizable=None`` when it runs out.
    ``read_only[i]`` promises that operation ``i`` changes no state in any
    state (see the module docstring). ``want_longest`` also records the
    longest partial linearization (costs a copy each time it grows).
    """
    n = len(operations)
    commands = [o.command for o in operations]
    expected = [o.result for o in operations]
    known = [o.outcome is not Outcome.UNKNOWN for o in operations]
    invoked = [o.invoked for o in operations]
    completed = [0 if o.completed is None else o.completed for o in operations]
    pure = [False] * n if read_only is None else list(read_only)
    assert all(o.outcome is not Outcome.FAILED for o in operations), "drop FAILED first"

    # Two doubly linked lists over one pair of arrays. The main list holds
    # the calls and returns of known-outcome operations in time order (call
    # of operation i is node i, its return node n + i; calls sort before
    # returns at equal times), between sentinels head = 2n and tail = 2n + 1.
    # The pending list holds the calls of unknown-outcome operations in
    # invocation order, between sentinels 2n + 2 and 2n + 3. Sentinels mean
    # no index is ever -1.
    head, tail, pending_head, pending_tail = 2 * n, 2 * n + 1, 2 * n + 2, 2 * n + 3
    nxt = [tail] * (2 * n + 4)
    prv = [head] * (2 * n + 4)
    events = sorted(
        [(invoked[i], 0, i) for i in range(n) if known[i]]
        + [(completed[i], 1, n + i) for i in range(n) if known[i]]
    )
    _link(nxt, prv, head, tail, [node for _, _, node in events])
    # A read-only operation with unknown outcome can explain nothing: left out.
    unknown = sorted((invoked[i], i) for i in range(n) if not known[i] and not pure[i])
    _link(nxt, prv, pending_head, pending_tail, [i for _, i in unknown])
    twin = _earlier_twins(commands, [i for _, i in unknown])

    remaining = sum(known)
    state: Hashable = model.initial()
    known_bits = 0
    unknown_bits = 0
    # Lowe's memo, strengthened: (known set, state) -> the unknown sets it
    # was reached with. Reaching it again with a superset of one of them is
    # pointless: the extra unknown operations could equally never have
    # happened, so everything possible from here was possible from there.
    seen: dict[tuple[int, Hashable], list[int]] = {}
    stack_ops: list[int] = []
    stack_states: list[Hashable] = []
    stack_horizons: list[int] = []
    stack_forced: list[bool] = []
    longest: tuple[int, ...] = ()
    step = model.step
    step_matching = model.step_matching

    steps = 0
    left = budget.steps_left()
    check_at = _CLOCK_EVERY if left is None else min(_CLOCK_EVERY, left)

    # The candidates to go next are the calls before the first return still
    # in the main list (the "horizon"): first the known-outcome ones, then
    # the unknown-outcome ones invoked by then. Trying unknown operations
    # last lets the search place them lazily, where a result needs them.
    entry = nxt[head]
    in_pending = False
    horizon = 0
    frontier: int | None = None
    while remaining:
        if not in_pending and entry >= n:
            # Reached the horizon: go on with the unknown-outcome operations.
            horizon = completed[entry - n] if entry != tail else invoked[0] - 1
            if frontier is None or horizon > frontier:
                frontier = horizon
            in_pending = True
            entry = nxt[pending_head]
        if entry < n and (not in_pending or invoked[entry] <= horizon):
            i = entry
            if in_pending and twin[i] >= 0 and not unknown_bits >> twin[i] & 1:
                # Equal unknown commands are interchangeable once invoked:
                # only the earliest one not yet placed is tried.
                entry = nxt[entry]
                continue
            if steps >= check_at:
                budget.steps += steps
                steps = 0
                if budget.exhausted():
                    return SearchResult(None, longest, frontier)
                left = budget.steps_left()
                check_at = _CLOCK_EVERY if left is None else min(_CLOCK_EVERY, left)
            steps += 1
            if known[i]:
                ok, new_state = step_matching(
                    state, len(stack_ops) + 1, commands[i], expected[i], equal
                )
                new_known, new_unknown = known_bits | (1 << i), unknown_bits
            else:
                new_state, _ = step(state, len(stack_ops) + 1, commands[i])
                # An unknown operation that changes nothing is never worth
                # placing now (it stays available for later).
                ok = new_state != state
                new_known, new_unknown = known_bits, unknown_bits | (1 << i)
                if ok and stack_ops and not known[stack_ops[-1]]:
                    # Right after another unknown operation p: if going
                    # straight from p's starting state gives the same state,
                    # p was wasted here, and the branch without p (tried at
                    # p's level, where this operation was a candidate too,
                    # since no return was passed in between) dominates.
                    steps += 1
                    without, _ = step(stack_states[-1], len(stack_ops), commands[i])
                    ok = without != new_state
            backtrack = False
            if ok:
                reached = seen.get((new_known, new_state))
                if reached is None:
                    seen[(new_known, new_state)] = [new_unknown]
                    fresh = True
                else:
                    fresh = all(earlier & ~new_unknown for earlier in reached)
                    if fresh:
                        reached.append(new_unknown)
                if fresh:
                    stack_ops.append(i)
                    stack_states.append(state)
                    stack_horizons.append(horizon)
                    # A read-only operation whose result matches now is
                    # placed now and never reconsidered (module docstring).
                    stack_forced.append(pure[i])
                    state = new_state
                    known_bits, unknown_bits = new_known, new_unknown
                    # Lift the call and (if any) the return out of its list.
                    p, q = prv[i], nxt[i]
                    nxt[p] = q
                    prv[q] = p
                    if known[i]:
                        remaining -= 1
                        r = n + i
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                    if want_longest and known[i] and len(stack_ops) > len(longest):
                        # Longest by known-outcome operations, ending with
                        # one (trailing unknown ones explain nothing).
                        longest = tuple(stack_ops)
                    entry = nxt[head]
                    in_pending = False
                    continue
                # Placing this read-only operation here was already tried
                # and failed, so nothing else can succeed here either.
                backtrack = pure[i]
            if not backtrack:
                entry = nxt[entry]
                continue
        # Every candidate here was tried: undo the last choice, and the ones
        # before it that were forced.
        forced = True
        while forced:
            if not stack_ops:
                budget.steps += steps
                return SearchResult(False, longest, frontier)
            i = stack_ops.pop()
            state = stack_states.pop()
            horizon = stack_horizons.pop()
            forced = stack_forced.pop()
            # Unlift in the reverse order of lifting (dancing links).
            if known[i]:
                known_bits ^= 1 << i
                remaining += 1
                r = n + i
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                in_pending = False
            else:
                unknown_bits ^= 1 << i
                in_pending = True
            nxt[prv[i]] = i
            prv[nxt[i]] = i
        entry = nxt[i]
    budget.steps += steps
    return SearchResult(True, tuple(stack_ops) if want_longest else longest, frontier)


def _earlier_twins(commands: Sequence[Any], unknown: Sequence[int]) -> list[int]:
    """For each unknown-outcome operation (given in invocation order), the
    previous one with an equal command, or -1 (also for every other index).
    Commands are compared by canonical CBOR; those that cannot be encoded
    have no twins."""
    twin = [-1] * len(commands)
    last: dict[bytes, int] = {}
    for i in unknown:
        try:
            name = cbor2.dumps(commands[i], canonical=True)
        except (cbor2.CBOREncodeError, TypeError, ValueError):
            continue
        twin[i] = last.get(name, -1)
        last[name] = i
    return twin


def _link(nxt: list[int], prv: list[int], first: int, last: int, nodes: list[int]) -> None:
    """Chain ``nodes`` in order between the sentinels ``first`` and ``last``."""
    before = first
    for node in nodes:
        nxt[before] = node
        prv[node] = before
        before = node
    nxt[before] = last
    prv[last] = before
