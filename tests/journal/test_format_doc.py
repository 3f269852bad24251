"""docs/format.md and the code say the same thing: the decision table, and format 1 refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_replica.errors import CorruptionError
from trio_replica.journal import Entry, Journal, scan_journal
from trio_replica.journal.decision import (
    COVERED_BY_SNAPSHOT,
    DECISION_COLUMNS,
    DECISION_TABLE,
    Action,
    Case,
    Replication,
)
from trio_replica.journal.record import checksum
from trio_replica.journal.superblock import UnsupportedFormatError
from trio_replica.storage import MemoryDirectory

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "format.md"

# How the documentation words each action (the last column of the table).
_WORDING = [
    ("accept", Action.ACCEPT),
    ("raise `CorruptionError`", Action.RAISE_CORRUPTION),
    ("raise `FormatError`", Action.RAISE_FORMAT),
    ("raise `ForeignDataError`", Action.RAISE_FOREIGN),
    ("remove the file", Action.REMOVE_SEGMENT),
    ("truncate", Action.TRUNCATE),
]


def _decision_rows() -> list[tuple[str, str, str]]:
    """(case, action, "at or below the newest valid snapshot") of each table row."""
    rows = []
    for line in FORMAT_MD.read_text().splitlines():
        match = re.match(r"^\| `([A-Z_]+)` \|(.*)\|$", line)
        if match is None:
            continue
        cells = [cell.strip() for cell in match.group(2).split("|")]
        assert len(cells) == 3, line
        rows.append((match.group(1), cells[1], cells[2]))
    return rows


def documented_table() -> dict[str, Action]:
    rows: dict[str, Action] = {}
    for name, action_text, _below in _decision_rows():
        actions = [action for words, action in _WORDING if action_text.startswith(words)]
        assert len(actions) == 1, (name, action_text)
        assert name not in rows, f"{name} is documented twice"
        rows[name] = actions[0]
    return rows


def test_the_documented_snapshot_column_is_the_code() -> None:
    covered = {name for name, _action, below in _decision_rows() if below.startswith("covered")}
    same = {name for name, _action, below in _decision_rows() if below == "the same"}
    assert covered == {case.name for case in COVERED_BY_SNAPSHOT}
    assert covered | same == {case.name for case in Case}
    # Only refusals are ever lifted by a snapshot, never a truncation.
    assert all(DECISION_TABLE[case] is Action.RAISE_CORRUPTION for case in COVERED_BY_SNAPSHOT)


def test_the_documented_decision_table_is_the_code() -> None:
    documented = documented_table()
    in_code = {case.name: action for case, action in DECISION_TABLE.items()}
    assert documented == in_code
    assert set(DECISION_TABLE) == set(Case)


def test_the_documented_cluster_column_is_the_code() -> None:
    """The cluster column's differences from the single one, as documented."""
    documented = {}
    for line in FORMAT_MD.read_text().splitlines():
        match = re.match(r"^\| cluster \| `([A-Z_]+)` \| (.*) \|$", line)
        if match is not None:
            assert match.group(2) == "repair from peers", line
            documented[match.group(1)] = Action.REPAIR_FROM_PEERS
    single = DECISION_COLUMNS[Replication.SINGLE]
    cluster = DECISION_COLUMNS[Replication.CLUSTER]
    differs = {case.name: cluster[case] for case in Case if cluster[case] is not single[case]}
    assert documented == differs


def _version_1_directory() -> MemoryDirectory:
    """What format 1 left: segments (64-byte headers saying version 1), no superblock."""
    data = MemoryDirectory()
    wal = data.subdir("wal", create=True)
    head = bytearray(48)
    head[:8] = b"\x89TRWAL\r\n"
    head[8:10] = (1).to_bytes(2, "little")
    head[16:24] = (1).to_bytes(8, "little")
    head[24:40] = checksum(b"trio-replica journal genesis")
    segment = wal.open("00000000000000000001.wal", create=True)
    segment.write_at(0, bytes(head) + checksum(bytes(head)) + b"\x00" * 100)
    segment.close()
    return data


async def test_a_format_1_directory_is_refused_naming_the_version() -> None:
    data = _version_1_directory()
    before = sorted(data.listdir())
    with pytest.raises(UnsupportedFormatError) as opened:
        await Journal.open(data)
    assert opened.value.version == 1
    assert "format version 1" in str(opened.value) and "reads version 2" in str(opened.value)
    with pytest.raises(UnsupportedFormatError):
        scan_journal(data)
    # Refused before anything was written: no superblock was made up (the
    # LOCK file names the last holder; it is not data).
    assert sorted(set(data.listdir()) - {"LOCK"}) == before


async def test_lost_superblock_is_refused_not_replaced() -> None:
    data = MemoryDirectory()
    async with await Journal.open(data) as journal:
        await journal.append([Entry(1, b"x")])
    data.unlink("superblock")
    with pytest.raises(CorruptionError, match="no superblock"):
        await Journal.open(data)
    assert not data.exists("superblock")
