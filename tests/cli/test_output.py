"""Progress display and the rendering of journal bodies."""

from __future__ import annotations

import io
import json
import math

import cbor2
import pytest

from trio_replica.cli.progress import Progress
from trio_replica.cli.render import compact_text, decode_body, to_json_value


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_one_line_per_tenth() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, total=1000, label="writing", interactive=False, clock=clock)
    for done in range(0, 1001, 7):
        clock.now = done / 100
        progress.update(done)
    progress.finish("killed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # 10%..90% as they are crossed, then the final line
    assert lines[0] == "writing: 105/1000 ops (10%), 100 ops/s"
    assert lines[-1] == "writing: 994/1000 ops (99%), 100 ops/s - killed"
    assert "\r" not in out.getvalue()


def test_terminal_progress_redraws_in_place_at_most_ten_times_a_second() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, total=100, label="writing", interactive=True, clock=clock)
    for done in range(1, 101):
        clock.now = done * 0.01  # one update every 10 ms for a second
        progress.update(done)
    progress.finish()
    progress.finish()  # idempotent
    text = out.getvalue()
    first = text.split("\r")[1]
    assert first.startswith("writing [....") and "ops/s" not in first  # too early for a rate
    assert 9 <= text.count("\r") <= 12
    assert text.endswith(
        "writing [##############################] 100/100 ops (100%), 100 ops/s\x1b[K\n"
    )


def test_progress_needs_a_positive_total() -> None:
    with pytest.raises(ValueError):
        Progress(io.StringIO(), total=0, label="x")


def test_json_form_of_cbor_values() -> None:
    value = {
        "text": "é",
        "n": 2**70,
        "raw": b"\x00\xff",
        "list": [1.5, None, True],
        7: "int key",
        "tag": cbor2.CBORTag(1234, b"\x01"),
        "nan": math.nan,
        "inf": -math.inf,
        "set": frozenset({1}),
    }
    converted = to_json_value(cbor2.loads(cbor2.dumps(value)))
    assert converted["raw"] == {"$bytes": "00ff"}
    assert converted["n"] == 2**70
    assert converted[7] == "int key"
    assert converted["tag"] == {"$tag": 1234, "value": {"$bytes": "01"}}
    assert converted["nan"] == {"$float": "nan"} and converted["inf"] == {"$float": "-inf"}
    assert converted["set"] == {"$repr": "{1}"}  # CBOR sets decode as Python sets
    assert json.loads(json.dumps(converted, allow_nan=False))["7"] == "int key"


def test_non_text_map_keys_become_their_json_text() -> None:
    assert to_json_value({b"k": 1, (1, 2): 2}) == {'{"$bytes":"6b"}': 1, "[1,2]": 2}


def test_compact_text_and_decoding() -> None:
    assert compact_text({"type": "create_stream", "name": "a"}) == (
        '{"type":"create_stream","name":"a"}'
    )
    long = compact_text({"pad": "x" * 500}, limit=40)
    assert len(long) == 40 and long.endswith("...")
    assert decode_body(cbor2.dumps([1, "a"])).value == [1, "a"]
    bad = decode_body(b"\xff\xff\x00")
    assert bad.value is None and bad.error is not None and bad.error.startswith("not valid CBOR")
