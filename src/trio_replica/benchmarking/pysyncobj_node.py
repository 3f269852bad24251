"""One PySyncObj node, the Raft peer of the cluster benchmark, run as its own process.

``python -m trio_replica.benchmarking.pysyncobj_node --self HOST:PORT
--partners HOST:PORT,HOST:PORT --journal FILE`` runs a 3-node PySyncObj
(the ``pysyncobj`` package) cluster member holding a replicated counter,
with the library's defaults except ``journalFile`` (its journal is a
memory-mapped file; PySyncObj never msyncs or fsyncs it per command, so a
machine crash can lose acknowledged commands: the benchmark says so next to
the figures).

It is driven over stdin/stdout, one JSON object per line:

* ``{"cmd": "status"}`` -> ``{"leader": bool, "ready": bool, "commit": int}``
* ``{"cmd": "load", "clients": C, "ops": N}`` -> C threads in this process
  call ``add(1, sync=True)`` (each call returns once the command is
  committed by a majority and applied here) until N calls are done; the
  answer is ``{"ops", "seconds", "latencies"}`` (per-call seconds) or
  ``{"error": ...}``.
* ``{"cmd": "quit"}`` -> the node is destroyed and the process exits.

Commands are called on the leader's own process, so PySyncObj pays no
client network hop (trio-replica's clients talk TCP to the primary).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

__all__ = ["main"]


def _node(self_address: str, partners: list[str], journal: str) -> Any:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(self_address, partners, SyncObjConf(journalFile=journal))
            self.total = 0

        @replicated  # type: ignore[untyped-decorator]
        def add(self, amount: int) -> int:
            self.total += amount
            return self.total

    return Counter()


def _load(node: Any, clients: int, ops: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = 0
    start = threading.Barrier(clients + 1)

    def client() -> None:
        nonlocal issued
        start.wait()
        while True:
            with lock:
                if issued >= ops or errors:
                    return
                issued += 1
            begun = time.perf_counter()
            try:
                node.add(1, sync=True, timeout=30)
            except Exception as error:  # a timeout or "not leader": reported, not hidden
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                return
            done = time.perf_counter() - begun
            with lock:
                latencies.append(done)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        return {"error": errors[0], "failed": len(errors)}
    return {"ops": len(latencies), "seconds": seconds, "latencies": latencies}


def main(argv: list[str] | None = None) -> int:
    """Run one node until ``quit`` (or stdin closes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--partners", required=True)
    parser.add_argument("--journal", required=True)
    args = parser.parse_args(argv)
    node = _node(args.self_address, args.partners.split(","), args.journal)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            answer: dict[str, Any]
            if request["cmd"] == "status":
                status = node.getStatus()
                answer = {
                    "leader": bool(node._isLeader()),
                    "ready": bool(node.isReady()),
                    "commit": int(status["commit_idx"]),
                }
            elif request["cmd"] == "load":
                answer = _load(node, int(request["clients"]), int(request["ops"]))
            else:
                break
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        node.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
