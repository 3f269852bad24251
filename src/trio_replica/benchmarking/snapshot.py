"""Snapshot persist and load times next to the limit: a plain write + fsync.

For each state size the same run measures, on real files:

* ``persist``: :meth:`SnapshotStore.persist` (encode, write temp, fsync,
  rename, directory fsync), and, as its peer, ``write+fsync``: writing the
  same file bytes to a new file with one write and one fsync (the limit any
  durable snapshot pays);
* ``load``: a new store's open + :meth:`SnapshotStore.load_latest` (verify the
  checksum, decode), and, as its peer, ``read``: reading the same bytes back;
* ``encode`` and ``decode``: CBOR alone, to show where the rest goes.

Each figure is the best of ``repeat`` runs. The state is a dict of 64 KiB
random byte strings, so the CBOR body is about the state's size.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from ..coordinator import Snapshot, SnapshotStore
from ..coordinator.snapshot_format import decode_body, encode_header, encode_state
from ..layout import SNAPSHOT_DIR
from ..storage import full_sync

__all__ = [
    "DEFAULT_SIZES",
    "MIB",
    "SnapshotBenchResult",
    "format_table",
    "make_state",
    "run",
]

MIB = 2**20
DEFAULT_SIZES = (1 * MIB, 10 * MIB, 100 * MIB)
VALUE_SIZE = 64 * 1024


@attrs.frozen
class SnapshotBenchResult:
    """Best-of-``repeat`` seconds for one state size."""

    state_bytes: int
    file_bytes: int
    encode_seconds: float
    persist_seconds: float
    raw_write_seconds: float
    decode_seconds: float
    load_seconds: float
    raw_read_seconds: float

    @property
    def persist_ratio(self) -> float:
        """Persist speed as a fraction of a plain write+fsync of the same bytes
        (plain time / persist time: higher is better, 1.0 = as fast)."""
        return self.raw_write_seconds / self.persist_seconds

    @property
    def load_ratio(self) -> float:
        """Load speed as a fraction of a plain read of the same bytes
        (plain time / load time: higher is better, 1.0 = as fast)."""
        return self.raw_read_seconds / self.load_seconds


def make_state(size: int, *, seed: int = 0) -> dict[str, bytes]:
    """A state of about ``size`` bytes: a dict of 64 KiB random byte strings."""
    rng = random.Random(seed)
    state: dict[str, bytes] = {}
    remaining = size
    index = 0
    while remaining > 0:
        chunk = min(VALUE_SIZE, remaining)
        state[f"key-{index:08d}"] = rng.randbytes(chunk)
        remaining -= chunk
        index += 1
    return state


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def _persist(data: str, state: Any) -> float:
    store = SnapshotStore(data)
    await store.open()  # creating the directory is not part of a persist
    start = time.perf_counter()
    await store.persist(Snapshot(1, state))
    return time.perf_counter() - start


async def _load(data: str) -> float:
    start = time.perf_counter()
    snapshot = await SnapshotStore(data).load_latest()
    seconds = time.perf_counter() - start
    assert snapshot is not None and snapshot.op == 1
    return seconds


def _raw_write(path: str, header: bytes, body: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for part in (header, body):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view) :]
        full_sync(fd)
    finally:
        os.close(fd)


def _raw_read(path: str) -> None:
    with open(path, "rb") as f:
        f.read()


def _measure(root: str, size: int, repeat: int) -> SnapshotBenchResult:
    state = make_state(size)
    encode = min(_timed(partial(encode_state, state, op=1)) for _ in range(repeat))
    body = encode_state(state, op=1)
    header = encode_header(op=1, machine_name="", machine_version=0, body=body)
    decode = min(_timed(partial(decode_body, body)) for _ in range(repeat))
    persist: list[float] = []
    load: list[float] = []
    raw_write: list[float] = []
    raw_read: list[float] = []
    for attempt in range(repeat):
        # Peers alternate within one run, so both see the same disk state.
        raw = os.path.join(root, f"raw-{size}-{attempt}")
        raw_write.append(_timed(partial(_raw_write, raw, header, body)))
        raw_read.append(_timed(partial(_raw_read, raw)))
        os.unlink(raw)
        data = os.path.join(root, f"data-{size}-{attempt}")
        persist.append(trio.run(_persist, data, state))
        load.append(trio.run(_load, data))
        snapshots = os.path.join(data, SNAPSHOT_DIR)
        for name in os.listdir(snapshots):
            os.unlink(os.path.join(snapshots, name))
    return SnapshotBenchResult(
        state_bytes=size,
        file_bytes=len(header) + len(body),
        encode_seconds=encode,
        persist_seconds=min(persist),
        raw_write_seconds=min(raw_write),
        decode_seconds=decode,
        load_seconds=min(load),
        raw_read_seconds=min(raw_read),
    )


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    directory: str | os.PathLike[str] | None = None,
    repeat: int = 1,
) -> list[SnapshotBenchResult]:
    """Measure each state size in ``sizes`` (bytes); best of ``repeat`` runs.

    Files go to a temporary directory inside ``directory`` (default: the
    system's temporary directory; pass one on the disk you care about, since
    a RAM-backed ``/tmp`` makes fsync free), removed afterwards. Blocking:
    call it outside Trio (it runs its own ``trio.run`` for the store).
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    with tempfile.TemporaryDirectory(dir=directory, prefix="trio-replica-bench-") as root:
        return [_measure(root, size, repeat) for size in sizes]


def _size(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / 1024:.0f} KiB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_table(results: Sequence[SnapshotBenchResult]) -> str:
    """The results as a plain-text table, one row per state size."""
    headers = [
        "state",
        "encode",
        "persist",
        "write+fsync",
        "persist vs raw",
        "decode",
        "load",
        "read",
        "load vs raw",
    ]
    rows = [
        [
            _size(r.state_bytes),
            _ms(r.encode_seconds),
            _ms(r.persist_seconds),
            _ms(r.raw_write_seconds),
            f"{r.persist_ratio:.2f}x",
            _ms(r.decode_seconds),
            _ms(r.load_seconds),
            _ms(r.raw_read_seconds),
            f"{r.load_ratio:.2f}x",
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
