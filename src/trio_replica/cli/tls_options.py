"""The TLS command-line options shared by ``format``, ``serve``, ``status`` and the demo.

A member's TLS files are given either one by one (``--tls-ca``,
``--tls-cert``, ``--tls-key``) or as a directory written by
``trio-replica certs`` (``--tls-dir DIR``: ``DIR/ca.pem`` and, for replica
``I``, ``DIR/replicaI.pem``/``.key``; for a client, ``DIR/NAME.pem``/``.key``
with ``--tls-name``, default ``client``). Paths are made absolute, so a
``cluster.json`` recording them does not depend on the directory ``serve``
runs in.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cluster.config import TlsFiles
from .errors import UsageError

__all__ = [
    "add_client_tls_arguments",
    "add_member_tls_arguments",
    "client_tls",
    "member_tls",
]


def add_member_tls_arguments(parser: Any, *, insecure_help: str) -> None:
    """Add ``--tls-dir``, ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--insecure``."""
    group = parser.add_argument_group("TLS (docs/security.md)")
    group.add_argument(
        "--tls-dir",
        metavar="DIR",
        help="a directory made by `trio-replica certs`: ca.pem and this replica's "
        "replicaI.pem/.key",
    )
    group.add_argument("--tls-ca", metavar="PEM", help="the cluster CA's certificate")
    group.add_argument("--tls-cert", metavar="PEM", help="this member's certificate")
    group.add_argument("--tls-key", metavar="PEM", help="this member's private key")
    group.add_argument("--insecure", action="store_true", help=insecure_help)


def add_client_tls_arguments(parser: Any) -> None:
    """Add the client's TLS options (``--tls-name`` picks the client in ``--tls-dir``)."""
    group = parser.add_argument_group("TLS (docs/security.md)")
    group.add_argument(
        "--tls-dir",
        metavar="DIR",
        help="a directory made by `trio-replica certs` (ca.pem, NAME.pem, NAME.key)",
    )
    group.add_argument(
        "--tls-name", metavar="NAME", default="client", help="the client in --tls-dir"
    )
    group.add_argument("--tls-ca", metavar="PEM", help="the cluster CA's certificate")
    group.add_argument("--tls-cert", metavar="PEM", help="this client's certificate")
    group.add_argument("--tls-key", metavar="PEM", help="this client's private key")


def _files(args: argparse.Namespace, stem: str) -> TlsFiles | None:
    given = [args.tls_ca, args.tls_cert, args.tls_key]
    if args.tls_dir is not None:
        if any(given):
            raise UsageError("give --tls-dir or --tls-ca/--tls-cert/--tls-key, not both")
        root = os.path.abspath(args.tls_dir)
        files = TlsFiles(
            os.path.join(root, "ca.pem"),
            os.path.join(root, f"{stem}.pem"),
            os.path.join(root, f"{stem}.key"),
        )
    elif any(given):
        if not all(given):
            raise UsageError("--tls-ca, --tls-cert and --tls-key go together")
        files = TlsFiles(*(os.path.abspath(p) for p in given))
    else:
        return None
    for path in (files.ca, files.certificate, files.key):
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such file (create test ones with: trio-replica certs)")
    return files


def member_tls(args: argparse.Namespace, replica: int) -> TlsFiles | None:
    """Replica ``replica``'s TLS files from the options; None with ``--insecure``.

    Raises :class:`UsageError` for files that do not exist, options that
    do not go together, or TLS options next to ``--insecure``.
    """
    files = _files(args, f"replica{replica}")
    if args.insecure and files is not None:
        raise UsageError("--insecure turns TLS off: give it without TLS files")
    return files


def client_tls(args: argparse.Namespace) -> TlsFiles | None:
    """The client's TLS files from the options (None: plain TCP).

    Raises :class:`UsageError` as :func:`member_tls` does.
    """
    return _files(args, args.tls_name)
