"""The new primary's choice of log from a quorum of do_view_change messages.

A pure function, so it can be tested exhaustively. The rules (VR Revisited
section 4.2, with the nack rule of TigerBeetle's VSR):

1. ``commit`` is the highest commit number any sender reports: those ops are
   committed and are kept whatever else happens.
2. The canonical log comes from the senders with the highest ``log_view``
   (their logs were normal in the newest view, so they agree with each
   other): their headers, by op. A sender with a longer log from an older
   view is not canonical: its extra ops may have been proven uncommitted by
   a view change it missed.
3. Above ``commit`` every canonical op is kept unless a nack quorum
   (n - q + 1 senders) proves it was never committed: at most q - 1
   replicas can have acked it, fewer than the q a commit needs. A sender
   nacks an op when it reports no header for it, a different header, or
   the same header with its body MISSING (never durable there). A FAULTY
   body (durable once, unreadable now) is never a nack: it may have been
   acked. The lowest op with a nack quorum is cut, with everything after
   it (they chain to it).
4. If the canonical senders' logs end below ``commit`` (they lag behind
   what they know is committed), the ops up to ``commit`` come from the
   sender with the highest ``log_view`` that has each; without a header for
   ``commit`` itself the choice waits for more senders.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .config import CORRECT_RULES, ClusterConfig, Rules
from .header import PrepareHeader
from .messages import DoViewChange, EntryState, SuffixEntry

__all__ = ["ChosenLog", "choose_log", "nacks_for"]


@attrs.frozen
class ChosenLog:
    """The log a new primary installs: ops up to ``op`` (``headers`` holds the
    known headers, by op), of which ops up to ``commit`` are committed.
    ``truncated`` is the lowest op cut by a nack quorum (None: nothing cut).
    ``complete`` is False when no sender has the header of the head (then
    wait for more do_view_change messages)."""

    commit: int
    op: int
    headers: dict[int, PrepareHeader]
    truncated: int | None
    complete: bool = True


def _by_op(dvc: DoViewChange) -> dict[int, SuffixEntry]:
    """The sender's suffix by op (the first entry at an op, as a scan finds it)."""
    entries: dict[int, SuffixEntry] = {}
    for entry in dvc.suffix:
        entries.setdefault(entry.header.op, entry)
    return entries


def nacks_for(
    header: PrepareHeader,
    dvcs: Sequence[DoViewChange],
    *,
    indexed: Sequence[dict[int, SuffixEntry]] | None = None,
) -> int:
    """How many senders nack ``header``: no header at its op, another header,
    or the same header MISSING. FAULTY and HELD are not nacks.

    ``indexed`` is each sender's suffix by op (as :func:`choose_log` builds
    once), so that counting every op of a long suffix stays linear.
    """
    count = 0
    for entries in indexed if indexed is not None else [_by_op(d) for d in dvcs]:
        entry = entries.get(header.op)
        if (
            entry is None
            or entry.header.checksum != header.checksum
            or entry.state == EntryState.MISSING
        ):
            count += 1
    return count


def choose_log(
    dvcs: Sequence[DoViewChange], config: ClusterConfig, rules: Rules = CORRECT_RULES
) -> ChosenLog:
    """Choose the new view's log from ``dvcs`` (at least a quorum of them,
    the new primary's own included). See the module docstring."""
    if len(dvcs) < config.quorum:
        raise ValueError(f"need {config.quorum} do_view_change messages, got {len(dvcs)}")
    commit = max(d.commit for d in dvcs)
    # Each suffix indexed by op once: a replica restarted with a stale commit
    # sends thousands of headers, and a scan per op (quadratic) stalled the
    # new primary for seconds, long enough for its peers to give up on it.
    indexed = [_by_op(d) for d in dvcs]
    headers: dict[int, PrepareHeader] = {}
    if rules.canonical_by_log_view:
        newest = max(d.log_view for d in dvcs)
        for dvc in (d for d in dvcs if d.log_view == newest):
            for entry in dvc.suffix:
                known = headers.get(entry.header.op)
                if known is None or entry.header.view > known.view:
                    headers[entry.header.op] = entry.header
    else:
        # Broken on purpose (tests only): the longest log wins, whatever its log_view.
        longest = max(dvcs, key=lambda d: (d.op, d.replica))
        headers = {e.header.op: e.header for e in longest.suffix}
    op = max(headers, default=0)
    if op < commit:
        # The canonical senders lag behind what is known committed. A committed
        # op's header is on every log of a view since its commit that reaches
        # it, and one sender holding it durably (an acker) is in this quorum:
        # so the sender with the highest log_view that has the op has the
        # committed header.
        for at in range(op + 1, commit + 1):
            best: tuple[int, PrepareHeader] | None = None
            for sender, entries in zip(dvcs, indexed, strict=True):
                found = entries.get(at)
                if found is not None and (best is None or sender.log_view > best[0]):
                    best = (sender.log_view, found.header)
            if best is not None:
                headers[at] = best[1]
        if commit not in headers:
            return ChosenLog(
                commit=commit, op=commit, headers=headers, truncated=None, complete=False
            )
        op = commit
    truncated = None
    threshold = config.nack_quorum if rules.nack_quorum_truncates else 1
    for at in range(commit + 1, op + 1):
        header = headers.get(at)
        if header is None or nacks_for(header, dvcs, indexed=indexed) >= threshold:
            # A canonical sender has no header here only if its log is shorter:
            # then no canonical sender has anything above either.
            truncated = at
            break
    if truncated is not None:
        headers = {k: h for k, h in headers.items() if k < truncated}
        op = truncated - 1
    return ChosenLog(commit=commit, op=op, headers=headers, truncated=truncated)
