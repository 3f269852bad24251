"""Mutual TLS on the TCP transport, with real certificates made in the test.

A trio-replica cluster CA comes from ``trustme``; member certificates carrying
URI identities are issued from it by :mod:`trio_replica.cluster.certs`. Every
bad input is refused with a log line naming the peer's address, and the
replica keeps serving its members afterwards.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import cbor2
import pytest
import trio
import trustme

from trio_replica.cluster import (
    ClusterConfig,
    ClusterReplica,
    TlsFiles,
    open_cluster_client,
    open_cluster_replica,
)
from trio_replica.cluster.certs import Authority, issue
from trio_replica.cluster.header import Operation
from trio_replica.cluster.messages import Commit, Request, StartViewChange
from trio_replica.cluster.tcp import (
    FRAME_HEADER,
    PROTOCOL_VERSION,
    TcpReplicaTransport,
    encode_frame,
    open_tcp_client_transport,
    open_tcp_replica_transport,
    parse_address,
    query_status,
)
from trio_replica.cluster.tcp_codec import encode_message
from trio_replica.cluster.tls import (
    TlsConfigError,
    client_context,
    client_identity,
    parse_identity,
    replica_identity,
    server_context,
)
from trio_replica.machines.counter import Counter

CLUSTER = 7


class Certs:
    """A cluster CA (trustme) and member certificates written under ``root``."""

    def __init__(self, root: Path, ca: trustme.CA | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca = ca or trustme.CA()
        self.authority = Authority(self.ca.cert_pem.bytes(), self.ca.private_key_pem.bytes())
        self.ca_path = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._count = 0

    def member(
        self,
        identity: str,
        *,
        trust: Path | None = None,
        not_after: datetime.datetime | None = None,
    ) -> TlsFiles:
        """A certificate for ``identity`` (trusting ``trust``, default this CA)."""
        self._count += 1
        start = None
        if not_after is not None:
            start = not_after - datetime.timedelta(days=2)
        issued = issue(self.authority, identity, not_before=start, not_after=not_after)
        cert = self.root / f"m{self._count}.pem"
        key = self.root / f"m{self._count}.key"
        cert.write_bytes(issued.certificate_pem)
        key.write_bytes(issued.key_pem)
        return TlsFiles(str(trust or self.ca_path), str(cert), str(key))

    def replica(self, i: int, cluster: int = CLUSTER) -> TlsFiles:
        return self.member(replica_identity(cluster, i))

    def client(self, name: str = "c", cluster: int = CLUSTER) -> TlsFiles:
        return self.member(client_identity(cluster, name))


async def _listeners(n: int) -> list[trio.SocketListener]:
    out = []
    for _ in range(n):
        out.extend(await trio.open_tcp_listeners(0, host="127.0.0.1"))
    return out


@asynccontextmanager
async def _tls_cluster(
    tmp_path: Path, certs: Certs
) -> AsyncIterator[tuple[list[str], list[TcpReplicaTransport], list[ClusterReplica]]]:
    listeners = await _listeners(3)
    addresses = [f"127.0.0.1:{lst.socket.getsockname()[1]}" for lst in listeners]
    config = ClusterConfig(cluster_id=CLUSTER, replica_count=3)
    async with AsyncExitStack() as stack:
        transports = []
        replicas = []
        for i in range(3):
            transport = await stack.enter_async_context(
                open_tcp_replica_transport(
                    CLUSTER, addresses, i, listeners=[listeners[i]], tls=certs.replica(i)
                )
            )
            transports.append(transport)
            replicas.append(
                await stack.enter_async_context(
                    open_cluster_replica(
                        tmp_path / f"r{i}", Counter(), config, replica=i, transport=transport
                    )
                )
            )
        yield addresses, transports, replicas


async def _submit(addresses: list[str], tls: TlsFiles | None, values: list[int]) -> list[int]:
    config = ClusterConfig(cluster_id=CLUSTER, replica_count=len(addresses), tls=tls)
    async with (
        open_tcp_client_transport(CLUSTER, addresses, tls=config.tls) as transport,
        open_cluster_client(config, transport=transport) as client,
    ):
        return [await client.submit({"add": v}) for v in values]


def _hello(**who: object) -> bytes:
    return encode_frame(CLUSTER, cbor2.dumps({"protocol": PROTOCOL_VERSION, **who}))


async def _tls_raw(address: str, files: TlsFiles | None, data: bytes) -> bytes:
    """Connect with ``files`` (no certificate when its paths are empty), send
    ``data``, return what came back before the replica closed the connection.

    A TLS 1.3 client finishes its handshake before the server has checked
    its certificate: a refusal then shows as the connection ending (or an
    alert, raised as ``BrokenResourceError``), both an empty answer here.
    """
    host, port = parse_address(address)
    raw = await trio.open_tcp_stream(host, port)
    if files is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = client_context(files)
    stream = trio.SSLStream(raw, context, server_side=False)
    got = b""
    try:
        async with stream:
            await stream.do_handshake()
            await stream.send_all(data)
            with trio.fail_after(10):
                while chunk := await stream.receive_some(4096):
                    got += chunk
    except trio.BrokenResourceError:
        pass
    return got


async def _plain_raw(address: str, data: bytes) -> bytes:
    raw = await trio.open_tcp_stream(*parse_address(address))
    got = b""
    async with raw:
        try:
            await raw.send_all(data)
            with trio.fail_after(10):
                while chunk := await raw.receive_some(4096):
                    got += chunk
        except trio.BrokenResourceError:
            pass
    return got


async def _refused(transport: TcpReplicaTransport, attempt: Callable[[], Awaitable[bytes]]) -> None:
    """``attempt`` gets nothing back (or, for a refused hello, only the
    refusal notice) and the replica counts one more refused connection."""
    before = transport.counters.connections_refused
    got = await attempt()
    assert got == b"" or cbor2.loads(got[FRAME_HEADER.size :])["refused"].startswith("refused")
    with trio.fail_after(10):
        while transport.counters.connections_refused == before:  # noqa: ASYNC110 (the server's side)
            await trio.sleep(0.01)


async def test_a_tls_cluster_commits_and_answers_status(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    async with _tls_cluster(tmp_path, certs) as (addresses, transports, _):
        with trio.fail_after(60):
            assert await _submit(addresses, certs.client(), [1, 2, 3]) == [1, 3, 6]
            # A replica's own certificate is a member too: it may act as a client.
            assert await _submit(addresses, certs.replica(1), [4]) == [10]
            status = await query_status(addresses[0], tls=certs.client("status"), wait_seconds=10)
        assert status["cluster_id"] == CLUSTER
    assert all(t.tls is not None for t in transports)
    assert sum(t.counters.connections_refused for t in transports) == 0


async def test_every_bad_input_is_refused_logged_and_the_replica_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_replica.cluster.tcp")
    certs = Certs(tmp_path / "certs")
    other = Certs(tmp_path / "other")  # another CA
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    async with _tls_cluster(tmp_path, certs) as (addresses, transports, replicas):
        target, replica0 = addresses[0], transports[0]
        with trio.fail_after(120):
            assert await _submit(addresses, certs.client(), [1]) == [1]

            # A certificate from another CA (trusting ours, so only the server can refuse).
            foreign = other.member(replica_identity(CLUSTER, 1), trust=certs.ca_path)
            await _refused(replica0, lambda: _tls_raw(target, foreign, _hello(replica=1)))
            # An expired certificate from the right CA.
            expired = certs.member(client_identity(CLUSTER, "old"), not_after=past)
            await _refused(replica0, lambda: _tls_raw(target, expired, _hello(client=5)))
            # A certificate naming replica 2 saying hello as replica 1.
            await _refused(replica0, lambda: _tls_raw(target, certs.replica(2), _hello(replica=1)))
            # A client's certificate saying hello as a replica.
            await _refused(replica0, lambda: _tls_raw(target, certs.client(), _hello(replica=1)))
            # A certificate of another cluster from the same CA.
            await _refused(
                replica0, lambda: _tls_raw(target, certs.client(cluster=8), _hello(client=5))
            )
            # A client without a certificate.
            await _refused(replica0, lambda: _tls_raw(target, None, _hello(client=5)))
            # A plaintext connection to the TLS port.
            await _refused(replica0, lambda: _plain_raw(target, _hello(client=5)))
            # Garbage bytes.
            await _refused(replica0, lambda: _plain_raw(target, b"\x16\x03\x01\xff\xff" * 200))
            # An oversized frame from an authenticated client.
            huge = FRAME_HEADER.pack(64 * 2**20, CLUSTER.to_bytes(16, "little"), bytes(16))
            await _refused(
                replica0, lambda: _tls_raw(target, certs.client(), _hello(client=5) + huge)
            )

            # An authenticated replica speaking for another one, and a client
            # sending what only replicas send: those messages are dropped.
            dropped = replica0.counters.frames_refused
            forged = [
                encode_frame(CLUSTER, encode_message(StartViewChange(9, 2))),
                encode_frame(CLUSTER, encode_message(Commit(0, 2, 1))),
            ]
            await _tls_raw_until_dropped(
                replica0, target, certs.replica(1), _hello(replica=1) + b"".join(forged)
            )
            as_client = encode_frame(CLUSTER, encode_message(StartViewChange(9, 1)))
            other_client = encode_frame(
                CLUSTER, encode_message(Request(6, 0, 0, Operation.REGISTER, b""))
            )
            await _tls_raw_until_dropped(
                replica0, target, certs.client(), _hello(client=5) + as_client + other_client
            )
            assert replica0.counters.frames_refused == dropped + 4

            # Nothing of it moved the cluster: still view 0, and it still serves members.
            assert await _submit(addresses, certs.client(), [2]) == [3]
            status = await query_status(target, tls=certs.client(), wait_seconds=10)
            assert status["cluster_id"] == CLUSTER
            assert [(r.status.view, r.status.status) for r in replicas] == [(0, "normal")] * 3
    text = caplog.text
    for expected in (
        "unable to get local issuer certificate",
        "certificate has expired",
        "wanted trio-replica://7/replica/1",
        "names trio-replica://7/replica/2",
        "names trio-replica://7/client/c",
        "names trio-replica://8/client/c",
        "did not return a certificate",
        "exceeds the limit",
        "naming replica 2 came from replica 1",
        "a StartViewChange from a client",
        "a request of client 6 on the connection of client 5",
    ):
        assert expected in text, expected
    refusals = [r.getMessage() for r in caplog.records if "refused the connection" in r.message]
    assert len(refusals) >= 5 and all("from 127.0.0.1:" in m for m in refusals)


async def _tls_raw_until_dropped(
    transport: TcpReplicaTransport, address: str, files: TlsFiles, data: bytes
) -> None:
    """Send ``data`` on a TLS connection kept open until the replica dropped its frames."""
    host, port = parse_address(address)
    raw = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(raw, client_context(files), server_side=False)
    frames = data.count(CLUSTER.to_bytes(16, "little")) - 1  # minus the hello
    before = transport.counters.frames_refused
    async with stream:
        await stream.send_all(data)
        while transport.counters.frames_refused < before + frames:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_connecting_sides_refuse_a_replica_that_is_not_who_it_should_be(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica or a client connecting to replica 0 requires replica 0's certificate."""
    caplog.set_level(logging.WARNING, logger="trio_replica.cluster.tcp")
    certs = Certs(tmp_path / "certs")
    other = Certs(tmp_path / "other")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    impostors = {
        "names another replica": certs.replica(2),
        "another CA": other.member(replica_identity(CLUSTER, 0)),
        "expired": certs.member(replica_identity(CLUSTER, 0), not_after=past),
    }
    for label, presented in impostors.items():
        caplog.clear()
        listener = (await _listeners(1))[0]
        address = f"127.0.0.1:{listener.socket.getsockname()[1]}"
        context = server_context(presented)
        context.verify_mode = ssl.CERT_NONE  # the impostor does not care who calls

        async def impostor(raw: trio.SocketStream, context: ssl.SSLContext = context) -> None:
            stream = trio.SSLStream(raw, context, server_side=True)
            try:
                async with stream:
                    await stream.do_handshake()
                    await stream.receive_some(4096)
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, impostor, [listener])
            # A client transport.
            async with open_tcp_client_transport(
                CLUSTER, [address], tls=certs.client()
            ) as transport:
                endpoint = transport.endpoint(transport.new_client_id() + 2**64)
                endpoint.send(0, Request(1, 0, 0, Operation.REGISTER, b""))
                with trio.fail_after(20):
                    while transport.tls_failures == 0:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                assert not transport.connected
            # A replica (1) whose peer 0 is the impostor.
            mine = (await _listeners(1))[0]
            ours = f"127.0.0.1:{mine.socket.getsockname()[1]}"
            async with open_tcp_replica_transport(
                CLUSTER, [address, ours], 1, listeners=[mine], tls=certs.replica(1)
            ) as replica:
                replica.endpoint(1).send(0, StartViewChange(1, 1))
                with trio.fail_after(20):
                    while "refused replica 0" not in caplog.text:  # noqa: ASYNC110
                        await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert f"refused replica 0 at {address}" in caplog.text, label


