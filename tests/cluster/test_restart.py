"""Restarts of a cluster with a long log.

The new primary's choice of log reads each do_view_change once, however
long its suffix (after a whole-cluster restart with a stale commit, every
suffix holds thousands of headers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trio_replica.cluster import ClusterConfig
from trio_replica.cluster.header import ROOT, Operation, make_header
from trio_replica.cluster.messages import DoViewChange, EntryState, SuffixEntry
from trio_replica.cluster.view_change import choose_log


class _CountingSuffix(tuple[SuffixEntry, ...]):
    """A suffix that counts how often it is read through."""

    reads = 0

    def __iter__(self) -> Iterator[SuffixEntry]:
        _CountingSuffix.reads += 1
        return super().__iter__()


def test_choose_log_reads_each_do_view_change_a_bounded_number_of_times() -> None:
    # After a whole-cluster restart with a stale commit, every sender's suffix
    # holds thousands of headers; one read per op (quadratic) took seconds.
    n = 2000
    headers: list[Any] = []
    parent = ROOT.checksum
    for op in range(1, n + 1):
        header = make_header(
            parent=parent,
            op=op,
            view=0,
            client=1,
            request=op,
            operation=Operation.REQUEST,
            body=b"x",
        )
        headers.append(header)
        parent = header.checksum
    suffix = _CountingSuffix(SuffixEntry(h, EntryState.HELD) for h in headers)
    dvcs = [DoViewChange(1, r, 0, n, 0, suffix) for r in range(3)]
    _CountingSuffix.reads = 0
    chosen = choose_log(dvcs, ClusterConfig(1, 3))
    assert (chosen.op, chosen.commit, chosen.truncated) == (n, 0, None)
    assert _CountingSuffix.reads <= 2 * len(dvcs)
