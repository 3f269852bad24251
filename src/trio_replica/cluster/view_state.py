"""The durable view state of a cluster replica, and its bytes.

What a replica must never forget across a restart (invariant 14: view,
log_view and commit never go back): the newest ``view`` it took part in,
``log_view`` (the newest view in which its log was normal), ``commit_max``
(an op it knows committed), its ``checkpoint_op`` with the prepare
checksum of that op (``checkpoint_checksum``: the snapshot it restarts from
must hold exactly that prepare) and the ``headers`` of
the log suffix it advertised in its last do_view_change or installed from
a start_view. It is written at view changes and checkpoints, never per
prepare or commit, and before any message that advertises ``view`` leaves.

Byte layout (``docs/format.md``, "View state"), little-endian::

    0   8 magic          b"TRVIEWST"
    8   2 version        u16 = 2
    10  2 flags          u16: bit 0 = rejoining
    12  4 header_count   u32
    16  4 view           u32
    20  4 log_view       u32
    24  8 commit_max     u64
    32  8 checkpoint_op  u64
    40 16 checkpoint_checksum  prepare checksum of checkpoint_op (zeros: none)
    56  96 * header_count  prepare headers, ascending op
    end 16 checksum      over every byte before it

The file that holds it (a superblock-like file of the data directory) is
the journal's business; this module only turns the value into bytes and
back, refusing anything that does not verify.
"""

from __future__ import annotations

import struct

import attrs

from ..errors import CorruptionError
from .header import HEADER_SIZE, PrepareHeader, checksum, decode_header, encode_header

__all__ = [
    "NO_CHECKPOINT",
    "VIEW_STATE_MAGIC",
    "ViewState",
    "decode_view_state",
    "encode_view_state",
]

VIEW_STATE_MAGIC = b"TRVIEWST"
_VERSION = 2
_FIXED = struct.Struct("<8sHHIIIQQ16s")
assert _FIXED.size == 56
NO_CHECKPOINT = bytes(16)
"""``checkpoint_checksum`` of a replica that has no checkpoint yet (op 0)."""


@attrs.frozen
class ViewState:
    """The durable view state (see the module docstring).

    Ordering: a new view state is never behind the old one in ``view``,
    ``log_view`` or ``commit_max`` (:meth:`advances`); ``log_view <= view``.
    """

    view: int = 0
    log_view: int = 0
    commit_max: int = 0
    checkpoint_op: int = 0
    headers: tuple[PrepareHeader, ...] = ()
    checkpoint_checksum: bytes = NO_CHECKPOINT
    rejoining: bool = False
    """The replica lost its data (formatted with ``format --recover``, or
    restored from an old backup) and has not caught up with its cluster:
    until it has, it neither votes in view changes nor nacks."""

    def advances(self, older: ViewState) -> bool:
        """Whether replacing ``older`` with this state keeps every field monotonic."""
        return (
            self.view >= older.view
            and self.log_view >= older.log_view
            and self.commit_max >= older.commit_max
            and self.checkpoint_op >= older.checkpoint_op
        )


def encode_view_state(state: ViewState) -> bytes:
    """The bytes of ``state`` (56 + 96 per header + 16)."""
    if state.log_view > state.view:
        raise ValueError("log_view above view")
    fixed = _FIXED.pack(
        VIEW_STATE_MAGIC,
        _VERSION,
        int(state.rejoining),
        len(state.headers),
        state.view,
        state.log_view,
        state.commit_max,
        state.checkpoint_op,
        state.checkpoint_checksum,
    )
    body = fixed + b"".join(encode_header(h) for h in state.headers)
    return body + checksum(body)


def decode_view_state(data: bytes, *, path: str | None = None) -> ViewState:
    """Decode and verify view state bytes.

    Raises :class:`~trio_replica.errors.CorruptionError` (naming ``path``)
    when anything fails: an unreadable view state must refuse to open, it
    is never taken as "fresh".
    """
    if len(data) < _FIXED.size + 16:
        raise CorruptionError("view state too short", path=path, offset=0)
    magic, version, flags, count, view, log_view, commit_max, checkpoint_op, ckpt_sum = (
        _FIXED.unpack_from(data)
    )
    if magic != VIEW_STATE_MAGIC:
        raise CorruptionError("not a view state (bad magic)", path=path, offset=0)
    end = _FIXED.size + count * HEADER_SIZE
    if len(data) != end + 16 or checksum(data[:end]) != data[end:]:
        raise CorruptionError("view state checksum mismatch", path=path, offset=0)
    if version != _VERSION or flags & ~1 or log_view > view:
        raise CorruptionError(f"view state version {version} not understood", path=path)
    headers = []
    for i in range(count):
        at = _FIXED.size + i * HEADER_SIZE
        header = decode_header(data[at : at + HEADER_SIZE])
        if header is None:
            raise CorruptionError("view state header does not verify", path=path, offset=at)
        headers.append(header)
    return ViewState(
        view, log_view, commit_max, checkpoint_op, tuple(headers), ckpt_sum, bool(flags & 1)
    )
