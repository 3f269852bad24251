"""``trio-replica serve DIR --machine module:Class [--listen ADDR]``: run one cluster replica.

The directory must have been created by ``trio-replica format`` (its
``cluster.json`` names the cluster, this replica and every replica's
address); ``serve`` never formats. The state machine is loaded from an
import path, as uvicorn or celery load applications: ``module:Class`` (the
current directory is importable) or ``path/to/file.py:Class``, called with
no arguments. A mistake there (no such module or file, a module raising
while it is imported, a class needing arguments) is a usage error, exit 2.

It logs at INFO to stderr: listening, connections to peers, every view or
status change (with the primary), and commit progress (at most once a
second). SIGINT or SIGTERM stop it cleanly (the tasks are cancelled, the
journal closed, exit status 0). Clients and the other replicas reach it on
the same port (``docs/format.md``, "Cluster wire format (TCP)").

It runs with the TLS files recorded by ``format`` (or given here, e.g.
renewed ones); on plain TCP only when ``format --insecure`` or
``serve --insecure`` asked for it, and then says so at WARNING on every
start (``docs/security.md``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import sys
from typing import Any

import attrs
import trio

from ..cluster import ClusterConfig, TlsFiles, open_cluster_replica
from ..cluster.replica import ClusterReplica
from ..cluster.tcp import open_tcp_replica_transport, parse_address
from ..cluster.tls import TlsConfigError, server_context
from ..layout import LOCK_NAME
from ..stm.protocol import StateMachine
from ..storage.osfs import is_held, read_holder
from .errors import CommandError, ExitStatus, UsageError
from .format import MEMBERSHIP_NAME, Membership, read_membership
from .tls_options import add_member_tls_arguments, member_tls

__all__ = ["add_parser", "load_machine", "run", "serve"]

log = logging.getLogger("trio_replica.serve")
_WATCH_SECONDS = 0.05
_COMMIT_LOG_SECONDS = 1.0


def load_machine(path: str) -> type[StateMachine]:
    """The state machine class at ``module:Class`` or ``file.py:Class``.

    ``module`` is imported with the current directory importable; a
    ``file.py`` path (``./tally_sm.py:Tally``) is loaded from that file. The
    class must be a :class:`~trio_replica.stm.protocol.StateMachine` that
    can be called with no arguments. Raises :class:`UsageError` naming what
    to fix for every mistake in ``path`` or in the module it names: a
    missing module or file, a module that raises while importing (the
    exception is quoted), a missing class, something that is not a
    StateMachine class, or a class that cannot be created without arguments.
    """
    module_name, sep, name = path.rpartition(":")
    if not sep or not module_name or not name:
        raise UsageError(f"--machine {path!r} is not module:Class (or file.py:Class)")
    target: Any = _import_machine_module(path, module_name)
    for part in name.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise UsageError(f"--machine {path}: {module_name} has no {name}")
    if not (isinstance(target, type) and issubclass(target, StateMachine)):
        raise UsageError(f"--machine {path} is not a StateMachine class")
    try:
        target()
    except Exception as error:
        # serve creates the machine as Class(): one that needs arguments (or
        # fails while it is built) is the user's to fix, not a bug here.
        raise UsageError(
            f"--machine {path}: {name}() raised {type(error).__name__}: {error} "
            "(serve creates the state machine with no arguments)"
        ) from None
    return target


def _import_machine_module(path: str, module_name: str) -> Any:
    """The module ``module_name`` names: a dotted name, or a ``.py`` file."""
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            return _load_file(path, module_name)
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_name)
    except UsageError:
        raise
    except ModuleNotFoundError as error:
        raise UsageError(f"--machine {path}: cannot import {module_name} ({error})") from None
    except Exception as error:
        # The user's module raised while it was imported: quote what it raised.
        raise UsageError(
            f"--machine {path}: importing {module_name} raised {type(error).__name__}: {error}"
        ) from None


def _load_file(path: str, file_name: str) -> Any:
    if not os.path.isfile(file_name):
        raise UsageError(f"--machine {path}: there is no file {file_name}")
    stem = os.path.splitext(os.path.basename(file_name))[0]
    spec = importlib.util.spec_from_file_location(stem, file_name)
    if spec is None or spec.loader is None:
        raise UsageError(f"--machine {path}: {file_name} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module  # classes defined in it find their module by name
    spec.loader.exec_module(module)
    return module


async def _watch(replica: ClusterReplica, config: ClusterConfig) -> None:
    """Log view and status changes as they happen, commit progress once a second."""
    last: tuple[int, str] | None = None
    logged_commit = 0
    logged_at = trio.current_time()
    while True:
        s = replica.status
        if (s.view, s.status) != last:
            role = "primary" if s.primary else "backup"
            log.info(
                "view %d: %s, primary is replica %d (this replica %d is %s); op %d, commit %d",
                s.view,
                s.status,
                config.primary(s.view),
                s.replica,
                role,
                s.op,
                s.commit,
            )
            last = (s.view, s.status)
        now = trio.current_time()
        if s.commit != logged_commit and now - logged_at >= _COMMIT_LOG_SECONDS:
            log.info(
                "committed up to op %d (+%d), applied %d",
                s.commit,
                s.commit - logged_commit,
                s.applied,
            )
            logged_commit, logged_at = s.commit, now
        await trio.sleep(_WATCH_SECONDS)


def _check_clients_max(path: str, membership: Membership, clients_max: int | None) -> None:
    if clients_max is not None and clients_max != membership.clients_max:
        raise UsageError(
            f"--clients-max {clients_max} differs from the {membership.clients_max} {path} "
            "was formatted with; it must be equal on every replica, so it is set once, "
            "by `trio-replica format --clients-max`"
        )


def choose_tls(
    path: str, membership: Membership, tls: TlsFiles | None, insecure: bool
) -> TlsFiles | None:
    """The TLS files to serve with (None: plain TCP, logged at WARNING).

    ``tls`` and ``insecure`` are the command line's and win over what
    ``format`` recorded. Raises :class:`UsageError` when nothing says which
    (a directory formatted before TLS existed) and when the files cannot be
    used.
    """
    chosen = None if insecure else tls or membership.tls
    if chosen is None:
        if not (insecure or membership.insecure):
            raise UsageError(
                f"{path} records no TLS files: give --tls-dir DIR or --tls-ca/--tls-cert/"
                "--tls-key, or --insecure for plain TCP (docs/security.md)"
            )
        why = "--insecure" if insecure else "formatted with --insecure"
        log.warning(
            "serving on PLAIN TCP (%s): no authentication, no encryption; anyone who can "
            "reach the port can read the traffic and speak for a member (docs/security.md)",
            why,
        )
        return None
    try:
        server_context(chosen)
    except TlsConfigError as error:
        raise UsageError(str(error)) from None
    return chosen


async def serve(
    path: str,
    machine: type[StateMachine],
    *,
    listen: str | None = None,
    clients_max: int | None = None,
    tls: TlsFiles | None = None,
    insecure: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the replica of the formatted directory ``path`` until SIGINT/SIGTERM
    (TLS as :func:`choose_tls` decides from ``tls``, ``insecure`` and the
    directory's membership).

    ``clients_max``, when given, must equal the directory's (a check for
    scripts; the value itself is set at format time). Raises
    :class:`UsageError` for an unformatted directory or another
    ``clients_max``, and
    :class:`CommandError` when the directory is in use or the address
    cannot be listened on.
    """
    membership: Membership = read_membership(path)
    if is_held(path):
        holder = read_holder(os.path.join(path, LOCK_NAME))
        raise CommandError(
            f"{path} is in use by a running replica{f' ({holder})' if holder else ''}",
            status=ExitStatus.UNAVAILABLE,
        )
    address = listen or membership.addresses[membership.replica]
    _check_clients_max(path, membership, clients_max)
    config = ClusterConfig(
        cluster_id=membership.cluster_id,
        replica_count=len(membership.addresses),
        clients_max=membership.clients_max,
        tls=choose_tls(path, membership, tls, insecure),
    )
    try:
        host, port = parse_address(address)
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as error:
        raise CommandError(
            f"cannot listen on {address}: {error.strerror or error}", status=ExitStatus.UNAVAILABLE
        ) from None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_tcp_replica_transport(
                membership.cluster_id,
                membership.addresses,
                membership.replica,
                listeners=listeners,
                settings={"clients_max": config.clients_max},
                tls=config.tls,
            ) as transport,
            open_cluster_replica(
                path, machine(), config, replica=membership.replica, transport=transport
            ) as replica,
            trio.open_nursery() as nursery,
        ):

            def status() -> dict[str, Any]:
                return {
                    **attrs.asdict(replica.status),
                    "address": membership.addresses[membership.replica],
                    "replica_count": config.replica_count,
                    "clients_max": config.clients_max,
                    "pid": os.getpid(),
                }

            transport.status = status
            log.info(
                "replica %d of %d in cluster %d serving %s on %s (machine %s, up to %d "
                "client sessions, %s)",
                membership.replica,
                config.replica_count,
                membership.cluster_id,
                path,
                ", ".join(transport.listening),
                machine.__name__,
                config.clients_max,
                f"mutual TLS, certificate {config.tls.certificate}" if config.tls else "plain TCP",
            )
            nursery.start_soon(_watch, replica, config)
            task_status.started(transport.listening[0])
            async for signum in signals:
                now = replica.status
                log.info(
                    "received %s: shutting down (op %d, commit %d, applied %d, journal durable "
                    "through op %d)",
                    signal.Signals(signum).name,
                    now.op,
                    now.commit,
                    now.applied,
                    now.durable,
                )
                nursery.cancel_scope.cancel()
                break
    log.info("stopped; the journal is closed")


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; exit 0 after a clean shutdown."""
    machine = load_machine(args.machine)
    membership = read_membership(args.dir)  # clear errors before logging is set up
    _check_clients_max(args.dir, membership, args.clients_max)
    tls = member_tls(args, membership.replica)
    if tls is None and membership.tls is None and not (args.insecure or membership.insecure):
        choose_tls(args.dir, membership, None, False)  # raises the usage error
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    trio.run(
        _serve_positional,
        args.dir,
        machine,
        args.listen_address,
        args.clients_max,
        tls,
        args.insecure,
    )
    return ExitStatus.OK


async def _serve_positional(
    path: str,
    machine: type[StateMachine],
    listen: str | None,
    clients_max: int | None,
    tls: TlsFiles | None,
    insecure: bool,
) -> None:
    await serve(path, machine, listen=listen, clients_max=clients_max, tls=tls, insecure=insecure)


def add_parser(commands: Any) -> None:
    """Add the ``serve`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "serve",
        help="run one replica of a cluster (the directory made by `format`)",
        description="Run the cluster replica of DIR (made by `trio-replica format`; "
        f"its {MEMBERSHIP_NAME} names the cluster and the addresses) with the state "
        "machine class at --machine module:Class. Replicas and clients connect to "
        "the same port. Logs view changes and commits at INFO on stderr; SIGINT or "
        "SIGTERM shut it down cleanly.",
    )
    parser.add_argument("dir", metavar="DIR", help="the replica's data directory")
    parser.add_argument(
        "--machine", required=True, metavar="MODULE:CLASS", help="the state machine class"
    )
    parser.add_argument(
        "--listen",
        dest="listen_address",
        metavar="ADDR",
        default=None,
        help="host:port to listen on (default: this replica's address in the membership)",
    )
    parser.add_argument(
        "--clients-max",
        type=int,
        metavar="N",
        default=None,
        help="refuse to start unless DIR was formatted with this --clients-max (the value "
        "is set by `format` and must be equal on every replica)",
    )
    add_member_tls_arguments(
        parser,
        insecure_help="serve on plain TCP even if DIR records TLS files (logged at WARNING)",
    )
    parser.set_defaults(run=run)
