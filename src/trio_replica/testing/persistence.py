"""The persistence model of :class:`~trio_replica.testing.SimulatedDisk`.

This module owns the answer to one question: given what was written since
the last fsync, which on-disk states may a power loss leave? It follows the
ALICE abstract persistence model (Pillai et al., OSDI 2014):

* Every file has DURABLE content (what survives for sure) and a list of
  PENDING data operations (writes, truncates) issued since its last fsync.
  At a crash each pending operation, replayed in issue order on top of the
  durable content, has one of the outcomes of :func:`write_outcomes` (a
  write) or is applied or not (a truncate). Outcomes of different operations
  are independent, so a later write may land while an earlier one is lost,
  as disks persist sectors out of order.
* Every directory has DURABLE entries and a list of PENDING entry operations
  (create, rename, unlink, mkdir) since its last fsync. At a crash a prefix
  of them survives (journaling file systems commit directory operations in
  order), or, when the disk is built with ``reorder_directory_ops=True``, any
  subset, each operation atomic.
* Files and directories are independent of each other: a file's data can be
  durable while its directory entry is not, and the other way round.

A crash state is chosen by one outcome index per *choice* (one choice per
pending file operation, one per directory with pending operations); the
space of all crash states is the product of the choices' counts, and index
0 of every choice means "nothing pending survived".
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

import attrs

__all__ = [
    "CrashSpace",
    "DirNode",
    "EntryOp",
    "FileNode",
    "Node",
    "PendingTruncate",
    "PendingWrite",
    "WriteOutcome",
    "apply_data_ops",
    "write_outcomes",
]


@attrs.frozen
class PendingWrite:
    """A write of ``data`` at ``offset`` not yet covered by an fsync.

    ``extends`` records whether the write grew the file when it was issued
    (an append), which is what allows the "size grew, data not yet landed"
    outcome. ``lost`` marks a lost write (the drive acknowledged it and
    never stored it): whatever happens to it, at a crash or at an fsync, its
    data never reaches the medium; only the size change of an append does
    (the file system's metadata is written apart from the data), so the new
    part reads as zeros.
    """

    offset: int
    data: bytes
    extends: bool
    lost: bool = False


@attrs.frozen
class PendingTruncate:
    """A truncate to ``size`` not yet covered by an fsync."""

    size: int


DataOp = PendingWrite | PendingTruncate


@attrs.frozen
class WriteOutcome:
    """What of one pending write reached the media at a crash.

    ``kind`` is one of:

    * ``"lost"``: nothing of it landed (the size did not grow either);
    * ``"kept"``: all of it landed;
    * ``"zeros"``: the size grew to cover it but the data never landed, so
      the new part reads as zeros (only for writes that extended the file);
    * ``"prefix"``: the sectors before ``boundary`` landed; the rest is
      ``fill``: ``"cut"`` (not landed: old bytes, and the size grows only to
      ``boundary``), ``"zeros"`` or ``"garbage"`` (the torn sectors hold
      zeros or random bytes, and the size covers the whole write);
    * ``"suffix"``: the sectors from ``boundary`` on landed, the ones before
      it did not: ``fill`` ``"old"`` (old bytes, or zeros past the old end of
      file) or ``"garbage"`` (torn sectors holding random bytes).
    """

    kind: str
    boundary: int = 0
    fill: str = ""


_LOST = WriteOutcome("lost")
_KEPT = WriteOutcome("kept")
_ZEROS = WriteOutcome("zeros")


def write_outcomes(write: PendingWrite, sector_size: int) -> list[WriteOutcome]:
    """All outcomes of ``write`` at a crash, "lost" first and "kept" second.

    Tears happen only at absolute file offsets that are multiples of
    ``sector_size`` strictly inside the write: a sector is the unit a disk
    writes atomically. A lost write has only "lost" and "kept" (which for it
    means: the size change landed, the data did not).
    """
    outcomes = [_LOST, _KEPT]
    if write.lost:
        return outcomes
    if write.extends:
        outcomes.append(_ZEROS)
    start = write.offset
    end = write.offset + len(write.data)
    first = (start // sector_size + 1) * sector_size
    for boundary in range(first, end, sector_size):
        outcomes.append(WriteOutcome("prefix", boundary, "cut"))
        outcomes.append(WriteOutcome("prefix", boundary, "zeros"))
        outcomes.append(WriteOutcome("prefix", boundary, "garbage"))
        outcomes.append(WriteOutcome("suffix", boundary, "old"))
        outcomes.append(WriteOutcome("suffix", boundary, "garbage"))
    return outcomes


def _put(content: bytearray, offset: int, data: bytes | bytearray) -> None:
    if offset > len(content):
        content.extend(bytes(offset - len(content)))
    content[offset : offset + len(data)] = data


def _grow(content: bytearray, size: int) -> None:
    if size > len(content):
        content.extend(bytes(size - len(content)))


def apply_write(
    content: bytearray, write: PendingWrite, outcome: WriteOutcome, garbage: random.Random
) -> None:
    """Apply ``outcome`` of ``write`` to ``content`` in place."""
    start = write.offset
    end = start + len(write.data)
    if outcome.kind == "lost":
        return
    if write.lost:
        # Every outcome but "lost" means the file system committed the size
        # change; the data itself never landed.
        if write.extends:
            _grow(content, end)
        return
    if outcome.kind == "kept":
        _put(content, start, write.data)
    elif outcome.kind == "zeros":
        _grow(content, end)
    elif outcome.kind == "prefix":
        cut = outcome.boundary - start
        _put(content, start, write.data[:cut])
        if outcome.fill == "zeros":
            _put(content, outcome.boundary, bytes(end - outcome.boundary))
        elif outcome.fill == "garbage":
            _put(content, outcome.boundary, garbage.randbytes(end - outcome.boundary))
    elif outcome.kind == "suffix":
        _grow(content, start)
        if outcome.fill == "garbage":
            _put(content, start, garbage.randbytes(outcome.boundary - start))
        _put(content, outcome.boundary, write.data[outcome.boundary - start :])
    else:  # pragma: no cover - the outcome kinds are closed
        raise ValueError(f"unknown write outcome {outcome.kind!r}")


def apply_data_ops(durable: bytes, ops: Sequence[DataOp]) -> bytes:
    """The content after every op in ``ops`` landed whole (what an fsync makes durable)."""
    content = bytearray(durable)
    for op in ops:
        if isinstance(op, PendingWrite) and op.lost:
            # Acknowledged by the drive, never stored: only an append's size
            # change reaches the medium (see PendingWrite).
            if op.extends:
                _grow(content, op.offset + len(op.data))
        elif isinstance(op, PendingWrite):
            _put(content, op.offset, op.data)
        else:
            _truncate(content, op.size)
    return bytes(content)


def _truncate(content: bytearray, size: int) -> None:
    if size < len(content):
        del content[size:]
    else:
        _grow(content, size)


class FileNode:
    """A file (an inode): durable content, current content, pending ops.

    ``data`` is what reads return now (the page cache). ``durable`` is what
    survives any crash. ``pending`` are the data operations since the last
    successful fsync; ``durable`` plus all of ``pending`` equals ``data``,
    except after a failed fsync, which drops the pending operations without
    making them durable while the page cache keeps showing them (what Linux
    does, and why a failed fsync must never be retried).
    ``bad_sectors`` are latent sector errors: reading them fails until they
    are rewritten.
    """

    __slots__ = ("bad_sectors", "data", "durable", "last_write", "pending")

    def __init__(self, content: bytes = b"", bad_sectors: set[int] | None = None) -> None:
        self.durable = content
        self.data = bytearray(content)
        self.pending: list[DataOp] = []
        self.bad_sectors: set[int] = set(bad_sectors or ())
        self.last_write: int | None = None
        """Where the last write to this file went (a misdirected write lands there)."""


@attrs.frozen
class EntryOp:
    """A directory operation not yet covered by a directory fsync.

    ``kind`` is ``"link"`` (create or mkdir: ``name`` now points to
    ``node``), ``"unlink"`` (``name`` removed) or ``"rename"`` (``src``
    removed and ``name`` points to ``node``, atomically).
    """

    kind: str
    name: str
    node: Node | None = attrs.field(default=None, eq=False)
    src: str | None = None


class DirNode:
    """A directory: durable entries, current entries, pending entry ops."""

    __slots__ = ("durable", "entries", "locks", "pending")

    def __init__(self, entries: dict[str, Node] | None = None) -> None:
        self.entries: dict[str, Node] = dict(entries or {})
        self.durable: dict[str, Node] = dict(self.entries)
        self.pending: list[EntryOp] = []
        self.locks: set[str] = set()


Node = FileNode | DirNode


def apply_entry_ops(durable: dict[str, Node], ops: Sequence[EntryOp]) -> dict[str, Node]:
    """The entries after ``ops`` (a prefix or subset of the pending ones) landed."""
    entries = dict(durable)
    for op in ops:
        if op.kind == "unlink":
            entries.pop(op.name, None)
            continue
        if op.kind == "rename" and op.src is not None:
            entries.pop(op.src, None)
        assert op.node is not None
        entries[op.name] = op.node
    return entries


@attrs.frozen
class _Choice:
    """One independent decision of a crash: its number of outcomes and target."""

    count: int
    node: Node = attrs.field(eq=False)
    # For a file choice: which pending op, and its outcomes.
    op_index: int = 0
    outcomes: tuple[WriteOutcome, ...] = ()


def _walk(root: DirNode) -> Iterator[tuple[str, Node]]:
    """Every node reachable through current, durable or pending entries, in a
    deterministic order (depth first, names sorted), each once."""
    seen: set[int] = set()
    stack: list[tuple[str, Node]] = [("", root)]
    while stack:
        path, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield path, node
        if isinstance(node, DirNode):
            children: dict[str, Node] = {}
            for name, child in node.durable.items():
                children.setdefault(name, child)
            for name, child in node.entries.items():
                children.setdefault(name, child)
            for i, op in enumerate(node.pending):
                if op.node is not None:
                    children.setdefault(f"{op.name}\x00{i}", op.node)
            for name in sorted(children, reverse=True):
                stack.append((f"{path}/{name.split(chr(0))[0]}", children[name]))


class CrashSpace:
    """The space of crash states of one disk tree, indexed by integers.

    Index 0 is the durable state (nothing pending survived);
    :attr:`all_kept` is the state where every pending operation landed
    whole. :meth:`build` realizes any index as a fresh tree.
    """

    def __init__(
        self, root: DirNode, *, sector_size: int, reorder_directory_ops: bool, garbage_seed: str
    ) -> None:
        self._root = root
        self._reorder = reorder_directory_ops
        self._garbage_seed = garbage_seed
        choices: list[_Choice] = []
        # Walk order is deterministic, so ordinals name nodes stably across runs.
        self._ordinal: dict[int, int] = {}
        for _path, node in _walk(root):
            self._ordinal[id(node)] = len(self._ordinal)
            if isinstance(node, DirNode):
                n = len(node.pending)
                if n:
                    count = 2**n if reorder_directory_ops else n + 1
                    choices.append(_Choice(count, node))
            else:
                for i, op in enumerate(node.pending):
                    if isinstance(op, PendingWrite):
                        outs = tuple(write_outcomes(op, sector_size))
                        choices.append(_Choice(len(outs), node, i, outs))
                    else:
                        choices.append(_Choice(2, node, i))
        self._choices = choices
        total = 1
        all_kept = 0
        for choice in choices:
            all_kept += total
            total *= choice.count
        self.total: int = total
        self.all_kept: int = all_kept if choices else 0

    @property
    def choice_counts(self) -> list[int]:
        """The number of outcomes of each independent choice."""
        return [c.count for c in self._choices]

    def _digits(self, index: int) -> list[int]:
        if not 0 <= index < self.total:
            raise IndexError(f"crash state {index} out of range 0..{self.total - 1}")
        digits = []
        for choice in self._choices:
            index, digit = divmod(index, choice.count)
            digits.append(digit)
        return digits

    def build(self, index: int) -> DirNode:
        """A fresh tree holding crash state ``index`` (everything durable)."""
        digits = self._digits(index)
        file_outcomes: dict[int, dict[int, tuple[int, WriteOutcome | None]]] = {}
        dir_outcome: dict[int, int] = {}
        for choice, digit in zip(self._choices, digits, strict=True):
            if isinstance(choice.node, DirNode):
                dir_outcome[id(choice.node)] = digit
            else:
                outcome = choice.outcomes[digit] if choice.outcomes else None
                file_outcomes.setdefault(id(choice.node), {})[choice.op_index] = (digit, outcome)
        built: dict[int, Node] = {}

        def build_file(node: FileNode) -> FileNode:
            chosen = file_outcomes.get(id(node), {})
            ordinal = self._ordinal.get(id(node), -1)
            content = bytearray(node.durable)
            for i, op in enumerate(node.pending):
                digit, outcome = chosen.get(i, (0, None))
                if isinstance(op, PendingTruncate):
                    if digit:
                        _truncate(content, op.size)
                    continue
                # Garbage depends only on this write and its outcome, so two
                # indices that differ elsewhere yield the same bytes here.
                garbage = random.Random(f"{self._garbage_seed}/{ordinal}/{i}/{digit}")
                apply_write(content, op, outcome or _LOST, garbage)
            return FileNode(bytes(content), node.bad_sectors)

        def build_dir(node: DirNode) -> DirNode:
            digit = dir_outcome.get(id(node), 0)
            ops = self._chosen_entry_ops(node.pending, digit)
            entries = apply_entry_ops(node.durable, ops)
            new = DirNode()
            built[id(node)] = new
            for name in sorted(entries):
                child = entries[name]
                if id(child) not in built:
                    built[id(child)] = (
                        build_dir(child) if isinstance(child, DirNode) else build_file(child)
                    )
                new.entries[name] = built[id(child)]
            new.durable = dict(new.entries)
            return new

        return build_dir(self._root)

    def _chosen_entry_ops(self, pending: list[EntryOp], digit: int) -> list[EntryOp]:
        n = len(pending)
        if not n or digit == 0:
            return []
        full = 2**n - 1 if self._reorder else n
        # Outcome 1 is "everything landed", so that index all_kept is it.
        value = full if digit == 1 else digit - 1
        if self._reorder:
            return [op for bit, op in enumerate(pending) if value >> bit & 1]
        return pending[:value]

    def sample(self, count: int, rng: random.Random) -> list[int]:
        """Up to ``count`` distinct indices: all of them when the space is that
        small, else the durable state, the all-kept state and a seeded sample."""
        if self.total <= count:
            return list(range(self.total))
        chosen = [0, self.all_kept][:count]
        seen = set(chosen)
        while len(chosen) < count:
            index = rng.randrange(self.total)
            if index not in seen:
                seen.add(index)
                chosen.append(index)
        return chosen


def tree_digest(root: DirNode) -> str:
    """A digest of a tree's current names and contents (what reads return)."""
    h = hashlib.sha256()

    def visit(path: str, node: Node) -> None:
        if isinstance(node, FileNode):
            h.update(f"F {path} {len(node.data)}\n".encode())
            h.update(node.data)
            return
        h.update(f"D {path}\n".encode())
        for name in sorted(node.entries):
            visit(f"{path}/{name}", node.entries[name])

    visit("", root)
    return h.hexdigest()
