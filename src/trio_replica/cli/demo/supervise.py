"""Starting the demo's writer process, following its acks, and killing it.

The writer appends one line per acknowledged op to an ack log (a file, not
a pipe: a pipe the parent reads too slowly would stall the writer, and the
kill would then hit an idle replica instead of one in the middle of
writing). The parent follows the file as it grows, shows the progress, and
sends SIGKILL once a seeded number of acks has been seen; the writer keeps
writing flat out until the signal lands. Afterwards the whole log is read:
every complete line in it is an ack the writer received before it died. A
line cut short by the kill is ignored (its op was acked, but claiming less
than was acked is safe; claiming more is not).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import attrs
import trio

from ..errors import CommandError
from ..progress import Progress

__all__ = ["WriteOutcome", "WriterSettings", "run_and_kill_writer", "writer_command"]

_SILENCE_SECONDS = 60.0  # a writer that acks nothing for this long is stuck
_POLL_SECONDS = 0.05  # how often the parent looks at the ack log


@attrs.frozen
class WriterSettings:
    """What the writer process is told on its command line."""

    directory: Path
    acks: Path
    ops: int
    clients: int
    seed: int
    snapshot_every: int
    segment_bytes: int


@attrs.define
class WriteOutcome:
    """What the parent learned from the ack log."""

    acked: dict[int, bytes] = attrs.Factory(dict)  # op -> CBOR of the command
    rejected: int = 0  # of the acks, how many the state machine rejected
    unnumbered: int = 0  # rejections whose error carried no op (not in ``acked``)
    finished: bool = False
    ready_seconds: float = 0.0
    write_seconds: float = 0.0
    seen_at_kill: int | None = None  # acks the parent had seen when it sent SIGKILL

    @property
    def answered(self) -> int:
        """Ops answered, applied or rejected."""
        return len(self.acked) + self.unnumbered


def writer_command(settings: WriterSettings) -> list[str]:
    """The command line of the writer process."""
    return [
        sys.executable,
        "-m",
        "trio_replica",
        "demo",
        "--child",
        "--dir",
        str(settings.directory),
        "--acks",
        str(settings.acks),
        "--ops",
        str(settings.ops),
        "--clients",
        str(settings.clients),
        "--seed",
        str(settings.seed),
        "--snapshot-every",
        str(settings.snapshot_every),
        "--segment-bytes",
        str(settings.segment_bytes),
    ]


class _AckLog:
    """Reads the ack log as it grows, keeping a cut-off last line for later."""

    def __init__(self, outcome: WriteOutcome) -> None:
        self.outcome = outcome
        self.ready = False
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the log; complete lines are parsed, a partial one kept."""
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        kind, _, rest = line.partition(b" ")
        if kind == b"ack":
            op_text, _, body = rest.partition(b" ")
            self.outcome.acked[int(op_text)] = bytes.fromhex(body.decode())
        elif kind == b"reject":
            self.outcome.rejected += 1
            if rest:
                op_text, _, body = rest.partition(b" ")
                self.outcome.acked[int(op_text)] = bytes.fromhex(body.decode())
            else:
                self.outcome.unnumbered += 1
        elif kind == b"ready":
            self.ready = True
        elif kind == b"done":
            self.outcome.finished = True
        else:
            raise CommandError(f"the writer wrote an unexpected ack log line: {line[:80]!r}")


async def run_and_kill_writer(settings: WriterSettings, kill_at: int, err: TextIO) -> WriteOutcome:
    """Run the writer until ``kill_at`` ops were answered, SIGKILL it, read every ack."""
    outcome = WriteOutcome()
    log = _AckLog(outcome)
    settings.acks.write_bytes(b"")
    started = time.monotonic()
    ready_at = last_growth = started
    progress: Progress | None = None
    # The writer exits by itself when its stdin closes, so it never outlives
    # us; in its own session, a Ctrl-C at the terminal reaches only us, and we
    # kill it.
    process = await trio.lowlevel.open_process(
        writer_command(settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with await trio.open_file(settings.acks, "rb") as acks:
            while process.poll() is None:
                data = await acks.read()
                now = time.monotonic()
                if data:
                    last_growth = now
                    log.feed(data)
                elif now - last_growth > _SILENCE_SECONDS:
                    raise CommandError(
                        f"the writer acked nothing for {_SILENCE_SECONDS:.0f} s; giving up"
                    )
                if log.ready and progress is None:
                    ready_at = now
                    progress = Progress(err, total=settings.ops, label="writing")
                if progress is not None:
                    progress.update(outcome.answered)
                if outcome.answered >= kill_at:
                    process.kill()  # SIGKILL: no cleanup, no flush, no goodbye
                    outcome.seen_at_kill = outcome.answered
                    outcome.write_seconds = now - ready_at
                    break
                await trio.sleep(_POLL_SECONDS)
            status = await process.wait()
            # Everything the writer wrote before it died is in the file: read it all.
            log.feed(await acks.read())
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        if process.stdin is not None:
            with trio.CancelScope(shield=True):
                await process.stdin.aclose()
    if progress is not None:
        progress.update(outcome.answered)
        progress.finish(
            f"killed with SIGKILL at {outcome.answered} acked ops"
            if outcome.seen_at_kill is not None
            else "the writer stopped"
        )
    if outcome.seen_at_kill is None:
        raise CommandError(
            f"the writer process exited with status {status} before it was killed "
            "(its error, if any, is above)"
        )
    outcome.ready_seconds = ready_at - started
    return outcome
