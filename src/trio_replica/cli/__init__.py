"""The ``trio-replica`` command: ``demo``, ``inspect``, ``verify``, ``repair``, ``status``,
``bench``, and for clusters ``format``, ``serve`` and ``certs``.

:func:`main` parses the arguments, runs one subcommand and turns every
expected failure, usage errors included, into one line on stderr and an exit
status (see :class:`~trio_replica.cli.errors.ExitStatus`); it never shows a
traceback unless ``TRIO_REPLICA_TRACEBACK=1`` asks for one. With ``--json``
a failure is also one JSON object on stdout, ``{"error": MESSAGE,
"exit_status": N}``, so a script reading stdout sees it. Each subcommand
lives in its own module with an ``add_parser`` and a ``run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from .bench import add_parser as add_bench
from .certs import add_parser as add_certs
from .demo.command import add_parser as add_demo
from .errors import PROGRAM, ExitStatus, describe_error, traceback_requested
from .format import add_parser as add_format
from .inspect import add_parser as add_inspect
from .repair import add_parser as add_repair
from .serve import add_parser as add_serve
from .status import add_parser as add_status
from .verify import add_parser as add_verify

__all__ = ["OneLineArgumentParser", "build_parser", "main"]

_EPILOG = """\
exit status:
  0  done (verify: clean)
  1  the data is damaged or inconsistent
  2  usage error, or a path that is not a replica data directory
  3  the directory is locked by a running replica, or an I/O error
"""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error.

    argparse prints the usage and then the error (two lines or more); this
    prints ``trio-replica: error: ...`` naming the subcommand and where to
    read its help, and exits with :attr:`ExitStatus.USAGE`.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line on stderr and exit with status 2."""
        command = self.prog.removeprefix(PROGRAM).strip()
        where = f"{command}: " if command else ""
        line = " ".join(f"{where}{message} (see: {self.prog} --help)".split())
        if "--json" in sys.argv[1:]:
            print(json.dumps({"error": line, "exit_status": int(ExitStatus.USAGE)}))
        print(f"{PROGRAM}: error: {line}", file=sys.stderr)
        sys.exit(ExitStatus.USAGE)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse like argparse, but report unknown arguments against the
        subcommand's own usage (argparse blames the top-level parser)."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            owner: argparse.ArgumentParser = getattr(parsed, "command_parser", self)
            owner.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-replica`` with all its subcommands."""
    parser = OneLineArgumentParser(
        prog=PROGRAM,
        description="Run the crash-recovery demo, and inspect, verify or repair "
        "a trio-replica data directory.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (
        add_demo,
        add_inspect,
        add_verify,
        add_repair,
        add_status,
        add_bench,
        add_format,
        add_serve,
        add_certs,
    ):
        add(commands)
    for sub in commands.choices.values():
        # main() reports unknown arguments against the subcommand's own usage.
        sub.set_defaults(command_parser=sub)
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
        if getattr(args, "json", False):
            print(json.dumps({"error": message, "exit_status": int(status)}), flush=True)
        print(f"{PROGRAM}: error: {message}", file=sys.stderr)
        return status
