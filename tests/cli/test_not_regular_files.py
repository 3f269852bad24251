"""Anything named like a data file that is not a regular file is refused by name, at once.

A FIFO would block a reader forever; a directory, a dangling symlink or a
regular file where a directory belongs must be named in the message, never
a bare OS error or a silent "clean".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from replica_dirs import run_cli

# Each case: make the odd entry, and the path its message must name.


def _fifo_segment(data: Path) -> Path:
    path = data / "wal" / f"{10**6:020d}.wal"
    os.mkfifo(path)
    return path


def _fifo_snapshot(data: Path) -> Path:
    path = data / "snapshots" / f"{10**6:020d}.snapshot"
    os.mkfifo(path)
    return path


def _directory_segment(data: Path) -> Path:
    path = data / "wal" / f"{10**6:020d}.wal"
    path.mkdir()
    return path


def _dangling_symlink_segment(data: Path) -> Path:
    path = data / "wal" / f"{10**6:020d}.wal"
    path.symlink_to(data / "nowhere")
    return path


def _fifo_superblock(data: Path) -> Path:
    path = data / "superblock"
    path.unlink()
    os.mkfifo(path)
    return path


CASES = {
    "fifo segment": _fifo_segment,
    "fifo snapshot": _fifo_snapshot,
    "directory segment": _directory_segment,
    "dangling symlink segment": _dangling_symlink_segment,
    "fifo superblock": _fifo_superblock,
}


@pytest.mark.parametrize("command", ["verify", "inspect", "repair"])
@pytest.mark.parametrize("case", list(CASES))
def test_is_refused_by_name_without_blocking(data_dir: Path, case: str, command: str) -> None:
    path = CASES[case](data_dir)
    args = ["--truncate-tail"] if command == "repair" else []
    proc = run_cli(command, data_dir, *args, timeout=30)  # a FIFO read would hang here
    if (case, command) == ("fifo snapshot", "repair"):
        # Repair is about the journal: nothing to cut, the odd snapshot named.
        assert proc.returncode == 0 and "is not a regular file (a FIFO)" in proc.stdout
    else:
        assert proc.returncode != 0, proc.stdout
    assert str(path) in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
