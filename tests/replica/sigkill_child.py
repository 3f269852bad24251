"""Child process of test_sigkill.py: runs a replica until it is killed.

Usage: ``python sigkill_child.py DATA_DIR ROUND``. Prints ``ready LAST_OP``
once recovered, then ``ack OP VALUE`` for every acknowledged submit, each
line written with one unbuffered ``write`` so a kill never leaves half a
line. Value = ``ROUND * 1_000_000 + TASK * 10_000 + I``: submitter TASK's
I-th command of this round (each submitter waits for its ack before sending
the next command).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from replica_machines import History

from trio_replica import open_replica

SUBMITTERS = 16
OPTIONS = {
    "snapshot_every": 100,
    "segment_bytes": 16 * 1024,
    "slot_count": 512,
    "max_batch": 64,
}


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


async def main(data: str, round_no: int) -> None:
    async with open_replica(data, History(), **OPTIONS) as replica:
        emit(f"ready {replica.recovery.last_op}")

        async def submitter(task: int) -> None:
            for i in range(10_000):
                value = round_no * 1_000_000 + task * 10_000 + i
                applied = await replica.execute(value)
                emit(f"ack {applied.op} {value}")

        async def checkpointer() -> None:
            while True:
                await trio.sleep(0.03)
                await replica.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(checkpointer)
            async with trio.open_nursery() as submitters:
                for task in range(SUBMITTERS):
                    submitters.start_soon(submitter, task)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
