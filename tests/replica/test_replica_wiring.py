"""The pipeline's shape: the sequencer numbers and commits, the writer only
appends, replies travel apart from ops, and the channels table is the one
the documentation shows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import trio

from trio_replica.pipeline import (
    CheckpointRequest,
    Commit,
    Durable,
    FromWriter,
    Prepares,
    Reply,
    SnapshotRequest,
    Stop,
    ToApplier,
    ToWriter,
)
from trio_replica.replica import ReplicaConfig
from trio_replica.replica.channels import CHANNELS, CONTROL_CYCLE, channel, control_queue
from trio_replica.replica.intake import Intake
from trio_replica.replica.sequencer import Sequencer

ROOT = Path(__file__).resolve().parents[2]


async def test_sequencer_numbers_requests_and_commits_what_is_durable() -> None:
    sequencer = Sequencer(last_op=10, max_batch=8)
    intake = Intake(capacity=16, max_group=8)
    to_writer, writer_in = trio.open_memory_channel[ToWriter](16)
    durable_send, durable = trio.open_memory_channel[FromWriter](16)
    to_applier, applier_in = trio.open_memory_channel[ToApplier](16)
    checkpoint: Reply[int] = Reply()
    first_group, _ = await intake.put(b"0", 0)
    assert await intake.put(b"1", 1) == (first_group, 1)  # joins the open group
    await intake.put_checkpoint(CheckpointRequest(reply=checkpoint))
    last_group, index = await intake.put(b"2", 2)  # a new group, after the checkpoint
    assert last_group is not first_group and index == 0
    intake.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sequencer.run, intake, to_writer, durable, to_applier)
        first = await writer_in.receive()
        barrier = await writer_in.receive()
        last = await writer_in.receive()
        assert await writer_in.receive() == Stop()
        # Numbered entries carry no reply, and the checkpoint is an empty barrier.
        assert first == Prepares(11, (b"0", b"1"), (0, 1))
        assert barrier == Prepares(13, (), ())
        assert last == Prepares(13, (b"2",), (2,))
        assert (first_group.first_op, last_group.first_op) == (11, 13)
        assert sequencer.prepared_op == 13 and sequencer.committed_op == 10
        # Durable up to 12: ops 11 and 12 and the checkpoint that follows them commit.
        durable_send.send_nowait(Durable(op=12, remaining_capacity=99))
        commit = await applier_in.receive()
        assert isinstance(commit, Commit)
        assert commit.op == 12 and commit.prepares == (Prepares(11, (b"0", b"1"), (0, 1)),)
        assert commit.groups == (first_group,)
        assert commit.checkpoints == (checkpoint,) and commit.remaining_capacity == 99
        durable_send.send_nowait(SnapshotRequest())
        assert await applier_in.receive() == SnapshotRequest()
        durable_send.send_nowait(Durable(op=13, remaining_capacity=98))
        commit = await applier_in.receive()
        assert isinstance(commit, Commit) and commit.groups == (last_group,)
        assert sequencer.committed_op == 13
        durable_send.close()
    with pytest.raises(trio.EndOfChannel):
        applier_in.receive_nowait()  # the sequencer closed the applier's channel


async def test_a_group_split_across_appends_is_committed_in_parts() -> None:
    """The writer may split a group larger than its limit: each Durable
    commits the durable part, and the group is in both commits."""
    sequencer = Sequencer(last_op=0, max_batch=2)
    intake = Intake(capacity=16, max_group=2)
    to_writer, writer_in = trio.open_memory_channel[ToWriter](16)
    durable_send, durable = trio.open_memory_channel[FromWriter](16)
    to_applier, applier_in = trio.open_memory_channel[ToApplier](16)
    group = await intake.put_many([b"a", b"b", b"c"], ["a", "b", "c"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sequencer.run, intake, to_writer, durable, to_applier)
        assert await writer_in.receive() == Prepares(1, (b"a", b"b", b"c"), ("a", "b", "c"))
        durable_send.send_nowait(Durable(op=2, remaining_capacity=9))
        commit = await applier_in.receive()
        assert isinstance(commit, Commit)
        assert commit.prepares == (Prepares(1, (b"a", b"b"), ("a", "b")),)
        assert commit.groups == (group,)
        durable_send.send_nowait(Durable(op=3, remaining_capacity=8))
        commit = await applier_in.receive()
        assert isinstance(commit, Commit)
        assert commit.prepares == (Prepares(3, (b"c",), ("c",)),)
        assert commit.groups == (group,)
        nursery.cancel_scope.cancel()


async def test_a_failed_append_answers_every_uncommitted_op_with_its_error() -> None:
    sequencer = Sequencer(last_op=0, max_batch=8)
    intake = Intake(capacity=16, max_group=8)
    to_writer, writer_in = trio.open_memory_channel[ToWriter](16)
    _durable_send, durable = trio.open_memory_channel[FromWriter](16)
    to_applier, _applier_in = trio.open_memory_channel[ToApplier](16)
    group, _ = await intake.put(b"x", 7)
    await intake.put(b"y", 8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sequencer.run, intake, to_writer, durable, to_applier)
        await writer_in.receive()  # numbered and sent: the sequencer owns the group
        error = OSError("disk gone")
        sequencer.fail_uncommitted(error)
        nursery.cancel_scope.cancel()
    await group.wait()
    for index in (0, 1):
        with pytest.raises(OSError) as failed:
            group.outcome(index)
        assert failed.value is error


def test_the_writer_and_the_applier_never_see_a_submitter() -> None:
    """The shape that lets consensus replace the sequencer without touching
    the tasks: only the sequencer, the intake and the handle know requests."""
    for path in ("replica/writer.py", "stm/applier.py", "coordinator/task.py"):
        tree = ast.parse((ROOT / "src/trio_replica" / path).read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert not names & {"RequestGroup", "CheckpointRequest", "InboxMessage"}, path


def test_channels_table_in_the_docs_is_the_code() -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    section = text.split("## Backpressure", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (\w+) -> (\w+) \|", section, flags=re.M)
    assert rows[0] == ("Channel", "From", "to")  # the header
    assert rows[1:] == [(c.name, c.source, c.destination) for c in CHANNELS]


@pytest.mark.parametrize(
    "config",
    [
        ReplicaConfig(),
        ReplicaConfig(applier_queue=1, coordinator_queue=1),
        ReplicaConfig(applier_queue=50, coordinator_queue=7),
    ],
)
def test_control_channel_exceeds_what_the_cycle_can_produce(config: ReplicaConfig) -> None:
    queued = sum(channel(name).size(config) for name in CONTROL_CYCLE)
    held = len(CONTROL_CYCLE)  # one message in the hands of each stage of the cycle
    assert control_queue(config) > queued + held
    assert channel("control").size(config) == control_queue(config)