def test_identities_parse_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    assert parse_identity(replica_identity(5, 2)) is not None
    assert parse_identity("trio-replica://5/replica/x") is None
    assert parse_identity("https://5/replica/1") is None
    assert parse_identity(client_identity(5, "web-1")) is not None
    with pytest.raises(ValueError):
        client_identity(5, "a/b")
    certs = Certs(tmp_path / "certs")
    good = certs.client()
    for files, named in (
        (TlsFiles(str(tmp_path / "missing.pem"), good.certificate, good.key), "missing.pem"),
        (TlsFiles(good.ca, good.certificate, certs.replica(1).key), good.certificate),
    ):
        with pytest.raises(TlsConfigError) as caught:
            client_context(files)
        assert named in str(caught.value) and caught.value.path in str(caught.value)


def test_every_message_between_replicas_names_its_sender() -> None:
    """The transport binds a replica's messages to its connection by their
    ``replica`` field: a new message kind without one would be unbindable."""
    import attrs

    from trio_replica.cluster.tcp import _BETWEEN_REPLICAS

    assert _BETWEEN_REPLICAS
    for kind in _BETWEEN_REPLICAS:
        assert "replica" in attrs.fields_dict(kind), kind.__name__


async def test_members_refused_after_the_handshake_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With TLS 1.3 a client learns that the replica refused its certificate
    only after its own handshake finished: the client transport counts it as
    a TLS failure, and a refused replica's connector warns once per streak
    (its backoff keeps growing) instead of logging every reconnection."""
    caplog.set_level(logging.INFO, logger="trio_replica.cluster.tcp")
    certs = Certs(tmp_path / "certs")
    other = Certs(tmp_path / "other")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    async with _tls_cluster(tmp_path, certs) as (addresses, transports, _):
        expired = certs.member(client_identity(CLUSTER, "old"), not_after=past)
        async with open_tcp_client_transport(CLUSTER, addresses[:1], tls=expired) as transport:
            endpoint = transport.endpoint(transport.new_client_id() + 2**64)
            endpoint.send(0, Request(1, 0, 0, Operation.REGISTER, b""))
            with trio.fail_after(20):
                while transport.tls_failures == 0:  # noqa: ASYNC110
                    await trio.sleep(0.01)
        assert "refuses this client's certificate?" in caplog.text

        # A rogue replica 1 (another CA's certificate naming replica 1) keeps
        # trying to reach replica 0 for a while.
        rogue_listener = (await _listeners(1))[0]
        rogue_address = f"127.0.0.1:{rogue_listener.socket.getsockname()[1]}"
        foreign = other.member(replica_identity(CLUSTER, 1), trust=certs.ca_path)
        refused = transports[0].counters.connections_refused
        first = len(caplog.records)
        async with open_tcp_replica_transport(
            CLUSTER, [addresses[0], rogue_address], 1, listeners=[rogue_listener], tls=foreign
        ) as rogue:
            endpoint = rogue.endpoint(1)
            with trio.fail_after(20):
                while transports[0].counters.connections_refused < refused + 4:
                    endpoint.send(0, StartViewChange(1, 1))
                    await trio.sleep(0.05)
        # Before the cluster shuts down (its replicas then see each other go).
        rogue_says = [r.getMessage() for r in caplog.records[first:]]
    said = [m for m in rogue_says if "refuses this replica?" in m]
    assert len(said) == 1 and said[0].startswith(f"replica 0 at {addresses[0]}")
    # Connected once, then only the one warning: not a line per reconnection.
    assert sum(m == f"connected to replica 0 at {addresses[0]}" for m in rogue_says) == 1
