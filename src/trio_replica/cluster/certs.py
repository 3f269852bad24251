"""Certificates for a local or test cluster: a CA, and member certificates naming
their identity (:mod:`.tls`) as a URI subject alternative name.

Needs the ``cryptography`` package (the ``certs`` extra:
``pip install 'trio-replica[certs]'``); only ``trio-replica certs``, the
cluster demo and the tests import this module, never a running replica.
``docs/security.md`` gives the equivalent ``openssl`` commands.

Keys are ECDSA P-256 (fast handshakes); certificates are X.509 v3, SHA-256
signed, usable for both TLS server and client authentication (a replica is
both: it accepts connections and opens them).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import TlsFiles
from .tls import client_identity, replica_identity

__all__ = [
    "CA_NAME",
    "Authority",
    "Issued",
    "client_files",
    "issue",
    "new_authority",
    "replica_files",
    "write_cluster_certificates",
]

CA_NAME = "ca.pem"
"""The CA certificate's file name in a directory written by :func:`write_cluster_certificates`."""
_DAY = datetime.timedelta(days=1)


@attrs.frozen
class Authority:
    """A certificate authority: its certificate and private key, PEM."""

    certificate_pem: bytes
    key_pem: bytes


@attrs.frozen
class Issued:
    """A member certificate and its private key, PEM."""

    certificate_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def new_authority(name: str = "trio-replica cluster CA", *, days: int = 365) -> Authority:
    """A new self-signed CA valid from an hour ago for ``days`` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    authority: Authority,
    identity: str,
    *,
    days: int = 365,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A certificate for the member ``identity`` (a URI, :mod:`.tls`) signed by
    ``authority``, valid from an hour ago for ``days`` days unless
    ``not_before``/``not_after`` (UTC) say otherwise (tests make expired ones).

    Raises ``ValueError`` when the authority's PEM does not load.
    """
    ca_key = serialization.load_pem_private_key(authority.key_pem, password=None)
    ca_certificate = x509.load_pem_x509_certificate(authority.certificate_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the CA key is neither an EC nor an RSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    start = not_before or now - datetime.timedelta(hours=1)
    end = not_after or now + days * _DAY
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def replica_files(directory: str | os.PathLike[str], replica: int) -> TlsFiles:
    """The files of replica ``replica`` in a directory written by
    :func:`write_cluster_certificates` (absolute paths)."""
    root = Path(directory).resolve()
    return TlsFiles(
        str(root / CA_NAME),
        str(root / f"replica{replica}.pem"),
        str(root / f"replica{replica}.key"),
    )


def client_files(directory: str | os.PathLike[str], name: str = "client") -> TlsFiles:
    """The files of the client ``name`` in a directory written by
    :func:`write_cluster_certificates` (absolute paths)."""
    root = Path(directory).resolve()
    return TlsFiles(str(root / CA_NAME), str(root / f"{name}.pem"), str(root / f"{name}.key"))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_cluster_certificates(
    directory: str | os.PathLike[str],
    *,
    cluster_id: int,
    replicas: int,
    clients: Sequence[str] = ("client",),
    days: int = 365,
) -> list[Path]:
    """Write a new CA and the certificates of ``replicas`` replicas and of the
    named ``clients`` of cluster ``cluster_id`` into ``directory`` (created
    if missing): ``ca.pem``, ``ca.key``, ``replicaI.pem``/``.key`` and
    ``NAME.pem``/``.key``. Keys are written mode 0600. Returns the paths.

    Raises ``FileExistsError`` when one of the files exists (nothing is
    overwritten; files written before it stay) and ``ValueError`` for a
    client name that is not an identity name.
    """
    root = Path(directory)
    members = [(f"replica{i}", replica_identity(cluster_id, i)) for i in range(replicas)]
    members += [(name, client_identity(cluster_id, name)) for name in clients]
    names = [CA_NAME, "ca.key"] + [f"{n}{ext}" for n, _ in members for ext in (".pem", ".key")]
    for name in names:
        if (root / name).exists():
            raise FileExistsError(f"{root / name} exists; certs never overwrites a file")
    root.mkdir(parents=True, exist_ok=True)
    authority = new_authority(f"trio-replica cluster {cluster_id} CA", days=days)
    _write_new(root / CA_NAME, authority.certificate_pem, 0o644)
    _write_new(root / "ca.key", authority.key_pem, 0o600)
    for name, identity in members:
        issued = issue(authority, identity, days=days)
        _write_new(root / f"{name}.pem", issued.certificate_pem, 0o644)
        _write_new(root / f"{name}.key", issued.key_pem, 0o600)
    return [root / name for name in names]
