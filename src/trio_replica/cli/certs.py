"""``trio-replica certs DIR --cluster-id ID --replicas N [--client NAME]...``: test certificates.

Creates a certificate authority and one certificate per replica and per
named client for a local or test cluster (:mod:`trio_replica.cluster.certs`):

    DIR/ca.pem  DIR/ca.key                  the cluster CA (keep ca.key away from replicas)
    DIR/replicaI.pem  DIR/replicaI.key      trio-replica://ID/replica/I
    DIR/NAME.pem  DIR/NAME.key              trio-replica://ID/client/NAME (default: client)

``format --tls-dir DIR`` and the client options ``--tls-dir DIR`` read
these names. It never overwrites a file. It needs the ``cryptography``
package (``pip install 'trio-replica[certs]'``); ``docs/security.md`` gives
the same with ``openssl`` commands, and how a production CA differs.
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import ExitStatus, UsageError

__all__ = ["add_parser", "run"]

_NEEDS = (
    "creating certificates needs the cryptography package: pip install "
    "'trio-replica[certs]' (or use the openssl commands of docs/security.md)"
)


def _cluster_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value < 2**128:
        raise argparse.ArgumentTypeError("a cluster id is between 1 and 2**128 - 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Write the CA and the certificates; print what was written."""
    try:
        from ..cluster.certs import write_cluster_certificates
    except ImportError:
        raise UsageError(_NEEDS) from None
    if args.replicas not in (1, 3, 5):
        raise UsageError(f"--replicas: a cluster has 1, 3 or 5 replicas, got {args.replicas}")
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    try:
        written = write_cluster_certificates(
            args.dir,
            cluster_id=args.cluster_id,
            replicas=args.replicas,
            clients=args.client or ["client"],
            days=args.days,
        )
    except FileExistsError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:
        raise UsageError(f"--client: {error}") from None
    print(
        f"wrote a CA and certificates for {args.replicas} replica(s) and client(s) "
        f"{', '.join(args.client or ['client'])} of cluster {args.cluster_id} in {args.dir} "
        f"({len(written)} files, valid {args.days} days)"
    )
    return ExitStatus.OK


def add_parser(commands: Any) -> None:
    """Add the ``certs`` subcommand to ``commands`` (an argparse subparsers object)."""
    parser = commands.add_parser(
        "certs",
        help="create a test CA and member certificates for a TLS cluster",
        description="Create a certificate authority and certificates for the replicas and "
        "clients of a local or test cluster in DIR (ca.pem, replicaI.pem/.key, NAME.pem/.key), "
        "each naming its member as a URI (trio-replica://ID/replica/I, "
        "trio-replica://ID/client/NAME). Never overwrites a file. Needs the cryptography "
        "package (the certs extra).",
    )
    parser.add_argument("dir", metavar="DIR", help="where to write the files (created if missing)")
    parser.add_argument("--cluster-id", type=_cluster_id, required=True, help="the cluster's id")
    parser.add_argument("--replicas", type=int, required=True, help="how many replicas (1, 3, 5)")
    parser.add_argument(
        "--client",
        action="append",
        metavar="NAME",
        help="a client certificate to create (repeatable; default: one named client)",
    )
    parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    parser.set_defaults(run=run)
