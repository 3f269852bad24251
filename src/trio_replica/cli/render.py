"""Showing journal bodies: CBOR decoding, a JSON form of any CBOR value, compact text.

JSON cannot hold every CBOR value, so :func:`to_json_value` maps the rest to
small tagged objects (documented in ``trio-replica inspect --help``):

* byte strings: ``{"$bytes": "<lowercase hex>"}``
* CBOR tags: ``{"$tag": <number>, "value": <value>}``
* non-finite floats: ``{"$float": "nan" | "inf" | "-inf"}``
* map keys that are not text, ints, floats, bools or null: their JSON text
* anything else (dates, decimals, sets, ``undefined``...): ``{"$repr": "<repr>"}``

It keeps a plain JSON object unchanged, so a metadata command shows as itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs
import cbor2

from .. import codec

__all__ = ["DecodedBody", "compact_text", "decode_body", "to_json_value"]


@attrs.frozen
class DecodedBody:
    """A journal body decoded as CBOR: ``value`` when ``error`` is ``None``."""

    value: Any
    error: str | None


def decode_body(body: bytes) -> DecodedBody:
    """Decode a record body as one CBOR value, never raising for bad bytes."""
    try:
        return DecodedBody(codec.decode(body), None)
    except codec.UndecodableError as exc:
        return DecodedBody(None, f"not valid CBOR: {exc.reason}")


def _json_key(key: Any) -> str | int | float | bool | None:
    if key is None or isinstance(key, (str, int, bool)):
        return key
    if isinstance(key, float) and math.isfinite(key):
        return key
    return json.dumps(to_json_value(key), separators=(",", ":"), sort_keys=True)


def to_json_value(value: Any) -> Any:
    """Return ``value`` (a decoded CBOR value) as something ``json.dumps`` accepts."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {_json_key(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, cbor2.CBORTag):
        return {"$tag": value.tag, "value": to_json_value(value.value)}
    return {"$repr": repr(value)}


def compact_text(value: Any, *, limit: int = 120) -> str:
    """One-line JSON text of ``value``, cut to ``limit`` characters with ``...``."""
    text = json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False)
    if len(text) > limit:
        return text[: max(0, limit - 3)] + "..."
    return text
