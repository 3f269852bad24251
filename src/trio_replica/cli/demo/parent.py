"""The demo's parent process: run the writer, kill it, recover, check, continue.

Phases, each timed:

1. start: prepare the directory and start the writer process
   (:mod:`.writer`) until its replica is open;
2. write: follow its acks (showing progress on stderr) and, after a seeded
   random number of them, kill it with SIGKILL while it is still writing
   (:mod:`.supervise`);
3. recover: open a replica on the directory in this process;
4. check: :func:`~.consistency.check_consistency` against every ack read;
5. continue: submit a few more ops to the recovered replica, checkpoint,
   close, and verify the directory with the same check as ``trio-replica verify``.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from ...errors import CorruptionError, InvalidCommand
from ...journal.scan import iter_records
from ...machines.metadata import MetadataStateMachine
from ...machines.workload import metadata_workload
from ...replica import RecoveryReport, Replica, open_replica
from ...storage import OsDirectory
from ..verify import verify_directory
from .consistency import ConsistencyReport, check_consistency
from .supervise import WriteOutcome, WriterSettings, run_and_kill_writer
from .workdir import prepare_demo_dir

__all__ = ["DemoConfig", "run_demo"]

_CONTINUE_OPS = 25  # ops submitted after recovery
_KILL_FRACTION = (0.4, 0.85)  # the kill comes after this fraction of --ops acked


@attrs.frozen
class DemoConfig:
    """The demo's settings (see ``trio-replica demo --help``)."""

    directory: Path
    ops: int
    clients: int
    seed: int
    snapshot_every: int
    segment_bytes: int


def _journal_bodies(directory: OsDirectory) -> Iterator[tuple[int, bytes]]:
    """Every record of the journal as ``(op, body)``, streaming."""
    for record in iter_records(directory):
        if record.status != "ok" or record.body is None:
            raise CorruptionError(
                f"a record failed its check after recovery: {record.status}",
                path=record.path,
                offset=record.offset,
                op=record.op,
            )
        yield record.op, record.body


def _print_recovery(report: RecoveryReport, seconds: float, out: TextIO) -> None:
    journal = report.journal
    print(f"recovered in {report.seconds:.2f} s (replica open after {seconds:.2f} s):", file=out)
    snapshot = f"op {report.snapshot_op}" if report.snapshot_op else "none"
    print(f"  newest valid snapshot:  {snapshot}", file=out)
    if report.snapshots_skipped:
        print(f"  invalid snapshots skipped: {report.snapshots_skipped}", file=out)
    print(f"  ops replayed from the journal: {report.ops_replayed}", file=out)
    print(
        f"  journal: {journal.segments} segment(s), {journal.records} records, "
        f"ops {journal.first_op}..{journal.last_op}",
        file=out,
    )
    if journal.bytes_truncated:
        print(
            f"  torn tail truncated: {journal.bytes_truncated} bytes at offset "
            f"{journal.truncated_offset} of {journal.truncated_path}",
            file=out,
        )
    else:
        print("  torn tail truncated: none (0 bytes)", file=out)
    print(f"  last op: {report.last_op}", file=out)


def _print_consistency(report: ConsistencyReport, out: TextIO) -> None:
    if not report.consistent:
        print("consistency: FAILED", file=out)
        for problem in report.problems:
            print(f"  {problem}", file=out)
        return
    print("consistency: OK", file=out)
    print(
        f"  all {report.acked} acked ops are in the journal with the same command",
        file=out,
    )
    print(
        f"  applied op {report.recovered_op} >= last acked op {report.last_acked_op}",
        file=out,
    )
    print(
        f"  state digest {report.recovered_digest[:16]} equals replaying ops "
        f"1..{report.recovered_op} on a fresh machine ({report.rejected_on_replay} "
        "rejected, as they were when written)",
        file=out,
    )


async def _write_phase(
    config: DemoConfig, out: TextIO, err: TextIO, phases: list[tuple[str, float, str]]
) -> WriteOutcome:
    rng = random.Random(config.seed)
    kill_at = max(1, round(config.ops * rng.uniform(*_KILL_FRACTION)))
    with tempfile.TemporaryDirectory(prefix="trio-replica-demo-") as scratch:
        settings = WriterSettings(
            directory=config.directory,
            acks=Path(scratch, "acks"),
            ops=config.ops,
            clients=config.clients,
            seed=config.seed,
            snapshot_every=config.snapshot_every,
            segment_bytes=config.segment_bytes,
        )
        written = await run_and_kill_writer(settings, kill_at, err)
    phases.append(("start writer", written.ready_seconds, "until its replica was open"))
    rate = written.answered / written.write_seconds if written.write_seconds > 0 else 0.0
    phases.append(("write until kill", written.write_seconds, f"{rate:,.0f} acked ops/s"))
    when = "after it had finished (too few --ops)" if written.finished else "mid-write"
    print(
        f"killed the writer with SIGKILL {when}: {written.answered} ops acked "
        f"({written.answered - written.rejected} applied, {written.rejected} rejected by "
        "the state machine), "
        f"last acked op {max(written.acked, default=0)}",
        file=out,
    )
    return written


