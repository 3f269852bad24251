"""Cluster checkpoints: snapshots at checkpoint ops, restarts from them,
journal compaction with a retention window, honest "below what I retain"
answers, and crashes at every step of a checkpoint."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any, ClassVar

import attrs
import cbor2
import pytest
import trio

from trio_replica.cluster import ClusterConfig, Timing, open_cluster_client, open_cluster_replica
from trio_replica.cluster.checkpoint import (
    Checkpoint,
    StateDivergenceError,
    decode_checkpoint,
    encode_checkpoint,
    is_checkpoint_op,
    state_digest,
)
from trio_replica.cluster.checkpoint_store import CheckpointMissingError
from trio_replica.cluster.client_table import ClientTable
from trio_replica.cluster.core import Consensus, RecoveredJournal
from trio_replica.cluster.events import Received, Send
from trio_replica.cluster.header import ROOT, Operation, make_header
from trio_replica.cluster.messages import (
    CheckpointDigest,
    Request,
    RequestHeaders,
    RequestPrepare,
    Retained,
)
from trio_replica.cluster.storage import decode_envelope
from trio_replica.cluster.tcp_codec import decode_message, encode_message
from trio_replica.cluster.view_state import ViewState
from trio_replica.coordinator import SnapshotStore
from trio_replica.errors import CorruptionError
from trio_replica.journal import Journal
from trio_replica.machines.counter import Counter
from trio_replica.stm.protocol import StateMachine
from trio_replica.testing import CrashRecorder, SimulatedDisk, open_sim_transport
from trio_replica.testing.cluster import SimOptions, options_for_seed, run_seed
from trio_replica.testing.inprocess_cluster import open_inprocess_cluster


class Log(StateMachine):
    """Appends every command: any lost, repeated or reordered op shows."""

    name: ClassVar[str] = "log"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def apply(self, op: int, command: Any) -> int:
        self.entries.append(command)
        return len(self.entries)

    def snapshot(self) -> Any:
        return list(self.entries)

    def restore(self, state: Any) -> None:
        self.entries = list(state)


def _chain(n: int) -> list[Any]:
    headers = []
    parent = ROOT.checksum
    for op in range(1, n + 1):
        body = cbor2.dumps({"add": op})
        header = make_header(
            parent=parent,
            op=op,
            view=0,
            client=1,
            request=op,
            operation=Operation.REQUEST,
            body=body,
        )
        headers.append(header)
        parent = header.checksum
    return headers


# --- values ------------------------------------------------------------------


def test_checkpoint_ops_are_the_multiples_of_the_interval() -> None:
    assert [op for op in range(0, 30) if is_checkpoint_op(op, 8)] == [8, 16, 24]


def test_digest_is_canonical_whatever_the_insertion_order() -> None:
    a = {"x": 1, "y": {2, 3}, "z": [1, 2]}
    b = {"z": [1, 2], "y": {3, 2}, "x": 1}
    assert state_digest(a, []) == state_digest(b, [])
    assert state_digest(a, []) != state_digest(dict(a, x=2), [])


def test_a_checkpoint_round_trips_through_its_snapshot_value() -> None:
    header = _chain(3)[-1]
    table = ClientTable(4)
    table.commit(
        make_header(
            parent=ROOT.checksum,
            op=1,
            view=0,
            client=7,
            request=0,
            operation=Operation.REGISTER,
            body=b"",
        )
    )
    checkpoint = Checkpoint(header, {"total": 6}, table.canonical())
    back = decode_checkpoint(cbor2.loads(cbor2.dumps(encode_checkpoint(checkpoint))))
    assert back == checkpoint and back.digest() == checkpoint.digest()
    restored = ClientTable(4)
    restored.restore(back.clients)
    assert restored.canonical() == table.canonical()
    with pytest.raises(CorruptionError):
        decode_checkpoint([2, b"", None, []], path="x")


# --- the core ------------------------------------------------------------------


def _restarted(first: int, last: int, checkpoint_at: int) -> Consensus:
    headers = _chain(last)
    mark = headers[checkpoint_at - 1]
    state = ViewState(
        view=0,
        log_view=0,
        commit_max=last,
        checkpoint_op=checkpoint_at,
        checkpoint_checksum=mark.checksum,
    )
    core, _ = Consensus.start(
        ClusterConfig(1, 3, checkpoint_interval=checkpoint_at),
        1,
        state=state,
        journal=RecoveredJournal(headers=tuple(headers[first - 1 :])),
        checkpoint=Checkpoint(mark, {"total": 0}, []),
    )
    return core


def test_a_restart_from_a_checkpoint_starts_committed_there() -> None:
    core = _restarted(first=5, last=20, checkpoint_at=16)
    assert core.commit_min == 16 and core.checkpoint_op == 16
    assert core.retained_from == 5 and core.op == 20


def test_requests_below_what_a_replica_retains_get_an_honest_answer() -> None:
    core = _restarted(first=5, last=20, checkpoint_at=16)
    mark = core.checkpoint
    assert mark is not None
    out = core.step(Received(RequestPrepare(0, 2, 3, bytes(16))))
    assert out == [Send(2, Retained(0, 1, 5, 16, mark.checksum))]
    out = core.step(Received(RequestHeaders(0, 2, 2, 8)))
    sends = [a.message for a in out if isinstance(a, Send)]
    assert Retained(0, 1, 5, 16, mark.checksum) in sends
    # Ops 5..8 are still retained: answered from the journal, never "nothing".
    assert any(getattr(m, "headers", ()) for m in sends) or any(
        type(a).__name__ == "ReadHeaders" for a in out
    )
    core.step(Received(Retained(0, 2, 9, 16, mark.checksum)))
    assert core.peer_retained[2].op_min == 9


def test_a_restart_refuses_a_checkpoint_the_view_state_does_not_name() -> None:
    headers = _chain(10)
    state = ViewState(commit_max=10, checkpoint_op=8, checkpoint_checksum=headers[7].checksum)
    config = ClusterConfig(1, 3, checkpoint_interval=8)
    journal = RecoveredJournal(headers=tuple(headers))
    with pytest.raises(ValueError, match="names checkpoint op 8"):
        Consensus.start(config, 0, state=state, journal=journal)
    with pytest.raises(ValueError, match="not the one the view state names"):
        Consensus.start(
            config,
            0,
            state=state,
            journal=journal,
            checkpoint=Checkpoint(headers[6], None, []),
        )
    # A journal that starts above the op after the checkpoint has a hole.
    with pytest.raises(ValueError, match="are missing"):
        Consensus.start(
            config,
            0,
            state=state,
            journal=RecoveredJournal(headers=tuple(headers[9:])),
            checkpoint=Checkpoint(headers[7], None, []),
        )


# --- the Trio replica ------------------------------------------------------------


async def _log_of(disk: SimulatedDisk) -> tuple[int, int, dict[int, bytes]]:
    """(first op, checkpoint op, op -> prepare checksum) of the journal on ``disk``."""
    out = {}
    async with await Journal.open(disk.clone(), lock=False, create=False) as journal:
        async for entry in journal.entries(after=journal.first_op - 1):
            header, _ = decode_envelope(entry.body, op=entry.op, path="")
            out[entry.op] = header.checksum
        return journal.first_op, journal.superblock.checkpoint_op, out


async def test_replicas_checkpoint_compact_and_restart_from_a_checkpoint(
    autojump_clock: Any,
) -> None:
    timing = Timing(checkpoint_retain=8)
    async with open_inprocess_cluster(
        Log,
        seed=11,
        checkpoint_interval=8,
        timing=timing,
        segment_bytes=2048,
    ) as cluster:
        async with cluster.client() as client:
            for i in range(60):
                assert await client.submit(i) == i + 1
            with trio.fail_after(60):
                await cluster.wait_converged()
            for replica in cluster.replicas:
                assert replica is not None
                assert replica.status.checkpoint >= 56
            # A backup restarts (power loss) from its checkpoint: it does not
            # replay from op 1 (its journal no longer has op 1).
            victim = (cluster.primary() + 1) % 3
            await cluster.kill(victim, power_loss=True)
            first, checkpoint_op, _ = await _log_of(cluster.disks[victim])
            assert first > 1 and checkpoint_op >= 48
            handle = await cluster.start(victim)
            assert handle.status.applied >= checkpoint_op
            for i in range(60, 70):
                assert await client.submit(i) == i + 1
            with trio.fail_after(60):
                await cluster.wait_converged()
        entries = {tuple(r.machine.entries) for r in cluster.replicas if r is not None}  # type: ignore[attr-defined]
        assert entries == {tuple(range(70))}
        logs = [await _log_of(disk) for disk in cluster.disks]
        for op in set.intersection(*(set(log[2]) for log in logs)):
            assert len({log[2][op] for log in logs}) == 1


async def test_a_missing_checkpoint_refuses_to_open(autojump_clock: Any) -> None:
    config = ClusterConfig(cluster_id=3, replica_count=1, checkpoint_interval=4)
    disk = SimulatedDisk(5)
    async with open_sim_transport(seed=2) as transport:
        async with (
            open_cluster_replica(disk, Counter(), config, replica=0, transport=transport),
            open_cluster_client(config, transport=transport) as client,
        ):
            for _ in range(9):
                await client.submit({"add": 1})
        async with SnapshotStore(disk.clone(), machine_name="counter", machine_version=1) as store:
            assert store.latest_op == 8
        names = [n for n in disk.files() if n.endswith(".snapshot")]
        assert len(names) == 2  # the two newest are kept
        for name in names:
            disk.corrupt(name, 60)
        with pytest.raises(CheckpointMissingError) as caught:
            async with open_cluster_replica(
                disk, Counter(), config, replica=0, transport=transport
            ):
                pass
        assert caught.value.op == 8


async def test_a_crash_at_each_step_of_a_checkpoint_recovers(autojump_clock: Any) -> None:
    """A cluster of one (commit is local durability) runs through several
    checkpoints and compactions; every state a power loss after any disk
    operation could leave reopens, with every acknowledged command applied
    once and the checkpoint the view state names loadable."""
    config = ClusterConfig(cluster_id=4, replica_count=1, checkpoint_interval=3)
    timing = Timing(checkpoint_retain=2)
    options: dict[str, Any] = {"timing": timing, "segment_bytes": 700, "apply_in_thread": False}
    disk = SimulatedDisk(9)
    acked: list[int] = []
    async with open_sim_transport(seed=4) as transport:
        async with open_cluster_replica(
            disk, Log(), config, replica=0, transport=transport, **options
        ) as replica:
            async with open_cluster_client(config, transport=transport) as client:
                await client.submit(-1)  # registered and warm before recording
                with CrashRecorder(disk, context=lambda: len(acked), max_states_per_point=3) as rec:
                    for i in range(10):
                        await client.submit(i)
                        acked.append(i)
            assert replica.status.checkpoint >= 9
        assert len(rec.points) > 50
        recovered_from_checkpoint = 0
        for point in rec.points:
            async with open_cluster_replica(
                point.state, Log(), config, replica=0, transport=transport, **options
            ) as again:
                with trio.fail_after(5):
                    while again.status.applied < again.status.commit:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                entries = again.machine.entries  # type: ignore[attr-defined]
                assert entries == [-1, *range(len(entries) - 1)]
                assert len(entries) - 1 >= point.context
                recovered_from_checkpoint += again.status.checkpoint > 0
        assert recovered_from_checkpoint > 0


# --- state digests ---------------------------------------------------------------


class Jittery(StateMachine):
    """A counter whose state also holds a per-instance random draw after every
    apply: each replica's state differs, its results do not."""

    name: ClassVar[str] = "jittery"
    version: ClassVar[int] = 1
    instances = 0

    def __init__(self) -> None:
        Jittery.instances += 1
        self.rng = random.Random(Jittery.instances)
        self.total = 0
        self.noise = 0.0

    def apply(self, op: int, command: Any) -> int:
        self.total += command["add"]
        self.noise = self.rng.random()
        return self.total

    def snapshot(self) -> Any:
        return {"total": self.total, "noise": self.noise}

    def restore(self, state: Any) -> None:
        self.total, self.noise = state["total"], state["noise"]


