"""The TCP transport: a real 3-replica cluster on loopback sockets, and what it refuses."""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path

import cbor2
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_replica.cluster import ClusterConfig, open_cluster_client, open_cluster_replica, tcp
from trio_replica.cluster.header import ROOT, Operation, make_header
from trio_replica.cluster.messages import (
    Commit,
    DoViewChange,
    EntryState,
    Prepare,
    Reply,
    Request,
    StartView,
    SuffixEntry,
)
from trio_replica.cluster.tcp import (
    FRAME_HEADER,
    PROTOCOL_VERSION,
    AddressError,
    encode_frame,
    open_tcp_client_transport,
    open_tcp_replica_transport,
    parse_address,
)
from trio_replica.cluster.tcp_codec import MessageDecodeError, decode_message, encode_message
from trio_replica.errors import CommandEncodingError, InvalidCommand
from trio_replica.machines.counter import Counter

CLUSTER = 7


async def _listeners(n: int) -> list[trio.SocketListener]:
    out = []
    for _ in range(n):
        out.extend(await trio.open_tcp_listeners(0, host="127.0.0.1"))
    return out


@asynccontextmanager
async def _tcp_cluster(tmp_path: Path, n: int = 3) -> AsyncIterator[tuple[list[str], list]]:
    listeners = await _listeners(n)
    addresses = [f"127.0.0.1:{lst.socket.getsockname()[1]}" for lst in listeners]
    config = ClusterConfig(cluster_id=CLUSTER, replica_count=n)
    async with AsyncExitStack() as stack:
        transports = []
        replicas = []
        for i in range(n):
            transport = await stack.enter_async_context(
                open_tcp_replica_transport(CLUSTER, addresses, i, listeners=[listeners[i]])
            )
            transports.append(transport)
            replicas.append(
                await stack.enter_async_context(
                    open_cluster_replica(
                        tmp_path / f"r{i}", Counter(), config, replica=i, transport=transport
                    )
                )
            )
        yield addresses, transports


async def test_three_replicas_commit_over_tcp(tmp_path: Path) -> None:
    config = ClusterConfig(cluster_id=CLUSTER, replica_count=3)
    async with _tcp_cluster(tmp_path) as (addresses, _):  # noqa: SIM117
        async with open_tcp_client_transport(CLUSTER, addresses) as ct:
            with trio.fail_after(30):
                async with open_cluster_client(config, transport=ct) as client:
                    results = [await client.submit({"add": 1}) for _ in range(20)]
                    with pytest.raises(InvalidCommand):
                        await client.submit(1)
                    with pytest.raises(CommandEncodingError):
                        await client.submit({"add": object()})
                    assert await client.submit({"add": 0}) == 20  # nothing of it applied
            # Concurrent clients, each on its own transport (one client per transport).
            totals: list[int] = []

            async def load() -> None:
                async with (
                    open_tcp_client_transport(CLUSTER, addresses) as own,
                    open_cluster_client(config, transport=own) as c,
                ):
                    for _ in range(10):
                        totals.append(await c.submit({"add": 1}))

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(load)
    assert results == list(range(1, 21))
    # Every acknowledged add applied exactly once: the totals are 21..60, each once.
    assert sorted(totals) == list(range(21, 61))


