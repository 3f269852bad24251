"""``trio-replica certs``: a test CA and member certificates that the transport accepts."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from trio_replica.cli import main
from trio_replica.cluster.certs import client_files, replica_files
from trio_replica.cluster.tls import client_context, server_context


def test_certs_writes_a_ca_and_members_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "certs"
    args = ["certs", str(target), "--cluster-id", "5", "--replicas", "3", "--client", "web"]
    assert main(args) == 0
    assert "3 replica(s)" in capsys.readouterr().out
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(
        ["ca.pem", "ca.key"]
        + [f"{n}.{e}" for n in ("replica0", "replica1", "replica2", "web") for e in ("pem", "key")]
    )
    for key in target.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    # Each member's files load, verify against the CA, and pair key and certificate.
    for files in [replica_files(target, i) for i in range(3)] + [client_files(target, "web")]:
        server_context(files)
        client_context(files)
    text = (target / "replica1.pem").read_bytes()
    names_in = x509.load_pem_x509_certificate(text).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    uris = names_in.value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["trio-replica://5/replica/1"]
    # A second run refuses, and changes nothing.
    assert main(args) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert (target / "replica1.pem").read_bytes() == text
    assert main(["certs", str(tmp_path / "x"), "--cluster-id", "5", "--replicas", "2"]) == 2
    assert main(["certs", str(tmp_path / "y"), "--cluster-id", "5", "--replicas", "1",
                 "--client", "a/b"]) == 2  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_without_cryptography_certs_says_what_to_install(tmp_path: Path) -> None:
    program = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from trio_replica.cli import main\n"
        f"sys.exit(main(['certs', {str(tmp_path / 'c')!r}, '--cluster-id', '1', "
        "'--replicas', '1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 2
    assert "trio-replica[certs]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c").exists()
