"""State transfer in the consensus core, stepped by hand: which checkpoint
a lagging replica fetches (a quorum's word, never one peer's, never below
its journal head), one chunk in flight, and what it does once installed."""

from __future__ import annotations

from trio_replica.cluster import ClusterConfig, Consensus
from trio_replica.cluster.checkpoint import Checkpoint
from trio_replica.cluster.core import RecoveredJournal
from trio_replica.cluster.events import (
    CheckpointInstalled,
    InstallCheckpoint,
    PersistViewState,
    Received,
    RestartJournal,
    RestoreCheckpoint,
    Send,
    StoreCheckpointChunk,
    Tick,
    ViewStateDurable,
)
from trio_replica.cluster.header import ROOT, Operation, checksum, make_header
from trio_replica.cluster.messages import CheckpointChunk, RequestCheckpoint, Retained
from trio_replica.cluster.view_state import ViewState

CONFIG = ClusterConfig(cluster_id=1, replica_count=3)
MARK = make_header(
    parent=ROOT.checksum, op=32, view=1, client=0, request=0, operation=Operation.ROOT, body=b""
)


def lagging() -> Consensus:
    """Replica 2, a backup of view 1 that knows op 50 committed and holds nothing."""
    core, _ = Consensus.start(
        CONFIG,
        2,
        state=ViewState(view=1, log_view=1, commit_max=50),
        journal=RecoveredJournal(),
        state_transfer=True,
    )
    return core


def retained(replica: int, checksum: bytes = MARK.checksum, op: int = 32) -> Received:
    return Received(Retained(1, replica, op_min=40, checkpoint_op=op, checkpoint_checksum=checksum))


def requests(actions: list[object]) -> list[tuple[int, RequestCheckpoint]]:
    return [
        (a.to, a.message)
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, RequestCheckpoint)
    ]


def test_one_peer_alone_never_decides_the_checkpoint() -> None:
    core = lagging()
    core.step(retained(0))
    assert requests(core.step(Tick())) == []
    # another peer names another prepare at that op: still no quorum
    core.step(retained(1, checksum=bytes(16)))
    assert requests(core.step(Tick())) == []


def test_a_quorum_names_it_and_one_chunk_is_in_flight() -> None:
    core = lagging()
    core.step(retained(0))
    out = core.step(retained(1)) + core.step(Tick())
    asked = requests(out)
    assert len(asked) == 1
    to, request = asked[0]
    assert to in (0, 1) and (request.op, request.checksum, request.offset) == (32, MARK.checksum, 0)
    # nothing more is asked until the chunk arrives (or the retry time passes)
    assert requests(core.step(Tick())) == []


def test_installed_checkpoint_is_vouched_before_the_journal_restarts() -> None:
    core = lagging()
    core.step(retained(0))
    core.step(retained(1))
    ((to, _),) = requests(core.step(Tick()))
    data = b"x" * 10
    out = core.step(
        Received(CheckpointChunk(1, to, 32, MARK.checksum, 0, 10, data, checksum(data)))
    )
    assert any(isinstance(a, StoreCheckpointChunk) for a in out)
    assert any(isinstance(a, InstallCheckpoint) for a in out)
    checkpoint = Checkpoint(MARK, {"state": 1}, [])
    out = core.step(CheckpointInstalled(checkpoint))
    assert any(isinstance(a, RestoreCheckpoint) for a in out)
    assert not any(isinstance(a, RestartJournal) for a in out)  # not before it is vouched
    (persist,) = [a for a in out if isinstance(a, PersistViewState)]
    assert persist.state.checkpoint_op == 32 and persist.state.checkpoint_checksum == MARK.checksum
    assert core.commit_min == 32
    out = core.step(ViewStateDurable(persist.state))
    assert [a.op for a in out if isinstance(a, RestartJournal)] == [32]


def test_a_chunk_that_does_not_verify_is_ignored() -> None:
    core = lagging()
    core.step(retained(0))
    core.step(retained(1))
    ((to, _),) = requests(core.step(Tick()))
    out = core.step(
        Received(CheckpointChunk(1, to, 32, MARK.checksum, 0, 10, b"x" * 10, bytes(16)))
    )
    assert not any(isinstance(a, StoreCheckpointChunk) for a in out)


def test_never_a_checkpoint_below_its_own_journal_head() -> None:
    headers = []
    parent = ROOT.checksum
    for op in range(1, 41):
        header = make_header(
            parent=parent, op=op, view=1, client=0, request=0, operation=Operation.ROOT, body=b""
        )
        headers.append(header)
        parent = header.checksum
    core, _ = Consensus.start(
        CONFIG,
        2,
        state=ViewState(view=1, log_view=1, commit_max=50),
        journal=RecoveredJournal(headers=tuple(headers)),
        state_transfer=True,
    )
    assert core.journal_op == 40
    # peers keep ops from 41 and name checkpoint 32: it holds ops above it,
    # so installing it would drop ops it may have acknowledged
    core.step(retained(0, checksum=headers[31].checksum))
    core.step(retained(1, checksum=headers[31].checksum))
    assert requests(core.step(Tick())) == []