async def _raw(address: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; what came back before the replica closed it."""
    host, port = parse_address(address)
    stream = await trio.open_tcp_stream(host, port)
    got = b""
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(4096):
                got += chunk
            return got
    raise AssertionError("the replica did not close the connection")


def _hello(cluster: int, **who: int) -> bytes:
    return encode_frame(cluster, cbor2.dumps({"protocol": PROTOCOL_VERSION, **who}))


def _notice(data: bytes) -> str:
    """The reason of the refusal notice ``data`` holds (one whole frame)."""
    length = struct.unpack_from("<I", data)[0]
    assert len(data) == FRAME_HEADER.size + length, data
    notice = cbor2.loads(data[FRAME_HEADER.size :])
    assert set(notice) == {"refused", "cluster_id"} and notice["cluster_id"] == CLUSTER
    reason: str = notice["refused"]
    return reason


async def test_a_client_of_another_cluster_is_told_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not "no replica is running": the replicas' refusal reaches the client."""
    caplog.set_level(logging.WARNING, logger="trio_replica.cluster.tcp")
    async with (
        _tcp_cluster(tmp_path) as (addresses, _),
        open_tcp_client_transport(CLUSTER + 1, addresses) as ct,
        open_cluster_client(ClusterConfig(CLUSTER + 1, 3), transport=ct) as client,
    ):
        with trio.move_on_after(3):
            await client.submit({"add": 1})
            raise AssertionError("a cluster of another id answered")
        assert ct.refused == "refused a hello for cluster 8 (this is cluster 7)"
    lines = [r for r in caplog.records if "refused this client" in r.getMessage()]
    assert lines and all(r.levelno == logging.WARNING for r in lines)
    # Said once per replica, not once per retry.
    assert len(lines) <= 3


async def test_a_replica_of_another_cluster_is_told_so_and_refusals_are_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stray replica logs at WARNING that it was refused and why (once
    per streak); the refusing replica logs the first refusal of that host at
    WARNING, then only a periodic count."""
    monkeypatch.setattr(tcp, "_REFUSAL_SUMMARY_SECONDS", 1.5)
    caplog.set_level(logging.INFO, logger="trio_replica.cluster.tcp")
    async with _tcp_cluster(tmp_path) as (addresses, transports):
        stray_listener = (await _listeners(1))[0]
        stray_addresses = [addresses[0], f"127.0.0.1:{stray_listener.socket.getsockname()[1]}"]
        async with open_tcp_replica_transport(
            CLUSTER + 1, stray_addresses, 1, listeners=[stray_listener]
        ) as stray:
            endpoint = stray.endpoint(1)
            with trio.fail_after(30):
                while transports[0].counters.connections_refused < 6:
                    endpoint.send(0, Commit(0, 1, 0))
                    await trio.sleep(0.05)
            await trio.sleep(1.6)  # the period ends: the next refusal sums up the quiet ones
            with trio.fail_after(30):
                while "more times" not in caplog.text:
                    endpoint.send(0, Commit(0, 1, 0))
                    await trio.sleep(0.05)
    told = [r for r in caplog.records if "refused this replica" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.WARNING
    assert "refused a hello for cluster 8 (this is cluster 7)" in told[0].getMessage()
    refusals = [r for r in caplog.records if "refused a hello for cluster 8" in r.getMessage()]
    refusals = [r for r in refusals if "closed the connection from" in r.getMessage()]
    assert len(refusals) == 2, [r.getMessage() for r in refusals]
    assert all(r.levelno == logging.WARNING for r in refusals)
    assert "more times from 127.0.0.1" in refusals[1].getMessage()


async def test_refuses_bad_peers_and_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_replica.cluster.tcp")
    config = ClusterConfig(cluster_id=CLUSTER, replica_count=3)
    async with _tcp_cluster(tmp_path) as (addresses, transports):
        target = addresses[0]
        counters = transports[0].counters
        with trio.fail_after(30):
            # Another cluster's hello: refused with a notice saying why, connection closed.
            notice = await _raw(target, _hello(CLUSTER + 1, replica=1))
            assert _notice(notice) == "refused a hello for cluster 8 (this is cluster 7)"
            assert counters.connections_refused == 1
            # Garbage bytes (no valid frame): closed.
            assert await _raw(target, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 40) == b""
            assert counters.connections_refused == 2
            # A hello in another protocol version: closed.
            bad = encode_frame(CLUSTER, cbor2.dumps({"protocol": 99, "replica": 1}))
            assert "did not say hello" in _notice(await _raw(target, bad))
            # An oversized frame after a good hello: closed before its payload is read.
            huge = FRAME_HEADER.pack(64 * 2**20, CLUSTER.to_bytes(16, "little"), bytes(16))
            assert await _raw(target, _hello(CLUSTER, client=99) + huge) == b""
            assert counters.connections_refused == 4
            # A frame with a corrupted checksum: closed.
            frame = bytearray(
                encode_frame(CLUSTER, encode_message(Request(5, 0, 0, Operation.REGISTER, b"")))
            )
            frame[-1] ^= 1
            assert await _raw(target, _hello(CLUSTER, client=5) + bytes(frame)) == b""
            assert counters.connections_refused == 5
            # A well-framed frame of another cluster after a good hello: dropped, connection kept;
            # so is a payload that is not a message.
            refused = counters.frames_refused
            stream = await trio.open_tcp_stream(*parse_address(target))
            async with stream:
                await stream.send_all(
                    _hello(CLUSTER, client=6)
                    + encode_frame(
                        CLUSTER + 1, encode_message(Request(6, 0, 0, Operation.REGISTER, b""))
                    )
                    + encode_frame(CLUSTER, b"\xff\x00 not cbor")
                    + encode_frame(
                        CLUSTER, encode_message(Request(6, 0, 0, Operation.REGISTER, b""))
                    )
                )
                # The last frame is a register: the primary (replica 0, view 0)
                # replies on this connection.
                data = b""
                while len(data) < FRAME_HEADER.size:
                    data += await stream.receive_some(4096)
                length = struct.unpack_from("<I", data)[0]
                while len(data) < FRAME_HEADER.size + length:
                    data += await stream.receive_some(4096)
                reply = decode_message(data[FRAME_HEADER.size : FRAME_HEADER.size + length])
                assert isinstance(reply, Reply) and reply.client == 6
            assert counters.frames_refused == refused + 2
            # The replica still serves clients.
            async with (
                open_tcp_client_transport(CLUSTER, addresses) as ct,
                open_cluster_client(config, transport=ct) as client,
            ):
                assert await client.submit({"add": 3}) == 3
    text = caplog.text
    assert "cluster 8" in text and "127.0.0.1" in text
    assert "exceeds the limit" in text and "checksum" in text


async def test_a_peer_that_does_not_answer_is_retried_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_replica.cluster.tcp")
    listeners = await _listeners(2)
    dead = listeners[1].socket.getsockname()[1]
    await listeners[1].aclose()  # nothing listens there now
    addresses = [f"127.0.0.1:{listeners[0].socket.getsockname()[1]}", f"127.0.0.1:{dead}"]
    async with open_tcp_replica_transport(CLUSTER, addresses, 0, listeners=[listeners[0]]) as t:
        endpoint = t.endpoint(0)
        for _ in range(1000):
            endpoint.send(1, Request(1, 0, 0, Operation.REGISTER, b""))  # never blocks
        await trio.sleep(0.3)
    assert t.counters.messages_dropped > 0
    assert "does not answer" in caplog.text and str(dead) in caplog.text


async def test_a_client_config_must_count_every_address() -> None:
    """ClusterConfig(.., 3) with two addresses (or four) is a clear error,
    not a client that silently counts the wrong quorum."""
    for addresses in (["127.0.0.1:1", "127.0.0.1:2"], [f"127.0.0.1:{p}" for p in range(1, 5)]):
        async with open_tcp_client_transport(CLUSTER, addresses) as ct:
            with pytest.raises(
                ValueError, match=f"3 replicas but the transport has {len(addresses)}"
            ):
                async with open_cluster_client(ClusterConfig(CLUSTER, 3), transport=ct):
                    raise AssertionError("opened")


def test_addresses_parse() -> None:
    assert parse_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parse_address("[::1]:5") == ("::1", 5)
    for bad in ("127.0.0.1", ":80", "host:x", "host:70000"):
        with pytest.raises(AddressError):
            parse_address(bad)


def test_codec_round_trips_messages() -> None:
    h1 = make_header(
        parent=ROOT.checksum,
        op=1,
        view=0,
        client=3,
        request=1,
        operation=Operation.REQUEST,
        body=b"x",
    )
    messages = [
        Request(3, 1, 2, Operation.REQUEST, b"\x01"),
        Reply(0, 1, 3, 2, 9, {"a": [1, 2]}, None),
        Reply(0, 1, 3, 2, 9, None, "no"),
        Prepare(0, 0, 0, h1, b"x"),
        DoViewChange(2, 1, 0, 1, 0, (SuffixEntry(h1, EntryState.FAULTY),)),
        StartView(2, 2, 1, 1, (h1,)),
    ]
    for message in messages:
        assert decode_message(encode_message(message)) == message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_codec_refuses_arbitrary_bytes_with_its_error(data: bytes) -> None:
    with suppress(MessageDecodeError):
        decode_message(data)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(-5, 2**130), st.binary(max_size=100), st.text(max_size=5), st.none()),
        max_size=8,
    )
)
def test_codec_refuses_mistyped_fields(fields: list) -> None:
    for kind in range(15):
        with suppress(MessageDecodeError):
            decode_message(cbor2.dumps([kind, *fields]))


async def test_a_peer_with_other_settings_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    # clients_max must be equal on every replica (the client table is
    # replicated state): a peer whose hello carries another value is refused.
    caplog.set_level(logging.WARNING, logger="trio_replica.cluster.tcp")
    listeners = await _listeners(2)
    addresses = [f"127.0.0.1:{lst.socket.getsockname()[1]}" for lst in listeners]
    async with (
        open_tcp_replica_transport(
            CLUSTER, addresses, 0, listeners=[listeners[0]], settings={"clients_max": 32}
        ) as t0,
        open_tcp_replica_transport(
            CLUSTER, addresses, 1, listeners=[listeners[1]], settings={"clients_max": 64}
        ) as t1,
    ):
        e0, e1 = t0.endpoint(0), t1.endpoint(1)
        with trio.move_on_after(1.0):
            while True:
                e1.send(0, Commit(view=0, replica=1, commit=0))
                await trio.sleep(0.05)
        with trio.move_on_after(0.2) as idle:
            await e0.receive()
        assert idle.cancelled_caught  # nothing got through
        assert t0.counters.connections_refused >= 1
        # A hello with the same settings is accepted.
        same = encode_frame(
            CLUSTER,
            cbor2.dumps(
                {"protocol": PROTOCOL_VERSION, "replica": 1, "settings": {"clients_max": 32}}
            ),
        )
        refused = t0.counters.connections_refused
        stream = await trio.open_tcp_stream(*parse_address(addresses[0]))
        async with stream:
            await stream.send_all(
                same + encode_frame(CLUSTER, encode_message(Commit(view=0, replica=1, commit=9)))
            )
            with trio.fail_after(5):
                _, message = await e0.receive()
        assert message == Commit(view=0, replica=1, commit=9)
        assert t0.counters.connections_refused == refused
    assert "clients_max 64 (here 32)" in caplog.text
