"""Client histories for the linearizability checker: what was asked, when, and what came back.

A history is a sequence of :class:`Operation`: a client invoked a command at
one moment and learned its outcome at a later one (or never). The outcome is
one of the four a client can actually observe (the same classification as
Jepsen's ``:ok`` / ``:fail`` / ``:info``, with rejections made explicit):

========================  ==========================================================
:attr:`Outcome.OK`        completed; ``result`` is what the state machine returned
:attr:`Outcome.REJECTED`  completed; the state machine rejected the command
                          (:class:`~trio_replica.errors.InvalidCommand`), which is
                          itself an observation the model must reproduce
:attr:`Outcome.FAILED`    definitely never applied (e.g. refused before it was sent);
                          the checker ignores it
:attr:`Outcome.UNKNOWN`   the client timed out, was cancelled or crashed: the command
                          may take effect at any moment after its invocation, or
                          never, and ``result`` constrains nothing
========================  ==========================================================

Times are abstract, totally ordered numbers: ``invoked < completed`` means
"the client saw the outcome after it asked", and an operation that completed
before another was invoked must be ordered before it (real-time order). The
:class:`HistoryRecorder` numbers events with a counter, which in a
single-threaded Trio program gives exactly the real-time order of the calls
(no clock resolution, and :class:`trio.testing.MockClock` is irrelevant).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from typing import Any

import attrs

from ..errors import ReplicaError

__all__ = [
    "HistoryError",
    "HistoryRecorder",
    "Operation",
    "Outcome",
    "PendingOperation",
    "Rejected",
]


class HistoryError(ReplicaError):
    """A history is malformed: an outcome recorded twice, or an operation
    completed before it was invoked. ``operation`` is the offending one."""

    def __init__(self, message: str, *, operation: Operation | None = None):
        super().__init__(message)
        self.operation = operation


class Outcome(enum.Enum):
    """What the client learned about one command (see the module docstring)."""

    OK = "ok"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"


@attrs.frozen
class Rejected:
    """The result of a command the state machine rejected.

    All rejections compare equal whatever their ``reason`` (the message
    text is for people; only the fact of the rejection is observable).
    """

    reason: str = attrs.field(default="", eq=False)


@attrs.frozen
class Operation:
    """One command of a client history.

    ``client``: who issued it (any hashable; used in descriptions only).
    ``command``: the command as submitted. ``invoked``: when it was issued.
    ``completed``: when its outcome arrived, ``None`` if it never did (then
    ``outcome`` must be :attr:`Outcome.UNKNOWN`). ``result``: for
    :attr:`Outcome.OK` the returned value, for :attr:`Outcome.REJECTED` a
    :class:`Rejected`, otherwise ``None``.

    Raises :class:`HistoryError` if ``completed < invoked`` or an unknown
    outcome's ``completed`` is missing for a known outcome.
    """

    client: Hashable
    command: Any
    invoked: int
    completed: int | None
    outcome: Outcome
    result: Any = None

    def __attrs_post_init__(self) -> None:
        if self.completed is None:
            if self.outcome in (Outcome.OK, Outcome.REJECTED):
                raise HistoryError(
                    f"an operation with outcome {self.outcome.value} needs a completion time",
                    operation=self,
                )
        elif self.completed < self.invoked:
            raise HistoryError(
                f"operation completed at {self.completed}, before its invocation at {self.invoked}",
                operation=self,
            )
        if self.outcome is Outcome.REJECTED and not isinstance(self.result, Rejected):
            raise HistoryError("a rejected operation's result must be Rejected", operation=self)

    def describe(self) -> str:
        """One line: client, command, outcome and the interval, for reports."""
        if self.outcome is Outcome.OK:
            seen = f"-> {self.result!r}"
        elif self.outcome is Outcome.REJECTED:
            reason = f" ({self.result.reason})" if self.result.reason else ""
            seen = f"-> rejected{reason}"
        else:
            seen = f"-> {self.outcome.value}"
        until = "..." if self.completed is None else str(self.completed)
        return f"client {self.client!r}: {self.command!r} {seen}  [{self.invoked}, {until}]"


class PendingOperation:
    """An invoked command awaiting its outcome; returned by :meth:`HistoryRecorder.invoke`.

    Call exactly one of :meth:`ok`, :meth:`rejected`, :meth:`fail` or
    :meth:`info`; a second call raises :class:`HistoryError`. One never
    completed is reported as :attr:`Outcome.UNKNOWN` by
    :meth:`HistoryRecorder.operations`.
    """

    __slots__ = ("_done", "_index", "_recorder")

    def __init__(self, recorder: HistoryRecorder, index: int):
        self._recorder = recorder
        self._index = index
        self._done = False

    def ok(self, result: Any) -> None:
        """The command was applied and returned ``result``."""
        self._finish(Outcome.OK, result)

    def rejected(self, reason: str = "") -> None:
        """The state machine rejected the command (the client got ``InvalidCommand``)."""
        self._finish(Outcome.REJECTED, Rejected(reason))

    def fail(self) -> None:
        """The command was definitely not applied, and never will be."""
        self._finish(Outcome.FAILED, None)

    def info(self) -> None:
        """The outcome is unknown (timeout, cancellation, crash): it may apply later or never."""
        self._finish(Outcome.UNKNOWN, None)

    def _finish(self, outcome: Outcome, result: Any) -> None:
        if self._done:
            raise HistoryError(
                "outcome recorded twice for " + self._recorder._operations[self._index].describe(),
                operation=self._recorder._operations[self._index],
            )
        self._done = True
        self._recorder._complete(self._index, outcome, result)


class HistoryRecorder:
    """Records the operations of concurrent clients, in real-time order.

    Use it from the Trio thread (all clients in one Trio run)::

        recorder = HistoryRecorder()
        pending = recorder.invoke(client_id, command)
        try:
            result = await client.submit(command)
        except InvalidCommand as error:
            pending.rejected(str(error))
        except (trio.TooSlowError, ConnectionError):
            pending.info()        # it may still be applied
            raise
        else:
            pending.ok(result)
        ...
        history = recorder.operations()

    ``invoke`` must be called *before* the request can reach the system and
    the outcome recorded *after* the response arrived, or the recorded
    intervals would be narrower than the real ones and the checker could
    report violations that did not happen.
    """

    def __init__(self) -> None:
        self._clock = 0
        # Invocations are stored as they come; an entry is replaced when its
        # outcome arrives. Entries with completed=None are still pending.
        self._operations: list[Operation] = []

    def invoke(self, client: Hashable, command: Any) -> PendingOperation:
        """Record that ``client`` issued ``command`` now; record the outcome on the result."""
        self._clock += 1
        self._operations.append(Operation(client, command, self._clock, None, Outcome.UNKNOWN))
        return PendingOperation(self, len(self._operations) - 1)

    def _complete(self, index: int, outcome: Outcome, result: Any) -> None:
        self._clock += 1
        invoked = self._operations[index]
        completed = None if outcome is Outcome.UNKNOWN else self._clock
        self._operations[index] = attrs.evolve(
            invoked, completed=completed, outcome=outcome, result=result
        )

    def operations(self) -> tuple[Operation, ...]:
        """The history so far, in invocation order; pending operations count as unknown."""
        return tuple(self._operations)

    def __len__(self) -> int:
        return len(self._operations)
