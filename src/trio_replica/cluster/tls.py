"""Mutual TLS for the TCP transport: contexts, identities, and the checks on them.

Every member of a TLS cluster holds a certificate signed by the cluster's
certificate authority (CA). A certificate's identity is a URI subject
alternative name (SAN)::

    trio-replica://CLUSTER_ID/replica/INDEX     a replica (decimal cluster id and index)
    trio-replica://CLUSTER_ID/client/NAME       a client (NAME: letters, digits, ``-_.``)

Both ends of every connection present a certificate and verify the other's
against the CA (TLS 1.2 or later, the standard library's ``ssl`` through
``trio.SSLStream``). Host names are not checked: a cluster is addressed by
``host:port`` and what matters is which member answers, so the identity is
checked instead:

* a replica accepting a connection whose hello claims replica ``i`` requires
  the identity ``replica/i`` of its own cluster (:func:`check_replica_peer`);
* a hello from a client (or a status query) requires any identity of its own
  cluster, client or replica (:func:`check_member`);
* a replica or client connecting to replica ``j`` requires the identity
  ``replica/j`` from the other end (:func:`check_replica_peer`).

What TLS does not stop (a member holding a valid certificate that misbehaves)
is the protocol's business: see ``docs/security.md``.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import attrs

from .config import TlsFiles
from .errors import ClusterError

__all__ = [
    "IDENTITY_SCHEME",
    "Identity",
    "TlsConfigError",
    "TlsIdentityError",
    "check_member",
    "check_replica_peer",
    "client_context",
    "client_identity",
    "identities_of",
    "parse_identity",
    "replica_identity",
    "server_context",
]

IDENTITY_SCHEME = "trio-replica"
"""The URI scheme of member identities."""

_IDENTITY = re.compile(r"trio-replica://([0-9]+)/(replica|client)/([A-Za-z0-9._-]+)")


class TlsConfigError(ClusterError):
    """TLS material that cannot be used: a missing or unreadable file, a key
    that does not match its certificate (``path`` names the file)."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


class TlsIdentityError(ClusterError):
    """A peer whose verified certificate does not name the member it must be
    (``peer`` is its address, ``wanted`` the identity required, ``found`` the
    identities the certificate carries)."""

    def __init__(self, *, peer: str, wanted: str, found: tuple[str, ...]):
        shown = ", ".join(found) or "no trio-replica identity"
        super().__init__(f"certificate of {peer} names {shown}, wanted {wanted}")
        self.peer = peer
        self.wanted = wanted
        self.found = found


@attrs.frozen
class Identity:
    """A parsed member identity: ``role`` is ``"replica"`` or ``"client"``;
    ``name`` is the replica's decimal index or the client's name."""

    cluster_id: int
    role: str
    name: str

    @property
    def uri(self) -> str:
        """The identity as its URI."""
        return f"{IDENTITY_SCHEME}://{self.cluster_id}/{self.role}/{self.name}"


def replica_identity(cluster_id: int, replica: int) -> str:
    """The URI naming replica ``replica`` of cluster ``cluster_id``."""
    return Identity(cluster_id, "replica", str(replica)).uri


def client_identity(cluster_id: int, name: str) -> str:
    """The URI naming the client ``name`` of cluster ``cluster_id``.

    Raises ``ValueError`` when ``name`` has other characters than letters,
    digits, ``-``, ``_`` and ``.``.
    """
    uri = Identity(cluster_id, "client", name).uri
    if parse_identity(uri) is None:
        raise ValueError(f"{name!r} is not a client name (letters, digits, -_.)")
    return uri


def parse_identity(uri: str) -> Identity | None:
    """The identity ``uri`` names, or None when it is not a member identity."""
    match = _IDENTITY.fullmatch(uri)
    if match is None:
        return None
    cluster, role, name = match.groups()
    if role == "replica" and not name.isdigit():
        return None
    return Identity(int(cluster), role, name)


def identities_of(certificate: dict[str, Any] | None) -> tuple[str, ...]:
    """The URI subject alternative names of a verified peer certificate
    (``ssl.SSLObject.getpeercert()``); empty when there is none."""
    if not certificate:
        return ()
    return tuple(
        str(value) for kind, value in certificate.get("subjectAltName", ()) if kind == "URI"
    )


def check_replica_peer(
    certificate: dict[str, Any] | None, *, cluster_id: int, replica: int, peer: str
) -> None:
    """Require the identity of replica ``replica`` of ``cluster_id``.

    Raises :class:`TlsIdentityError` otherwise.
    """
    found = identities_of(certificate)
    wanted = replica_identity(cluster_id, replica)
    if wanted not in found:
        raise TlsIdentityError(peer=peer, wanted=wanted, found=found)


def check_member(certificate: dict[str, Any] | None, *, cluster_id: int, peer: str) -> Identity:
    """The first identity of cluster ``cluster_id`` (client or replica) the
    certificate carries.

    Raises :class:`TlsIdentityError` when it carries none.
    """
    found = identities_of(certificate)
    for uri in found:
        identity = parse_identity(uri)
        if identity is not None and identity.cluster_id == cluster_id:
            return identity
    raise TlsIdentityError(
        peer=peer, wanted=f"{IDENTITY_SCHEME}://{cluster_id}/(replica|client)/...", found=found
    )


def _load(context: ssl.SSLContext, files: TlsFiles) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=files.ca)
    except (OSError, ssl.SSLError) as error:
        raise TlsConfigError(
            f"cannot use {files.ca} as the cluster CA: {error}", path=files.ca
        ) from None
    try:
        context.load_cert_chain(certfile=files.certificate, keyfile=files.key)
    except (OSError, ssl.SSLError) as error:
        raise TlsConfigError(
            f"cannot use the certificate {files.certificate} with the key {files.key}: {error}",
            path=files.certificate,
        ) from None
    return context


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The context a replica accepts connections with: its certificate, and a
    certificate required from every peer, verified against the CA.

    Raises :class:`TlsConfigError` when a file cannot be used.
    """
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), files)


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The context a replica or client connects with: its certificate, and the
    other end's verified against the CA. Host names are not checked (the
    member identity is, by :func:`check_replica_peer`).

    Raises :class:`TlsConfigError` when a file cannot be used.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    return _load(context, files)
