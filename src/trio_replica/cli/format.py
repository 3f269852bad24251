"""``trio-replica format DIR --cluster-id ID --replica I --addresses A,B,C``.

Creates a cluster replica's data directory: the journal, the replica's
identity in the superblock (cluster id, replica index, cluster size; checked
at every later open) and ``DIR/cluster.json``, the membership file ``serve``
reads (cluster id, replica index, every replica's ``host:port``, and the
settings every replica must share: ``clients_max``, the client sessions the
client table keeps before it evicts the oldest; and the TLS files, or that
the cluster runs plain TCP: ``--insecure``, an explicit choice;
``docs/security.md``). It refuses
a path that exists: a directory is formatted once, and a cluster replica
never formats itself implicitly (``serve`` refuses a directory without
``cluster.json``).

``--recover`` formats a directory that REPLACES a lost or damaged one of an
existing cluster member (a new disk, or a directory that must not be
trusted): the replica is marked rejoining in its superblock, and until it
has caught up from its peers (state transfer and repair) it neither votes
in view changes nor nacks anything, so it can never help cut an op its lost
directory had acknowledged. Formatting a replacement without ``--recover``
can lose committed data; see ``docs/operations.md``.

``cluster.json`` is written last, atomically (temp file, fsync, rename,
directory fsync), so a format interrupted half way leaves a directory that
``serve`` refuses as unformatted rather than one that looks complete.
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from typing import Any

import attrs
import trio

from ..cluster.config import DEFAULT_CLIENTS_MAX, TlsFiles
from ..cluster.storage import recover_cluster_storage
from ..cluster.tcp import AddressError, parse_address
from ..cluster.tls import TlsConfigError, server_context
from ..journal import Journal
from ..storage import OsDirectory
from .errors import ExitStatus, UsageError
from .tls_options import add_member_tls_arguments, member_tls

__all__ = [
    "CLIENTS_MAX_LIMIT",
    "MEMBERSHIP_NAME",
    "Membership",
    "add_parser",
    "format_cluster_directory",
    "read_membership",
    "run",
]

MEMBERSHIP_NAME = "cluster.json"
"""The membership file in a cluster replica's data directory."""
_FORMAT = 1
CLIENTS_MAX_LIMIT = 1 << 20
"""The largest ``--clients-max``: each session keeps its newest reply in
memory on every replica, so a bound keeps a typo from sizing a huge table."""


@attrs.frozen
class Membership:
    """Who this replica is: ``replica`` of the cluster ``cluster_id`` whose
    replicas listen at ``addresses`` (index order, ``host:port``), and
    ``clients_max``, the client sessions kept before the oldest is evicted
    (it must be equal on every replica: the client table is replicated
    state, so replicas with different bounds would evict differently).
    ``tls`` are its TLS files; without, ``insecure`` says plain TCP was chosen
    (False: a directory formatted before TLS existed, which ``serve``
    refuses without ``--insecure`` or TLS options)."""

    cluster_id: int
    replica: int
    addresses: tuple[str, ...]
    clients_max: int = DEFAULT_CLIENTS_MAX
    tls: TlsFiles | None = None
    insecure: bool = False


def _cluster_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value < 2**128:
        raise argparse.ArgumentTypeError("a cluster id is between 1 and 2**128 - 1")
    return value


def _clients_max(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= CLIENTS_MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"--clients-max is between 1 and {CLIENTS_MAX_LIMIT}")
    return value


def _addresses(text: str) -> tuple[str, ...]:
    found = tuple(a.strip() for a in text.split(","))
    try:
        for address in found:
            parse_address(address)
    except AddressError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if len(found) not in (1, 3, 5):
        raise argparse.ArgumentTypeError(f"a cluster has 1, 3 or 5 replicas, got {len(found)}")
    if len(set(found)) != len(found):
        raise argparse.ArgumentTypeError("two replicas share an address")
    return found


def read_membership(path: str) -> Membership:
    """The membership of the data directory ``path``.

    Raises :class:`UsageError` when ``path`` is missing or is not a
    formatted cluster replica directory, or when its membership file does
    not parse.
    """
    if not os.path.isdir(path):
        raise UsageError(f"{path}: no such directory (create it with: trio-replica format)")
    file = os.path.join(path, MEMBERSHIP_NAME)
    if not os.path.exists(file):
        raise UsageError(
            f"{path} is not a formatted cluster replica directory (no {MEMBERSHIP_NAME}); "
            "create one with: trio-replica format DIR --cluster-id ID --replica I "
            "--addresses A,B,C"
        )
    try:
        with open(file, encoding="utf-8") as f:
            data: Any = json.load(f)
        membership = Membership(
            cluster_id=int(data["cluster_id"]),
            replica=int(data["replica"]),
            addresses=tuple(str(a) for a in data["addresses"]),
            # Directories formatted before the setting existed used the default.
            clients_max=int(data.get("clients_max", DEFAULT_CLIENTS_MAX)),
            tls=_tls_of(data.get("tls")),
            insecure=data.get("insecure") is True,
        )
        for address in membership.addresses:
            parse_address(address)
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{file} does not parse: {error}") from None
    if not 0 <= membership.replica < len(membership.addresses):
        raise UsageError(f"{file}: replica {membership.replica} is not among its addresses")
    if not 1 <= membership.clients_max <= CLIENTS_MAX_LIMIT:
        raise UsageError(
            f"{file}: clients_max {membership.clients_max} is not between 1 and {CLIENTS_MAX_LIMIT}"
        )
    return membership


