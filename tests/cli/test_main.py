"""The command's error handling: one line, the right exit status, never a traceback."""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from replica_dirs import run_cli

from trio_replica.cli import OneLineArgumentParser, main
from trio_replica.cli.errors import ExitStatus, UsageError, describe_error
from trio_replica.errors import CorruptionError, DirectoryLockedError, SnapshotWriteError


@pytest.mark.parametrize(
    ("exc", "line", "status"),
    [
        (UsageError("bad\nthing"), "bad thing", ExitStatus.USAGE),
        (
            CorruptionError("checksum mismatch", path="w/1.wal", offset=64, op=3),
            "checksum mismatch (file w/1.wal, offset 64, op 3)",
            ExitStatus.PROBLEM,
        ),
        (DirectoryLockedError("locked", path="d"), "locked", ExitStatus.UNAVAILABLE),
        (SnapshotWriteError("disk full", path="s"), "disk full", ExitStatus.PROBLEM),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "x/y"),
            "x/y: No such file or directory",
            ExitStatus.USAGE,
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/root/d"),
            "/root/d: Permission denied",
            ExitStatus.UNAVAILABLE,
        ),
        (
            ExceptionGroup("nursery", [ValueError("noise"), CorruptionError("bad")]),
            "bad",
            ExitStatus.PROBLEM,
        ),
    ],
)
def test_expected_errors_become_one_line(exc: BaseException, line: str, status: int) -> None:
    assert describe_error(exc) == (line, status)


def test_a_bug_is_called_a_bug() -> None:
    message, status = describe_error(ExceptionGroup("g", [KeyError("k")]))
    assert status == ExitStatus.SOFTWARE
    assert message.startswith("internal error: KeyError: 'k' (a bug in trio-replica")


def _failing(exc: BaseException) -> argparse.Namespace:
    def run(args: argparse.Namespace) -> int:
        raise exc

    return argparse.Namespace(run=run)


@pytest.mark.parametrize(
    ("exc", "status", "text"),
    [
        (UsageError("nope"), 2, "trio-replica: error: nope\n"),
        (ValueError("oops"), 70, "trio-replica: error: internal error: ValueError: oops"),
        (KeyboardInterrupt(), 130, "trio-replica: interrupted\n"),
        (
            BaseExceptionGroup("nursery", [KeyboardInterrupt(), ValueError()]),
            130,
            "trio-replica: interrupted\n",
        ),
    ],
)
def test_main_turns_failures_into_a_line_and_a_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    status: int,
    text: str,
) -> None:
    monkeypatch.setattr(OneLineArgumentParser, "parse_args", lambda self, a: _failing(exc))
    monkeypatch.delenv("TRIO_REPLICA_TRACEBACK", raising=False)
    assert main([]) == status
    err = capsys.readouterr().err
    assert err.startswith(text) and err.count("\n") == 1


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        OneLineArgumentParser, "parse_args", lambda self, a: _failing(ValueError("x"))
    )
    monkeypatch.setenv("TRIO_REPLICA_TRACEBACK", "1")
    with pytest.raises(ValueError):
        main([])


def test_help_version_and_usage_errors() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("demo", "inspect", "verify", "repair", "bench", "exit status:"):
        assert command in proc.stdout
    assert "--child" not in run_cli("demo", "--help").stdout
    assert run_cli("--version").stdout.startswith("trio-replica ")
    proc = run_cli("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    assert run_cli().returncode == 2


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipe sizing")
def test_output_into_a_closed_pipe_is_quiet(data_dir: Path) -> None:
    # `trio-replica inspect DIR | head -1`: the reader leaves early. A one-page
    # pipe makes sure the output does not all fit before the reader leaves.
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)
    inspect = subprocess.Popen(
        [sys.executable, "-m", "trio_replica", "inspect", str(data_dir)],
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    inspect.stdout = os.fdopen(read_end, "rb")
    assert inspect.stderr is not None
    inspect.stdout.readline()
    inspect.stdout.close()
    status = inspect.wait(timeout=30)
    assert inspect.stderr.read() == b""
    assert status == 141


def test_console_script_entry_point_is_main() -> None:
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "trio-replica"]
    assert script.value == "trio_replica.cli:main"
    assert script.load() is main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "trio-replica: error: the following arguments are required: COMMAND"),
        (["warp"], "trio-replica: error: argument COMMAND: invalid choice: 'warp'"),
        (
            ["demo", "--ops", "0"],
            "trio-replica: error: demo: argument --ops: must be at least 10 to kill the writer",
        ),
        (["inspect"], "trio-replica: error: inspect: the following arguments are required: DIR"),
        (
            ["status", "d", "--bogus"],
            "trio-replica: error: status: unrecognized arguments: --bogus",
        ),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], expected: str) -> None:
    proc = run_cli(*argv)
    assert proc.returncode == ExitStatus.USAGE
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(expected)
    assert line.endswith("--help)")


def test_with_json_a_failure_is_also_a_json_object_on_stdout(tmp_path: Path) -> None:
    proc = run_cli("inspect", tmp_path / "nothing", "--json")
    assert proc.returncode == ExitStatus.USAGE
    assert json.loads(proc.stdout) == {
        "error": f"{tmp_path / 'nothing'}: no such directory",
        "exit_status": 2,
    }
    proc = run_cli("bench", "--only", "warp", "--json")
    assert json.loads(proc.stdout)["exit_status"] == 2
    proc = run_cli("status", "--json")  # a usage error found by argparse
    assert json.loads(proc.stdout)["exit_status"] == 2
    assert len(proc.stderr.splitlines()) == 1
