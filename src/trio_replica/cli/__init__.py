"""The ``trio-replica`` command: ``demo``, ``inspect``, ``verify``, ``repair``, ``bench``.

:func:`main` parses the arguments, runs one subcommand and turns every
expected failure into one line on stderr and an exit status (see
:class:`~trio_replica.cli.errors.ExitStatus`); it never shows a traceback
unless ``TRIO_REPLICA_TRACEBACK=1`` asks for one. Each subcommand lives in
its own module with an ``add_parser`` and a ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .bench import add_parser as add_bench
from .demo.command import add_parser as add_demo
from .errors import PROGRAM, ExitStatus, describe_error, traceback_requested
from .inspect import add_parser as add_inspect
from .repair import add_parser as add_repair
from .verify import add_parser as add_verify

__all__ = ["build_parser", "main"]

_EPILOG = """\
exit status:
  0  done (verify: clean)
  1  the data is damaged or inconsistent
  2  usage error, or a path that is not a replica data directory
  3  the directory is locked by a running replica, or an I/O error
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-replica`` with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Run the crash-recovery demo, and inspect, verify or repair "
        "a trio-replica data directory.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_demo, add_inspect, add_verify, add_repair, add_bench):
        add(commands)
    return parser


def _silence_stdout() -> None:
    # The reader of our stdout went away (``| head``): point stdout at
    # /dev/null so the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _is_interrupt(exc: BaseException) -> bool:
    # Ctrl-C inside a Trio nursery arrives wrapped in a group.
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_interrupt(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trio-replica`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 128 + 13  # as if killed by SIGPIPE, like other Unix tools
    except (KeyboardInterrupt, BaseExceptionGroup, Exception) as exc:
        if _is_interrupt(exc):
            print(f"{PROGRAM}: interrupted", file=sys.stderr)
            return ExitStatus.INTERRUPTED
        if not isinstance(exc, Exception):
            raise  # a group holding SystemExit or another BaseException: not ours
        message, status = describe_error(exc)
        if status == ExitStatus.SOFTWARE and traceback_requested():
            raise
        print(f"{PROGRAM}: error: {message}", file=sys.stderr)
        return status
