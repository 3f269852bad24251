"""The apply rule: what applying one op to a state machine means.

One function, used wherever an op meets a state machine: the live applier,
replay at recovery, and (later) a backup applying what its primary
committed. Keeping it in one place is what makes a replayed state equal to
the live one (invariant 17,
docs/invariants.md):

* ``apply`` returns: the op is applied, its result is the answer.
* ``apply`` raises :class:`~trio_replica.errors.InvalidCommand`: a
  deterministic rejection. The op stays in the journal, the state is
  unchanged, and every replay rejects it the same way. The error's ``op`` is
  set.
* ``apply`` raises anything else: a bug in the state machine, whose state
  may now be half-changed. :class:`~trio_replica.errors.StateMachineError`
  naming the op is raised (the original as ``__cause__``); the caller stops.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidCommand, StateMachineError
from ..pipeline import Applied
from .protocol import StateMachine

__all__ = ["apply_op", "replay_op"]


def apply_op(
    machine: StateMachine, op: int, command: Any, *, replaying: bool = False
) -> Applied | InvalidCommand:
    """Apply ``command`` as ``op``: :class:`~trio_replica.pipeline.Applied`
    (the op and ``apply()``'s result), or the rejection.

    Returns the :class:`~trio_replica.errors.InvalidCommand` instance (with
    ``op`` set) when the state machine rejected the command, so a caller
    cannot confuse a rejection with a result by forgetting an ``except``.
    Raises :class:`~trio_replica.errors.StateMachineError` for any other
    exception; ``replaying`` only changes its message.
    """
    try:
        result = machine.apply(op, command)
    except InvalidCommand as exc:
        exc.op = op  # the rejection is an op of the journal too
        return exc
    except Exception as exc:
        raise _machine_bug(machine, op, exc, replaying) from exc
    return Applied(op=op, result=result)


def replay_op(machine: StateMachine, op: int, command: Any) -> bool:
    """:func:`apply_op` at replay, where no one waits for the result: True
    when the op was applied, False when ``apply`` rejected it with
    :class:`~trio_replica.errors.InvalidCommand` (as it did live).

    The same rule, without a per-op result object (replay runs it once per
    journaled op). Raises :class:`~trio_replica.errors.StateMachineError`
    for any other exception.
    """
    try:
        machine.apply(op, command)
    except InvalidCommand:
        return False
    except Exception as exc:
        raise _machine_bug(machine, op, exc, True) from exc
    return True


def _machine_bug(
    machine: StateMachine, op: int, exc: Exception, replaying: bool
) -> StateMachineError:
    # Live or replayed, the op is already durable in the journal: every
    # recovery meets it again, so say how to look at it.
    doing = "replaying" if replaying else "applying"
    return StateMachineError(
        f"state machine {machine.name!r} raised {type(exc).__name__} {doing} "
        f"op {op}: {exc} (the op is durable in the journal, so every recovery will "
        f"meet it until the state machine is fixed; `trio-replica inspect DATA_DIR "
        f"--op {op}` shows its command)",
        op=op,
    )
