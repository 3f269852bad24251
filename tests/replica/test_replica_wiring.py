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
    Applied,
    CheckpointRequest,
    Commit,
    Durable,
    FromWriter,
    InboxMessage,
    Prepares,
    Reply,
    SnapshotRequest,
    Stop,
    Submit,
    ToApplier,
    ToWriter,
)
from trio_replica.replica import ReplicaConfig
from trio_replica.replica.channels import CHANNELS, CONTROL_CYCLE, channel, control_queue
from trio_replica.replica.sequencer import Sequencer

ROOT = Path(__file__).resolve().parents[2]


async def test_sequencer_numbers_requests_and_commits_what_is_durable() -> None:
    sequencer = Sequencer(last_op=10, max_batch=8)
    inbox_send, inbox = trio.open_memory_channel[InboxMessage](16)
    to_writer, writer_in = trio.open_memory_channel[ToWriter](16)
    durable_send, durable = trio.open_memory_channel[FromWriter](16)
    to_applier, applier_in = trio.open_memory_channel[ToApplier](16)
    replies: list[Reply[Applied]] = [Reply() for _ in range(3)]
    checkpoint: Reply[int] = Reply()
    for i, reply in enumerate(replies[:2]):
        inbox_send.send_nowait(Submit(body=b"%d" % i, command=i, reply=reply))
    inbox_send.send_nowait(CheckpointRequest(reply=checkpoint))
    inbox_send.send_nowait(Submit(body=b"2", command=2, reply=replies[2]))
    inbox_send.send_nowait(Stop())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sequencer.run, inbox, to_writer, durable, to_applier)
        first = await writer_in.receive()
        barrier = await writer_in.receive()
        last = await writer_in.receive()
        assert await writer_in.receive() == Stop()
        # Numbered entries carry no reply, and the checkpoint is an empty barrier.
        assert isinstance(first, Prepares) and [p.op for p in first.prepares] == [11, 12]
        assert barrier == Prepares(())
        assert isinstance(last, Prepares) and [p.op for p in last.prepares] == [13]
        assert sequencer.prepared_op == 13 and sequencer.committed_op == 10
        # Durable up to 12: ops 11 and 12 and the checkpoint that follows them commit.
        durable_send.send_nowait(Durable(op=12, remaining_capacity=99))
        commit = await applier_in.receive()
        assert isinstance(commit, Commit)
        assert commit.op == 12 and [p.op for p in commit.prepares] == [11, 12]
        assert commit.replies == {11: replies[0], 12: replies[1]}
        assert commit.checkpoints == (checkpoint,) and commit.remaining_capacity == 99
        durable_send.send_nowait(SnapshotRequest())
        assert await applier_in.receive() == SnapshotRequest()
        durable_send.send_nowait(Durable(op=13, remaining_capacity=98))
        commit = await applier_in.receive()
        assert isinstance(commit, Commit) and commit.replies == {13: replies[2]}
        assert sequencer.committed_op == 13
        durable_send.close()
    with pytest.raises(trio.EndOfChannel):
        applier_in.receive_nowait()  # the sequencer closed the applier's channel


async def test_a_failed_append_answers_every_uncommitted_op_with_its_error() -> None:
    sequencer = Sequencer(last_op=0, max_batch=8)
    replies: list[Reply[Applied]] = [Reply(), Reply()]
    for i, reply in enumerate(replies):
        sequencer._number(Submit(body=b"x", command=i, reply=reply))
    error = OSError("disk gone")
    sequencer.fail_uncommitted(error)
    for reply in replies:
        with pytest.raises(OSError) as failed:
            await reply.wait()
        assert failed.value is error


def test_the_writer_and_the_applier_never_see_a_submitter() -> None:
    """The shape that lets consensus replace the sequencer without touching
    the tasks: only the sequencer and the handle know Submit."""
    for path in ("replica/writer.py", "stm/applier.py", "coordinator/task.py"):
        tree = ast.parse((ROOT / "src/trio_replica" / path).read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert not names & {"Submit", "CheckpointRequest", "InboxMessage"}, path


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