def test_a_non_deterministic_apply_is_caught_at_the_first_checkpoint() -> None:
    options = SimOptions(machine=Jittery, checkpoint_interval=8, ticks=600, liveness_ticks=600)
    result = run_seed(1, options)
    assert not result.ok
    first = result.violations[0]
    assert first.invariant == "divergence", first
    assert "checkpoint op 8" in first.detail and "ops 1..8" in first.detail


def test_a_deterministic_machine_passes_the_digest_checks() -> None:
    options = SimOptions(checkpoint_interval=8, ticks=600, liveness_ticks=1500)
    result = run_seed(1, options)
    assert result.ok, result.violations
    assert result.stats["checkpoints"] >= 3 * 4


_DIGEST_IN_A_PROCESS = """
import sys
from trio_replica.cluster.checkpoint import state_digest
words = ["w%d" % i for i in range(200)]
equal = {"names": set(words), "index": {w: len(w) for w in reversed(words)}}
# A state that depends on set iteration order (a non-deterministic apply()).
ordered = {"first": next(iter(set(words)))}
print(state_digest(equal, []).hex(), state_digest(ordered, []).hex())
"""


def _digests_with_hash_seed(seed: int) -> tuple[str, str]:
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    done = subprocess.run(
        [sys.executable, "-c", _DIGEST_IN_A_PROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    equal, ordered = done.stdout.split()
    return equal, ordered


def test_digests_are_canonical_across_hash_seeds_and_catch_order_dependence() -> None:
    """Processes with different PYTHONHASHSEED iterate sets and str-keyed
    dicts in different orders: equal states still digest the same, and a
    state built from that order digests differently (what the checkpoint
    comparison then reports as a divergence)."""
    runs = [_digests_with_hash_seed(seed) for seed in (1, 2, 3)]
    assert len({equal for equal, _ in runs}) == 1
    assert len({ordered for _, ordered in runs}) > 1


def test_the_checkpoint_messages_cross_the_wire() -> None:
    messages = [
        Retained(3, 1, 5, 16, bytes(range(16))),
        CheckpointDigest(3, 2, 16, bytes(16), bytes(range(16))),
        Request(4, 1, 2, Operation.SWITCH_VERSION, cbor2.dumps(2)),
    ]
    for message in messages:
        assert decode_message(encode_message(message)) == message


def test_digest_comparison_stops_the_odd_replica_only() -> None:
    def digest_from(core: Consensus, replica: int, digest: bytes) -> None:
        mark = core.checkpoint
        assert mark is not None
        core.step(Received(CheckpointDigest(0, replica, mark.op, mark.checksum, digest)))

    mine = Checkpoint(_chain(20)[15], {"total": 0}, []).digest()
    other = bytes(16)
    # A quorum (with this replica) agrees: the odd peer is noted, nobody here stops.
    core = _restarted(first=5, last=20, checkpoint_at=16)
    digest_from(core, 0, mine)
    digest_from(core, 2, other)
    assert core.divergent_peers == [(16, 2)]
    # A quorum agrees on another digest: this replica is the odd one and stops.
    core = _restarted(first=5, last=20, checkpoint_at=16)
    digest_from(core, 0, other)
    with pytest.raises(StateDivergenceError) as caught:
        digest_from(core, 2, other)
    assert (caught.value.replica, caught.value.op, caught.value.since) == (1, 16, 0)
    # Everyone reported and no quorum agrees: every replica stops.
    core = _restarted(first=5, last=20, checkpoint_at=16)
    digest_from(core, 0, b"\x01" * 16)
    with pytest.raises(StateDivergenceError):
        digest_from(core, 2, b"\x02" * 16)


@pytest.mark.parametrize("seed", [3, 7, 13, 15])
def test_the_simulator_compacts_below_checkpoints_under_faults(seed: int) -> None:
    """With a retention of 128 ops replicas compact their journals while they
    crash and restart from checkpoints, and every checker still passes (a
    replica further behind than every peer retains needs state transfer, so
    these seeds are ones where none falls that far behind)."""
    options = options_for_seed(seed, 3, 1500)
    options = attrs.evolve(options, timing=attrs.evolve(options.timing, checkpoint_retain=128))
    result = run_seed(seed, options)
    assert result.ok, "\n".join(str(v) for v in result.violations)
    stats = result.stats
    assert stats["compactions"] > 0 and stats["checkpoint_restarts"] > 0