async def run_demo(
    config: DemoConfig, out: TextIO, err: TextIO, facts: dict[str, Any] | None = None
) -> bool:
    """Run the whole demo; return whether everything checked out.

    The report goes to ``out`` as text; ``facts``, when given, is filled with
    the same results as plain values (what ``demo --json`` prints).
    """
    facts = {} if facts is None else facts
    phases: list[tuple[str, float, str]] = []
    started = time.monotonic()
    if prepare_demo_dir(config.directory):
        print(f"removed the previous demo data in {config.directory}", file=out)
    print(
        f"demo: data directory {config.directory}, {config.clients} clients, up to "
        f"{config.ops} ops, a snapshot at the end of the first batch {config.snapshot_every} "
        f"or more ops after the previous one, seed {config.seed}",
        file=out,
    )
    out.flush()
    facts.update(
        directory=str(config.directory),
        clients=config.clients,
        ops=config.ops,
        snapshot_every=config.snapshot_every,
        seed=config.seed,
    )
    written = await _write_phase(config, out, err, phases)
    facts["kill"] = {
        "mid_write": not written.finished,
        "acked": written.answered,
        "rejected": written.rejected,
        "last_acked_op": max(written.acked, default=0),
    }

    directory = OsDirectory(config.directory)
    machine = MetadataStateMachine()
    begun = time.monotonic()
    async with open_replica(
        config.directory,
        machine,
        snapshot_every=config.snapshot_every,
        segment_bytes=config.segment_bytes,
    ) as replica:
        recover_seconds = time.monotonic() - begun
        phases.append(("recover", recover_seconds, f"{replica.recovery.ops_replayed} ops replayed"))
        _print_recovery(replica.recovery, recover_seconds, out)
        in_flight = replica.applied_op - max(written.acked, default=0)
        facts["recovery"] = {
            "seconds": replica.recovery.seconds,
            "snapshot_op": replica.recovery.snapshot_op,
            "ops_replayed": replica.recovery.ops_replayed,
            "bytes_truncated": replica.recovery.journal.bytes_truncated,
            "last_op": replica.recovery.last_op,
            "durable_but_unacknowledged": max(in_flight, 0),
        }
        if in_flight > 0:
            print(
                f"  {in_flight} op(s) after the last ack were durable but never acknowledged "
                "(in flight at the kill): recovered too, as a prefix allows",
                file=out,
            )

        begun = time.monotonic()
        recovered_op = replica.applied_op
        recovered_state = machine.snapshot()
        consistency = await trio.to_thread.run_sync(
            lambda: check_consistency(
                written.acked,
                _journal_bodies(directory),
                recovered_op=recovered_op,
                recovered_state=recovered_state,
                fresh_machine=MetadataStateMachine(),
            )
        )
        phases.append(("check", time.monotonic() - begun, f"{consistency.replayed} ops replayed"))
        _print_consistency(consistency, out)
        facts["consistency"] = {
            "consistent": consistency.consistent,
            "acked_ops_checked": consistency.acked,
            "recovered_op": consistency.recovered_op,
            "replayed": consistency.replayed,
            "state_digest": consistency.recovered_digest,
            "problems": list(consistency.problems),
        }
        if written.unnumbered:
            print(
                f"  ({written.unnumbered} rejections carried no op number and were not "
                "checked one by one)",
                file=out,
            )

        begun = time.monotonic()
        continued = await _continue(replica, config, recovered_op, out)
        summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in machine.describe().items())
    verified = await trio.to_thread.run_sync(
        lambda: verify_directory(directory, shown_path=str(config.directory))
    )
    phases.append(("continue + verify", time.monotonic() - begun, ""))
    if verified.clean:
        print("verify after closing: clean", file=out)
    else:
        print("verify after closing: NOT CLEAN", file=out)
        for problem in verified.problems:
            print(f"  {problem}", file=out)
    print(f"state: {summary}", file=out)
    print("phases:", file=out)
    for name, seconds, note in phases:
        print(f"  {name:<18} {seconds:7.2f} s  {note}".rstrip(), file=out)
    ok = consistency.consistent and continued and verified.clean
    facts.update(
        continued=continued,
        verify_clean=verified.clean,
        verify_problems=list(verified.problems),
        state=dict(machine.describe()),
        phases={name: seconds for name, seconds, _ in phases},
        result="CONSISTENT" if ok else "INCONSISTENT",
        seconds=time.monotonic() - started,
    )
    print(
        f"result: {'CONSISTENT' if ok else 'INCONSISTENT'} "
        f"(total {time.monotonic() - started:.1f} s)",
        file=out,
    )
    return ok


async def _continue(replica: Replica, config: DemoConfig, recovered_op: int, out: TextIO) -> bool:
    """Submit a few more ops after recovery; True when they got the next op numbers."""
    commands = metadata_workload(random.Random(f"{config.seed}:after"), config.clients)
    ops: list[int] = []
    rejected = 0
    for command in islice(commands, _CONTINUE_OPS):
        try:
            applied = await replica.execute(command)
        except InvalidCommand as exc:
            rejected += 1
            if exc.op is not None:
                ops.append(exc.op)
            continue
        ops.append(applied.op)
    checkpoint_op = await replica.checkpoint()
    expected = list(range(recovered_op + 1, recovered_op + _CONTINUE_OPS + 1))
    # Submitted one at a time, so each (applied or rejected) takes the next op.
    in_order = ops == sorted(set(ops)) and set(ops) <= set(expected)
    ends_right = replica.applied_op == expected[-1]
    span = f"ops {ops[0]}..{ops[-1]}" if ops else "no ops"
    print(
        f"continued after recovery: {_CONTINUE_OPS} more ops ({_CONTINUE_OPS - rejected} applied, "
        f"{rejected} rejected, {span}), checkpoint at op {checkpoint_op}",
        file=out,
    )
    if not (in_order and ends_right):
        print(
            f"  FAILED: expected ops {recovered_op + 1}..{recovered_op + _CONTINUE_OPS}, "
            f"the replica is at op {replica.applied_op}",
            file=out,
        )
    return in_order and ends_right
