"""The prepare header: an op's identity across the replicas of a cluster.

Every replica journals the same header bytes for the same op, so two
replicas hold the same op exactly when their headers have the same
``checksum``. The checksum covers every other header field and, through
``checksum_body``, the body: one compare proves the whole prepare.

Byte layout (96 bytes, little-endian; ``docs/format.md``, "Prepare header")::

    0  16 checksum       checksum over header bytes [16, 96)
    16 16 checksum_body  checksum over the body
    32 16 parent         checksum of the header of op - 1 (the hash chain)
    48 16 client         u128: the client id (0 for ops no client asked for)
    64  8 op             u64
    72  8 request        u64: the client's request number (0 for register)
    80  4 view           u32: the view in which the op was first prepared
    84  4 epoch          u32: cluster configuration epoch, 0 (reserved)
    88  4 body_len       u32
    92  1 operation      u8: Operation
    93  3 reserved       zero

The checksum function is the journal's (:func:`trio_replica.journal.record.checksum`),
so that the journal's record checksum and the prepare checksum can be the
same value once the journal stores prepare headers.
"""

from __future__ import annotations

import enum
import struct

import attrs
import cbor2

from ..journal.record import CHECKSUM_SIZE
from ..journal.record import checksum as journal_checksum

__all__ = [
    "decode_version",
    "HEADER_SIZE",
    "ROOT",
    "Operation",
    "PrepareHeader",
    "checksum",
    "decode_header",
    "encode_header",
    "make_header",
]

HEADER_SIZE = 96
_LAYOUT = struct.Struct("<16s16s16s16sQQIIIB3s")
assert _LAYOUT.size == HEADER_SIZE
_U128 = 2**128
_U64 = 2**64
_U32 = 2**32


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """The cluster's checksum: the journal's checksum function (16 bytes)."""
    return journal_checksum(data)


class Operation(enum.IntEnum):
    """What an op does. Stored as one byte in the header."""

    ROOT = 0
    """The chain's root (op 0): never journaled, never applied."""
    REGISTER = 1
    """A client registers; the op number becomes its session number."""
    REQUEST = 2
    """A client's command for the user's state machine (the body is its CBOR)."""
    SWITCH_VERSION = 3
    """A client switches the replicated state machine to a version (the body is
    the version's CBOR integer, :func:`decode_version`): every replica
    switches at this op."""


def decode_version(body: bytes) -> int | None:
    """The version a ``SWITCH_VERSION`` body names, or None when it is not a
    CBOR non-negative integer."""
    try:
        version = cbor2.loads(body)
    except Exception:  # cbor2 raises several types for malformed input
        return None
    return version if type(version) is int and version >= 0 else None


@attrs.frozen
class PrepareHeader:
    """The header of one prepared op. Build with :func:`make_header`.

    ``checksum`` identifies the prepare (header fields and body), ``parent``
    is the checksum of op - 1, so a header fixes its whole prefix.
    """

    checksum: bytes
    checksum_body: bytes
    parent: bytes
    client: int
    op: int
    request: int
    view: int
    epoch: int
    body_len: int
    operation: Operation

    def valid_body(self, body: bytes) -> bool:
        """Whether ``body`` is this header's body (length and checksum)."""
        return len(body) == self.body_len and checksum(body) == self.checksum_body

    def valid(self) -> bool:
        """Whether ``checksum`` matches the other fields (header integrity)."""
        return checksum(_pack(self)[CHECKSUM_SIZE:]) == self.checksum


def _pack(h: PrepareHeader) -> bytes:
    return _LAYOUT.pack(
        h.checksum,
        h.checksum_body,
        h.parent,
        h.client.to_bytes(16, "little"),
        h.op,
        h.request,
        h.view,
        h.epoch,
        h.body_len,
        int(h.operation),
        b"\0\0\0",
    )


def make_header(
    *,
    parent: bytes,
    op: int,
    view: int,
    client: int,
    request: int,
    operation: Operation,
    body: bytes,
    epoch: int = 0,
) -> PrepareHeader:
    """A header for ``body`` at ``op``, its checksum computed.

    Raises ``ValueError`` when a field does not fit its width.
    """
    if not (0 <= client < _U128 and 0 <= op < _U64 and 0 <= request < _U64):
        raise ValueError("client, op or request out of range")
    if not (0 <= view < _U32 and 0 <= epoch < _U32 and len(body) < _U32):
        raise ValueError("view, epoch or body length out of range")
    if len(parent) != CHECKSUM_SIZE:
        raise ValueError("parent must be a 16-byte checksum")
    draft = PrepareHeader(
        checksum=bytes(CHECKSUM_SIZE),
        checksum_body=checksum(body),
        parent=parent,
        client=client,
        op=op,
        request=request,
        view=view,
        epoch=epoch,
        body_len=len(body),
        operation=operation,
    )
    return attrs.evolve(draft, checksum=checksum(_pack(draft)[CHECKSUM_SIZE:]))


def encode_header(header: PrepareHeader) -> bytes:
    """The 96 bytes of ``header``."""
    return _pack(header)


def decode_header(data: bytes) -> PrepareHeader | None:
    """The header in ``data`` (exactly 96 bytes), or None if it does not verify."""
    if len(data) != HEADER_SIZE:
        return None
    (cs, csb, parent, client, op, request, view, epoch, body_len, operation, reserved) = (
        _LAYOUT.unpack(data)
    )
    if reserved != b"\0\0\0" or operation not in Operation._value2member_map_:
        return None
    if checksum(data[CHECKSUM_SIZE:]) != cs:
        return None
    return PrepareHeader(
        checksum=cs,
        checksum_body=csb,
        parent=parent,
        client=int.from_bytes(client, "little"),
        op=op,
        request=request,
        view=view,
        epoch=epoch,
        body_len=body_len,
        operation=Operation(operation),
    )


ROOT = make_header(
    parent=checksum(b"trio-replica cluster root"),
    op=0,
    view=0,
    client=0,
    request=0,
    operation=Operation.ROOT,
    body=b"",
)
"""The header of op 0: every cluster's chain starts here (op 1's parent is ``ROOT.checksum``)."""
