"""A slow apply() in a cluster: inline on the Trio thread vs off it, per committed batch.

Runs a 3-replica in-process cluster (SimulatedDisks, the SimNetwork transport,
real time) whose state machine sleeps ``--apply-seconds`` in ``apply()`` for
one command, surrounded by fast ones. Prints, for each mode, how late the
protocol's most delayed tick fired (``max_tick_lag``: how far the timers of
heartbeats and view changes fell behind), the view at the end and the total
wall time.

    python benchmarks/cluster_slow_apply.py [--apply-seconds 2.0] [--ops 20]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, ClassVar

import trio

from trio_replica.stm.protocol import StateMachine
from trio_replica.testing.inprocess_cluster import open_inprocess_cluster


class SlowOnce(StateMachine):
    """Sleeps ``delay`` seconds (blocking) when it applies the command ``"slow"``."""

    name: ClassVar[str] = "slow-once"
    version: ClassVar[int] = 1
    delay = 2.0

    def __init__(self) -> None:
        self.count = 0

    def apply(self, op: int, command: Any) -> int:
        if command == "slow":
            time.sleep(self.delay)
        self.count += 1
        return self.count

    def snapshot(self) -> Any:
        return self.count

    def restore(self, state: Any) -> None:
        self.count = state


async def measure(in_thread: bool, ops: int) -> tuple[float, int, float]:
    started = time.perf_counter()
    async with open_inprocess_cluster(SlowOnce, seed=1, apply_in_thread=in_thread) as cluster:
        async with cluster.client(retry_seconds=1.0) as client:
            for i in range(ops):
                await client.submit("slow" if i == ops // 2 else i)
        with trio.fail_after(30):
            await cluster.wait_converged()
        lag = max(r.max_tick_lag for r in cluster.replicas if r is not None)
        view = max(r.status.view for r in cluster.replicas if r is not None)
    return lag, view, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--apply-seconds", type=float, default=2.0)
    parser.add_argument("--ops", type=int, default=20)
    args = parser.parse_args(argv)
    SlowOnce.delay = args.apply_seconds
    print(f"apply() of one command sleeps {args.apply_seconds} s; {args.ops} ops; tick 10 ms")
    print(f"{'mode':<10} {'max tick lag (s)':>17} {'final view':>11} {'wall (s)':>9}")
    for in_thread in (False, True):
        lag, view, wall = trio.run(measure, in_thread, args.ops)
        mode = "thread" if in_thread else "inline"
        print(f"{mode:<10} {lag:>17.3f} {view:>11} {wall:>9.2f}")


if __name__ == "__main__":
    main()