def _tls_of(value: Any) -> TlsFiles | None:
    if value is None:
        return None
    return TlsFiles(str(value["ca"]), str(value["certificate"]), str(value["key"]))


def _write_atomically(path: str, data: bytes) -> None:
    temp = path + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _create(path: str) -> None:
    if os.path.lexists(path):
        raise UsageError(f"{path} exists; format creates a new directory and never reuses one")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        # A typo in the parent would otherwise grow a directory tree silently.
        raise UsageError(f"{parent} does not exist; create it first (format makes only {path})")
    os.mkdir(path)


async def format_cluster_directory(
    path: str, membership: Membership, *, recover: bool = False
) -> None:
    """Create the cluster replica directory ``path`` for ``membership``;
    with ``recover``, one that rejoins its cluster in place of a lost one
    (module docstring).

    Raises :class:`UsageError` when ``path`` exists.
    """
    await trio.to_thread.run_sync(_create, path)
    journal = await Journal.open(OsDirectory(path))
    async with journal:
        await recover_cluster_storage(
            journal,
            cluster_id=membership.cluster_id,
            replica=membership.replica,
            replica_count=len(membership.addresses),
            rejoining=recover,
        )
    text = {
        "format": _FORMAT,
        "cluster_id": membership.cluster_id,
        "replica": membership.replica,
        "addresses": list(membership.addresses),
        "clients_max": membership.clients_max,
        "tls": attrs.asdict(membership.tls) if membership.tls is not None else None,
        "insecure": membership.insecure,
    }
    await trio.to_thread.run_sync(
        _write_atomically,
        os.path.join(path, MEMBERSHIP_NAME),
        (json.dumps(text, indent=2) + "\n").encode(),
    )


def run(args: argparse.Namespace) -> int:
    """Format ``args.dir``; print one line saying what was created."""
    if not 0 <= args.replica < len(args.addresses):
        raise UsageError(
            f"--replica {args.replica} is not an index into the {len(args.addresses)} addresses"
        )
    if args.recover and len(args.addresses) == 1:
        raise UsageError(
            "--recover rejoins a cluster: a single replica has no peer to catch up from"
        )
    tls = member_tls(args, args.replica)
    if tls is None and not args.insecure:
        raise UsageError(
            "a cluster runs with TLS: give --tls-dir DIR (made by `trio-replica certs`) or "
            "--tls-ca/--tls-cert/--tls-key, or --insecure for plain TCP (docs/security.md)"
        )
    if tls is not None:
        try:
            server_context(tls)  # the files load and the key fits the certificate
        except TlsConfigError as error:
            raise UsageError(str(error)) from None
    membership = attrs.evolve(
        Membership(args.cluster_id, args.replica, args.addresses, args.clients_max),
        tls=tls,
        insecure=tls is None,
    )
    trio.run(partial(format_cluster_directory, recover=args.recover), args.dir, membership)
    address = membership.addresses[membership.replica]
    security = f"TLS with {tls.certificate}" if tls is not None else "PLAIN TCP (--insecure)"
    print(
        f"formatted {args.dir}: replica {membership.replica} of {len(membership.addresses)} "
        f"in cluster {membership.cluster_id}, to serve at {address}, "
        f"up to {membership.clients_max} client sessions, {security}"
        + (
            "; it rejoins: until it has caught up from its peers it neither votes nor nacks"
            if args.recover
            else ""
        )
    )
    return ExitStatus.OK


def add_parser(commands: Any) -> None:
    """Add the ``format`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "format",
        help="create a cluster replica's data directory",
        description="Create a new data directory for replica I of a cluster: the "
        "journal, the identity (cluster id, replica index, cluster size) and the "
        f"membership file {MEMBERSHIP_NAME} that `serve` reads (with the TLS files, "
        "or --insecure for plain TCP: one of them is required). Refuses a path "
        "that exists.",
    )
    parser.add_argument("dir", metavar="DIR", help="the data directory to create")
    parser.add_argument(
        "--cluster-id", type=_cluster_id, required=True, help="the cluster's id (u128, > 0)"
    )
    parser.add_argument("--replica", type=int, required=True, help="this replica's index")
    parser.add_argument(
        "--addresses",
        type=_addresses,
        required=True,
        help="every replica's host:port, comma separated, in index order",
    )
    parser.add_argument(
        "--clients-max",
        type=_clients_max,
        default=DEFAULT_CLIENTS_MAX,
        metavar="N",
        help="client sessions the cluster keeps before evicting the oldest (default "
        f"{DEFAULT_CLIENTS_MAX}); at least the number of clients that submit at once, "
        "and the SAME on every replica (replicas with another value refuse each other)",
    )
    parser.add_argument(
        "--recover",
        action="store_true",
        help="replace the lost or damaged data directory of an existing cluster member: the "
        "replica catches up from its peers before it votes or nacks (without this, a "
        "replacement can lose committed data)",
    )
    add_member_tls_arguments(
        parser,
        insecure_help="run the cluster on plain TCP, without TLS: anyone who can reach a "
        "port can read the traffic and speak for a member (serve warns at every start)",
    )
    parser.set_defaults(run=run)
