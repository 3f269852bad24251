"""Messages as bytes, for the TCP transport: one CBOR array per message.

A message is encoded as ``[kind, field, field, ...]``: ``kind`` is the
message class's index in :data:`MESSAGE_KINDS` and the fields follow the
class's attrs field order. A prepare header travels as its 96 verified
bytes (:func:`~.header.encode_header`), an :class:`~.header.Operation` as its
integer, an :class:`~.messages.EntryState` as its string value, a
:class:`~.messages.SuffixEntry` as ``[header, state]``.

Decoding takes bytes from the network, so it trusts nothing: every field is
checked against its declared type (integers non-negative and below 2**128,
headers verified by their checksum) and anything else raises
:class:`MessageDecodeError`. Only ``Reply.result`` is free-form (whatever
the state machine returned, as CBOR decodes it).
"""

from __future__ import annotations

from typing import Any

import attrs
import cbor2

from .errors import ClusterError
from .header import Operation, PrepareHeader, decode_header, encode_header
from .messages import (
    CheckpointChunk,
    CheckpointDigest,
    Commit,
    DoViewChange,
    EntryState,
    Eviction,
    Headers,
    Prepare,
    PrepareOk,
    Redirect,
    RepairPrepare,
    Reply,
    Request,
    RequestCheckpoint,
    RequestHeaders,
    RequestPrepare,
    RequestStartView,
    Retained,
    StartView,
    StartViewChange,
    SuffixEntry,
)

__all__ = ["MESSAGE_KINDS", "MessageDecodeError", "decode_message", "encode_message"]

MESSAGE_KINDS: tuple[type, ...] = (
    Request,
    Reply,
    Eviction,
    Redirect,
    Prepare,
    PrepareOk,
    Commit,
    StartViewChange,
    DoViewChange,
    StartView,
    RequestStartView,
    RequestHeaders,
    Headers,
    RequestPrepare,
    RepairPrepare,
    Retained,
    CheckpointDigest,
    RequestCheckpoint,
    CheckpointChunk,
)
"""Every message class, by wire index (append only: an index never changes meaning)."""

_INDEX = {kind: i for i, kind in enumerate(MESSAGE_KINDS)}
_FIELDS = {kind: tuple(attrs.fields(kind)) for kind in MESSAGE_KINDS}
_U128 = 1 << 128


class MessageDecodeError(ClusterError):
    """Bytes from the network that are not a well-formed message (``reason`` says why)."""

    def __init__(self, reason: str):
        super().__init__(f"undecodable message: {reason}")
        self.reason = reason


def _encode_value(kind: str, value: Any) -> Any:
    if kind == "PrepareHeader":
        return encode_header(value)
    if kind == "Operation":
        return int(value.value)
    if kind == "tuple[PrepareHeader, ...]":
        return [encode_header(h) for h in value]
    if kind == "tuple[SuffixEntry, ...]":
        return [[encode_header(e.header), e.state.value] for e in value]
    return value


def encode_message(message: Any) -> bytes:
    """The CBOR bytes of ``message`` (one of :data:`MESSAGE_KINDS`).

    Raises ``KeyError`` for another type and ``cbor2.CBOREncodeError`` for a
    ``Reply.result`` CBOR cannot encode.
    """
    kind = type(message)
    fields = _FIELDS[kind]
    out: list[Any] = [_INDEX[kind]]
    out.extend(_encode_value(str(f.type), getattr(message, f.name)) for f in fields)
    return cbor2.dumps(out)


def _header(value: Any) -> PrepareHeader:
    if not isinstance(value, bytes):
        raise MessageDecodeError("a prepare header is not bytes")
    header = decode_header(value)
    if header is None:
        raise MessageDecodeError("a prepare header does not verify")
    return header


def _decode_value(kind: str, value: Any) -> Any:
    if kind == "int":
        if type(value) is not int or not 0 <= value < _U128:
            raise MessageDecodeError(f"{value!r} is not an unsigned integer")
        return value
    if kind == "bytes":
        if not isinstance(value, bytes):
            raise MessageDecodeError("a bytes field is not bytes")
        return value
    if kind == "str | None":
        if value is not None and not isinstance(value, str):
            raise MessageDecodeError("a text field is not text")
        return value
    if kind == "Any":
        return value
    if kind == "PrepareHeader":
        return _header(value)
    if kind == "Operation":
        if type(value) is not int or value not in Operation._value2member_map_:
            raise MessageDecodeError(f"{value!r} is not an operation")
        return Operation(value)
    if kind == "tuple[PrepareHeader, ...]":
        if not isinstance(value, list):
            raise MessageDecodeError("headers are not an array")
        return tuple(_header(h) for h in value)
    if kind == "tuple[SuffixEntry, ...]":
        if not isinstance(value, list):
            raise MessageDecodeError("a suffix is not an array")
        entries = []
        for item in value:
            if not isinstance(item, list) or len(item) != 2:
                raise MessageDecodeError("a suffix entry is not [header, state]")
            if item[1] not in EntryState._value2member_map_:
                raise MessageDecodeError(f"{item[1]!r} is not an entry state")
            entries.append(SuffixEntry(_header(item[0]), EntryState(item[1])))
        return tuple(entries)
    raise AssertionError(f"no wire form for a field of type {kind}")  # a new message field


def decode_message(data: bytes) -> Any:
    """The message encoded in ``data`` (see the module docstring).

    Raises :class:`MessageDecodeError` for anything that is not exactly a
    well-typed message.
    """
    try:
        items = cbor2.loads(data)
    except Exception as error:  # cbor2 raises several types for malformed input
        raise MessageDecodeError(f"not CBOR ({error})") from None
    if not isinstance(items, list) or not items:
        raise MessageDecodeError("not a non-empty array")
    index = items[0]
    if type(index) is not int or not 0 <= index < len(MESSAGE_KINDS):
        raise MessageDecodeError(f"unknown message kind {index!r}")
    kind = MESSAGE_KINDS[index]
    fields = _FIELDS[kind]
    if len(items) != len(fields) + 1:
        raise MessageDecodeError(f"{kind.__name__} needs {len(fields)} fields")
    values = {f.name: _decode_value(str(f.type), v) for f, v in zip(fields, items[1:], strict=True)}
    return kind(**values)
