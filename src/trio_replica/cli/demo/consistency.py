"""The demo's verdict: is what recovery produced consistent with what was acked?

Three checks, each the demo's translation of an invariant of docs/invariants.md:

1. Acked means durable: every op the writer saw acknowledged is in the
   recovered journal, with the same command.
2. Nothing acked is missing from the state: the recovered replica's
   applied op is at least the last acknowledged op.
3. Recovery yields a prefix: the recovered state equals the state of a
   FRESH machine after applying the journal's ops 1..k in order, where k
   is the recovered applied op (compared by digest of canonical CBOR).

The third check needs the journal from op 1, so the demo uses segments large
enough that compaction never deletes one; a journal that does not start at
op 1 is reported as a problem rather than silently checked on a suffix.

:func:`check_consistency` streams the journal, so it needs memory for the
acked map and the fresh machine only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ... import codec
from ...errors import InvalidCommand
from ...stm.mux import state_digest
from ...stm.protocol import StateMachine

__all__ = ["ConsistencyReport", "check_consistency"]

_EXAMPLES = 5  # how many offending ops a problem line names


@attrs.frozen
class ConsistencyReport:
    """The outcome of :func:`check_consistency`; ``problems`` is empty when consistent."""

    acked: int
    last_acked_op: int
    recovered_op: int
    journal_first_op: int | None
    journal_last_op: int | None
    replayed: int
    rejected_on_replay: int
    recovered_digest: str
    replayed_digest: str | None
    problems: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        """True when every check passed."""
        return not self.problems


def _ops_text(ops: list[int]) -> str:
    shown = ", ".join(map(str, ops[:_EXAMPLES]))
    return shown + (f" and {len(ops) - _EXAMPLES} more" if len(ops) > _EXAMPLES else "")


def _same_command(acked_body: bytes, body: bytes, command: Any) -> bool:
    # Equal bytes settle it at once; otherwise compare the decoded values,
    # so an encoder that chose other (equally valid) bytes is not flagged.
    if acked_body == body:
        return True
    try:
        return bool(codec.decode(acked_body) == command)
    except codec.UndecodableError:
        return False


def check_consistency(
    acked: Mapping[int, bytes],
    journal: Iterable[tuple[int, bytes]],
    *,
    recovered_op: int,
    recovered_state: Any,
    fresh_machine: StateMachine,
) -> ConsistencyReport:
    """Check recovered data against the acked ops.

    ``acked`` maps each acknowledged op (applied or rejected: a rejection is
    journaled too) to the CBOR encoding of the command the writer submitted;
    ``journal`` yields ``(op, body)`` for every record on disk, in order;
    ``recovered_op`` and ``recovered_state`` are the recovered
    replica's applied op and its machine's snapshot; ``fresh_machine`` is a
    new machine of the same kind, which this function replays into.
    """
    problems: list[str] = []
    first: int | None = None
    last: int | None = None
    mismatched: list[int] = []
    replayed = rejected = 0
    replay_failed = False
    undecodable: list[int] = []
    for op, body in journal:
        try:
            command = codec.decode(body)
        except codec.UndecodableError:
            undecodable.append(op)
            replay_failed = True
            command = None
        if first is None:
            first = op
            if op != 1:
                problems.append(
                    f"the journal starts at op {op}, not 1 (ops were compacted), so the "
                    "state cannot be rebuilt from the journal alone"
                )
                replay_failed = True
        elif last is not None and op != last + 1:
            problems.append(f"the journal jumps from op {last} to op {op}")
            replay_failed = True
        last = op
        if op in acked and not _same_command(acked[op], body, command):
            mismatched.append(op)
        if replay_failed or op > recovered_op:
            continue
        try:
            fresh_machine.apply(op, command)
        except InvalidCommand:
            rejected += 1  # replay rejects exactly what the replica rejected
        except Exception as exc:
            problems.append(f"replaying op {op} on a fresh machine raised {exc!r}")
            replay_failed = True
            continue
        replayed += 1
    last_acked = max(acked, default=0)
    if undecodable:
        problems.append(
            f"{len(undecodable)} journal record(s) are not valid CBOR: {_ops_text(undecodable)}"
        )
    if mismatched:
        problems.append(
            f"{len(mismatched)} acked op(s) have a different command in the journal: "
            f"{_ops_text(mismatched)}"
        )
    end = last if last is not None else 0
    start = first if first is not None else end + 1
    missing = sorted(op for op in acked if op > end or op < start)
    if missing:
        problems.append(
            f"{len(missing)} acked op(s) are missing from the journal (it holds ops "
            f"{start}..{end}): {_ops_text(missing)}"
        )
    if recovered_op < last_acked:
        problems.append(
            f"the recovered replica applied up to op {recovered_op}, before the last "
            f"acked op {last_acked}"
        )
    if recovered_op > end:
        problems.append(
            f"the recovered replica applied up to op {recovered_op}, but the journal "
            f"ends at op {end}"
        )
    recovered_digest = state_digest(recovered_state)
    replayed_digest: str | None = None
    if not replay_failed and recovered_op <= end:
        replayed_digest = state_digest(fresh_machine.snapshot())
        if replayed_digest != recovered_digest:
            problems.append(
                f"the recovered state (digest {recovered_digest[:16]}) differs from "
                f"applying ops 1..{recovered_op} to a fresh machine (digest "
                f"{replayed_digest[:16]})"
            )
    return ConsistencyReport(
        acked=len(acked),
        last_acked_op=last_acked,
        recovered_op=recovered_op,
        journal_first_op=first,
        journal_last_op=last,
        replayed=replayed,
        rejected_on_replay=rejected,
        recovered_digest=recovered_digest,
        replayed_digest=replayed_digest,
        problems=tuple(problems),
    )
