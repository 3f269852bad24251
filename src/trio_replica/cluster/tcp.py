"""A TCP transport for cluster replicas and clients (the :mod:`.transport` seam).

Wire format (all integers little-endian)::

    frame  = length u32 | cluster_id 16 bytes (u128) | checksum 16 bytes | payload
    length = len(payload); checksum = cluster checksum over cluster_id + payload

The first frame on every connection is a HELLO whose payload is the CBOR map
``{"protocol": 1, "replica": i, "settings": {...}}`` (a replica connecting
to a peer; ``settings`` are the values every replica must share, such as
``clients_max``) or ``{"protocol": 1, "client": id}`` (a client). Every later frame's payload
is one message (:mod:`.tcp_codec`).

Connections and directions:

* Each replica listens on its own address (``trio`` listeners, served in the
  transport's nursery). Replica ``i`` sends to replica ``j`` over ONE
  connection it opens itself (a connector task per peer, reconnecting with
  exponential backoff); it receives from ``j`` over the connection ``j``
  opened. A connection between replicas carries messages one way only.
* Clients connect to the SAME port. A client connection carries requests in
  and replies out, both ways, for as long as it is open.

With TLS (a :class:`~.config.TlsFiles` given), every connection is mutual TLS
before its first frame (:mod:`.tls`): the replica accepting it requires a
certificate from the cluster's CA, and the hello must agree with it (a hello
claiming replica ``i`` needs the certificate of replica ``i``; a client or
status hello needs any certificate of the cluster). The side connecting to
replica ``j`` requires the certificate of replica ``j``. Without TLS the
transport says so at WARNING when it opens.

What the receiver refuses (each logged at WARNING with the peer address,
repeats of one host and reason summed up once a minute; the replica keeps
serving everyone else):

* a hello with another cluster id, another protocol version, or that is not
  a hello, and a replica's hello whose ``settings`` differ from the
  receiver's: a refusal notice (``{"refused": reason, "cluster_id": id}``)
  is sent, so the refused side can say why, and the connection is closed;
* a frame whose length exceeds ``max_frame_bytes`` (the hello: 4 KiB) or
  whose checksum does not verify: the connection is closed (the byte stream
  can no longer be trusted to be framed), the peer reconnects;
* a TLS handshake that fails (no certificate, another CA, an expired
  certificate, plaintext or garbage on a TLS port) or a certificate that does
  not name the member the hello claims: the connection is closed;
* a frame with a valid checksum but another cluster id, a payload that is
  not a well-formed message, or a message the connection may not carry (on a
  replica's connection: only messages between replicas naming that replica
  as their sender; on a client's: only requests of that client): that frame
  is dropped, the connection stays.

Sending never blocks the caller (the consensus task): each peer and each
client connection has a bounded queue of ``queue_size`` encoded frames; when
it is full, or the peer is not connected and the queue filled up meanwhile,
the message is dropped (Viewstamped Replication resends what matters).
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import cbor2
import trio

from ..replica.nursery import task_nursery
from .config import TlsFiles
from .errors import ClusterError
from .header import checksum
from .messages import Eviction, Redirect, Reply, Request
from .tcp_codec import MESSAGE_KINDS, MessageDecodeError, decode_message, encode_message
from .tls import (
    TlsIdentityError,
    check_member,
    check_replica_peer,
    client_context,
    server_context,
)
from .transport import CLIENT_ADDRESS_BASE, client_address

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_HEADER",
    "PROTOCOL_VERSION",
    "AddressError",
    "FrameError",
    "TcpClientTransport",
    "TcpReplicaTransport",
    "encode_frame",
    "format_address",
    "open_tcp_client_transport",
    "open_tcp_replica_transport",
    "parse_address",
    "query_status",
]

log = logging.getLogger("trio_replica.cluster.tcp")

PROTOCOL_VERSION = 1
"""The wire protocol's version, named in every hello."""
FRAME_HEADER = struct.Struct("<I16s16s")
"""length, cluster id, checksum (36 bytes)."""
DEFAULT_MAX_FRAME_BYTES = 8 * 2**20
"""Payloads above this are refused (a journal body is at most 4 MiB by default)."""
HELLO_MAX_BYTES = 4096
"""A hello is tiny: more than this before the peer identified itself is refused."""
_HELLO_TIMEOUT = 5.0
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0
_RECEIVE_BYTES = 65536
_SETTLED_SECONDS = 1.0
"""A connection that ends sooner than this was refused, not lost: backoff keeps growing."""

_TO_CLIENTS = (Reply, Eviction, Redirect)
_BETWEEN_REPLICAS = frozenset(k for k in MESSAGE_KINDS if k not in (Request, *_TO_CLIENTS))
"""What a replica's connection may carry (each names its sender in ``replica``)."""


def _refusal_from_replica(message: Any, replica: int) -> str | None:
    """Why ``message`` may not arrive on replica ``replica``'s connection (None: it may).

    A peer speaks only for itself: a message naming another sender would let
    one member impersonate another (TLS authenticates the connection, this
    binds each message to it)."""
    if type(message) not in _BETWEEN_REPLICAS:
        return f"a {type(message).__name__} is not sent between replicas"
    if message.replica != replica:
        name = type(message).__name__
        return f"a {name} naming replica {message.replica} came from replica {replica}"
    return None


def _refusal_from_client(message: Any, client: int) -> str | None:
    """Why ``message`` may not arrive on client ``client``'s connection (None: it may)."""
    if type(message) is not Request:
        return f"a {type(message).__name__} from a client (clients send requests only)"
    if message.client != client:
        return f"a request of client {message.client} on the connection of client {client}"
    return None


class AddressError(ClusterError, ValueError):
    """A ``host:port`` address that does not parse (``address`` is the text)."""

    def __init__(self, message: str, *, address: str):
        super().__init__(message)
        self.address = address


class FrameError(ClusterError):
    """A byte stream that is not framed as it must be (``peer`` is its address)."""

    def __init__(self, message: str, *, peer: str):
        super().__init__(f"{message} (peer {peer})")
        self.peer = peer
        self.reason = message


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6: ``"[::1]:port"``) as ``(host, port)``.

    Raises :class:`AddressError` for anything else.
    """
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise AddressError(f"{text!r} is not host:port", address=text)
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """The ``host:port`` text of an address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def encode_frame(cluster_id: int, payload: bytes) -> bytes:
    """One frame carrying ``payload`` for cluster ``cluster_id``."""
    ident = cluster_id.to_bytes(16, "little")
    return FRAME_HEADER.pack(len(payload), ident, checksum(ident + payload)) + payload


class _FrameReader:
    """Reads frames off one stream, buffering partial reads."""

    def __init__(self, stream: trio.abc.ReceiveStream, peer: str):
        self._stream = stream
        self._peer = peer
        self._buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            data = await self._stream.receive_some(_RECEIVE_BYTES)
            if not data:
                if self._buffer:
                    raise FrameError("connection closed in the middle of a frame", peer=self._peer)
                return False
            self._buffer += data
        return True

    async def next(self, max_bytes: int) -> tuple[int, bytes] | None:
        """The next (cluster id, payload), or None at a clean end of stream.

        Raises :class:`FrameError` for an oversized frame or a bad checksum.
        """
        if not await self._fill(FRAME_HEADER.size):
            return None
        length, ident, digest = FRAME_HEADER.unpack_from(self._buffer)
        if length > max_bytes:
            raise FrameError(
                f"frame of {length} bytes exceeds the limit of {max_bytes}", peer=self._peer
            )
        end = FRAME_HEADER.size + length
        if not await self._fill(end):
            raise FrameError("connection closed in the middle of a frame", peer=self._peer)
        payload = bytes(self._buffer[FRAME_HEADER.size : end])
        del self._buffer[:end]
        if checksum(ident + payload) != digest:
            raise FrameError("frame checksum does not verify", peer=self._peer)
        return int.from_bytes(ident, "little"), payload


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "?"
    return format_address(str(name[0]), int(name[1])) if isinstance(name, tuple) else str(name)


class _Inbox:
    """A bounded inbox that drops when full (a lossy network under overload)."""

    def __init__(self, size: int):
        self.send, self.receive = trio.open_memory_channel[tuple[int, Any]](size)
        self.dropped = 0

    def deliver(self, source: int, message: Any) -> None:
        try:
            self.send.send_nowait((source, message))
        except trio.WouldBlock:
            self.dropped += 1


@attrs.define
class _Outbox:
    """A bounded queue of encoded frames to one peer or client connection."""

    send: trio.MemorySendChannel[bytes]
    receive: trio.MemoryReceiveChannel[bytes]
    dropped: int = 0

    @classmethod
    def new(cls, size: int) -> _Outbox:
        send, receive = trio.open_memory_channel[bytes](size)
        return cls(send, receive)

    def put(self, frame: bytes) -> None:
        try:
            self.send.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1


async def _read_messages(
    reader: _FrameReader,
    *,
    cluster_id: int,
    peer: str,
    max_bytes: int,
    deliver: Callable[[Any], None],
    counters: TransportCounters,
    refusal: Callable[[Any], str | None] = lambda message: None,
    refused: Callable[[str], None] | None = None,
) -> None:
    """Deliver every well-formed message of the stream until it ends
    (those ``refusal`` has a reason against are dropped and logged). With
    ``refused``, a refusal notice from the replica (it refused our hello)
    is passed to it and ends the stream."""
    while True:
        frame = await reader.next(max_bytes)
        if frame is None:
            return
        ident, payload = frame
        if refused is not None and ident != cluster_id and (notice := _read_notice(payload)):
            # Only a frame that is not ours can be a notice: messages are
            # decoded once, never twice.
            refused(notice)
            return
        if ident != cluster_id:
            counters.frames_refused += 1
            log.warning(
                "dropped a frame for cluster %d from %s (this is cluster %d)",
                ident,
                peer,
                cluster_id,
            )
            continue
        try:
            message = decode_message(payload)
        except MessageDecodeError as error:
            counters.frames_refused += 1
            log.warning("dropped a frame from %s: %s", peer, error.reason)
            continue
        reason = refusal(message)
        if reason is not None:
            counters.frames_refused += 1
            log.warning("dropped a message from %s: %s", peer, reason)
            continue
        counters.messages_received += 1
        deliver(message)


@attrs.define
class TransportCounters:
    """What a TCP transport did since it opened."""

    messages_received: int = 0
    frames_refused: int = 0
    """Frames dropped: another cluster id, not a well-formed message, or a
    message the connection may not carry."""
    connections_refused: int = 0
    """Connections closed: a bad hello, an oversized frame, a bad checksum, a
    failed TLS handshake, a certificate naming another member."""
    messages_dropped: int = 0
    """Messages not sent: an outbound queue was full, or the message could not be encoded."""


_REFUSAL_SUMMARY_SECONDS = 60.0
"""Repeated refusals of one peer host for one reason are summed up this often."""


def _host(peer: str) -> str:
    """The host part of a ``host:port`` peer name (a reconnecting peer's port changes)."""
    return peer.rpartition(":")[0] or peer


class _RefusalLog:
    """Refusals logged without flooding: the first of a peer host for a given
    reason at WARNING, then at most one WARNING per
    ``_REFUSAL_SUMMARY_SECONDS`` counting the ones since (a misconfigured
    peer retries every second or faster, forever)."""

    def __init__(self) -> None:
        # (host, reason) -> (when the last line was logged, refusals not logged since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def warn(self, what: str, peer: str, reason: str) -> None:
        """Log ``"{what} {peer}: {reason}"`` (``what`` e.g. "refused the
        connection from") unless the same host and reason was logged within
        the period; then only count it."""
        key = (_host(peer), reason)
        now = trio.current_time()
        seen = self._seen.get(key)
        if seen is None:
            log.warning("%s %s: %s", what, peer, reason)
            self._seen[key] = (now, 0)
            return
        logged_at, quiet = seen
        if now - logged_at < _REFUSAL_SUMMARY_SECONDS:
            self._seen[key] = (logged_at, quiet + 1)
            return
        log.warning(
            "%s %s: %s (and %d more times from %s in the last %.0f s)",
            what,
            peer,
            reason,
            quiet,
            key[0],
            now - logged_at,
        )
        self._seen[key] = (now, 0)


def _refusal_notice(cluster_id: int, reason: str) -> bytes:
    """The frame a replica sends before closing a connection whose hello it
    refused, so the refused side can say why instead of retrying blind."""
    return encode_frame(cluster_id, cbor2.dumps({"refused": reason, "cluster_id": cluster_id}))


def _read_notice(payload: bytes) -> str | None:
    """The reason of a refusal notice, None when ``payload`` is not one."""
    try:
        notice = cbor2.loads(payload)
    except Exception:
        return None
    if isinstance(notice, dict) and isinstance(notice.get("refused"), str):
        reason: str = notice["refused"]
        return reason
    return None


async def _read_refusal(reader: _FrameReader) -> str | None:
    """On a connection to a replica (which answers nothing but a refusal):
    the refusal's reason, or None when the replica closed it without one.

    Raises :class:`FrameError` for anything that is not framed as it must be."""
    frame = await reader.next(HELLO_MAX_BYTES)
    if frame is None:
        return None
    return _read_notice(frame[1]) or "it answered something that is not a refusal notice"


async def _write_frames(
    stream: trio.abc.SendStream, hello: bytes, outbox: _Outbox, scope: trio.CancelScope
) -> None:
    """Send ``hello`` then the outbox's frames; a broken stream cancels ``scope``
    (the connection's reader ends with it) instead of raising into a group."""
    try:
        if hello:
            await stream.send_all(hello)
        async for frame in outbox.receive:
            await stream.send_all(frame)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        scope.cancel()


def _is_status_hello(payload: bytes) -> bool:
    try:
        hello = cbor2.loads(payload)
    except Exception:
        return False
    return (
        isinstance(hello, dict)
        and hello.get("protocol") == PROTOCOL_VERSION
        and hello.get("status") is True
    )


def _handshake_failure(error: BaseException) -> str:
    """What a failed TLS handshake says (trio wraps the ``ssl`` error)."""
    cause = error.__cause__ or error
    reason = getattr(cause, "reason", None)
    text = str(cause) or type(cause).__name__
    return f"{reason}: {text}" if reason and reason not in text else text


async def _open_tls(
    stream: trio.SocketStream, context: ssl.SSLContext | None, *, server_side: bool
) -> trio.abc.Stream:
    """``stream`` after a TLS handshake with ``context`` (itself when None).

    Raises ``trio.BrokenResourceError`` when the handshake fails and
    ``trio.TooSlowError`` when it takes over the hello timeout.
    """
    if context is None:
        return stream
    tls = trio.SSLStream(stream, context, server_side=server_side)
    with trio.fail_after(_HELLO_TIMEOUT):
        await tls.do_handshake()
    return tls


async def query_status(
    address: str, *, wait_seconds: float = 2.0, tls: TlsFiles | None = None
) -> dict[str, Any]:
    """Ask the replica at ``address`` for its status (a map; ``cluster_id`` included).

    With ``tls``, over mutual TLS (the replica must present a certificate of
    a replica of the cluster's CA). Raises :class:`AddressError` for a bad
    address, ``OSError`` when nothing answers there, ``trio.TooSlowError``
    after ``wait_seconds``, :class:`FrameError` when the answer is not a
    status or the TLS handshake fails, and :class:`~.tls.TlsConfigError`
    when the TLS files cannot be used.
    """
    host, port = parse_address(address)
    context = client_context(tls) if tls is not None else None
    hello = encode_frame(0, cbor2.dumps({"protocol": PROTOCOL_VERSION, "status": True}))
    with trio.fail_after(wait_seconds):
        stream = await trio.open_tcp_stream(host, port)
        try:
            secured = await _open_tls(stream, context, server_side=False)
        except trio.BrokenResourceError as error:
            await stream.aclose()
            raise FrameError(
                f"TLS handshake failed: {_handshake_failure(error)}", peer=address
            ) from None
        async with secured:
            try:
                await secured.send_all(hello)
                frame = await _FrameReader(secured, address).next(HELLO_MAX_BYTES)
            except trio.BrokenResourceError as error:
                raise FrameError(
                    f"the connection broke: {_handshake_failure(error)}", peer=address
                ) from None
    if frame is None:
        hint = "" if tls is not None else " (a replica with TLS answers TLS clients only)"
        raise FrameError(f"the connection closed without a status{hint}", peer=address)
    try:
        answer = cbor2.loads(frame[1])
    except Exception:
        answer = None
    if not isinstance(answer, dict):
        raise FrameError("the answer is not a status map", peer=address)
    return answer


async def _backoff(delay: float) -> float:
    await trio.sleep(delay * (0.5 + random.random() / 2))
    return min(delay * 2, _BACKOFF_MAX)


class _Endpoint:
    """The single endpoint of a TCP transport (the ``Endpoint`` protocol)."""

    def __init__(self, address: int, inbox: _Inbox, send: Callable[[int, Any], None]):
        self.address = address
        self._inbox = inbox
        self._send = send

    def send(self, destination: int, message: Any) -> None:
        """Queue ``message`` for ``destination`` (never blocks; may drop it)."""
        self._send(destination, message)

    async def receive(self) -> tuple[int, Any]:
        """The next (source, message) received (the source is -1: messages name their sender)."""
        return await self._inbox.receive.receive()


class TcpReplicaTransport:
    """Replica ``replica``'s transport: listens, connects to its peers (module docstring)."""

    def __init__(
        self,
        cluster_id: int,
        addresses: Sequence[tuple[str, int]],
        replica: int,
        *,
        nursery: trio.Nursery,
        max_frame_bytes: int,
        queue_size: int,
        tls: TlsFiles | None = None,
        settings: Mapping[str, int] | None = None,
    ):
        self.cluster_id = cluster_id
        self.addresses = tuple(addresses)
        self.replica = replica
        self.tls = tls
        """The TLS files (None: plain TCP)."""
        self._server_tls = server_context(tls) if tls is not None else None
        self._client_tls = client_context(tls) if tls is not None else None
        self.settings = dict(settings or {})
        """Values every replica must share, sent in the hello and compared."""
        self.counters = TransportCounters()
        self.listening: list[str] = []
        """The addresses actually listened on (with the port chosen for port 0)."""
        self._nursery = nursery
        self._max = max_frame_bytes
        self._queue_size = queue_size
        self._inbox = _Inbox(4 * queue_size)
        self._refusals = _RefusalLog()
        self._peers = {j: _Outbox.new(queue_size) for j in range(len(addresses)) if j != replica}
        self._clients: dict[int, _Outbox] = {}
        self._endpoint: _Endpoint | None = None
        self.status: Callable[[], dict[str, Any]] | None = None
        """What a status hello is answered with (set by whoever runs the
        replica; None: status queries are answered with an empty map)."""

    def endpoint(self, address: int) -> _Endpoint:
        """The endpoint of this replica (``address`` must be its index)."""
        if address != self.replica:
            raise ValueError(f"this transport serves replica {self.replica}, not address {address}")
        self._endpoint = _Endpoint(address, self._inbox, self._send)
        return self._endpoint

    def new_client_id(self) -> int:
        """A random client id (a replica transport does not host clients)."""
        return secrets.randbits(63) + 1

    def _send(self, destination: int, message: Any) -> None:
        if destination == self.replica:
            self._inbox.deliver(destination, message)
            return
        outbox = (
            self._peers.get(destination)
            if destination < CLIENT_ADDRESS_BASE
            else self._clients.get(destination)
        )
        if outbox is None:
            self.counters.messages_dropped += (
                1  # a client not connected here (it retries elsewhere)
            )
            return
        try:
            frame = encode_frame(self.cluster_id, encode_message(message))
        except Exception as error:  # a Reply result CBOR cannot encode: drop, and say so
            self.counters.messages_dropped += 1
            log.warning(
                "could not encode a %s for %d: %s", type(message).__name__, destination, error
            )
            return
        before = outbox.dropped
        outbox.put(frame)
        self.counters.messages_dropped += outbox.dropped - before

    async def _connect_peer(self, peer: int) -> None:
        host, port = self.addresses[peer]
        where = format_address(host, port)
        hello = encode_frame(
            self.cluster_id,
            cbor2.dumps(
                {"protocol": PROTOCOL_VERSION, "replica": self.replica, "settings": self.settings}
            ),
        )
        outbox = self._peers[peer]
        delay = _BACKOFF_MIN
        warned: str | None = None
        while True:
            try:
                raw = await trio.open_tcp_stream(host, port)
            except OSError as error:
                if warned != "answer":
                    log.warning(
                        "replica %d at %s does not answer (%s); retrying", peer, where, error
                    )
                    warned = "answer"
                delay = await _backoff(delay)
                continue
            try:
                stream = await self._secure_to_replica(raw, peer, where)
            except (trio.BrokenResourceError, trio.TooSlowError, TlsIdentityError) as error:
                await raw.aclose()
                # Logged once per streak of the same failure, as a peer that does not answer.
                if warned != "tls":
                    log.warning("refused replica %d at %s: %s; retrying", peer, where, error)
                    warned = "tls"
                delay = await _backoff(delay)
                continue
            if warned not in ("closed", "refused"):
                log.info("connected to replica %d at %s", peer, where)
            opened = trio.current_time()
            refused: str | None = None
            broke: BaseException | str = "the connection broke"
            try:
                async with stream, trio.open_nursery() as nursery:
                    # The peer never writes on this connection except a refusal
                    # notice before it closes: reading tells a refusal (and a
                    # close) at once instead of at the next send.
                    nursery.start_soon(_write_frames, stream, hello, outbox, nursery.cancel_scope)
                    try:
                        refused = await _read_refusal(_FrameReader(stream, where))
                    except (OSError, trio.BrokenResourceError, FrameError) as lost:
                        broke = lost
                    nursery.cancel_scope.cancel()
            except (OSError, trio.BrokenResourceError) as lost:
                broke = lost
            if refused is not None:
                if warned != "refused":
                    log.warning(
                        "replica %d at %s refused this replica: %s; retrying",
                        peer,
                        where,
                        refused,
                    )
                    warned = "refused"
            elif trio.current_time() - opened >= _SETTLED_SECONDS:
                log.info("connection to replica %d at %s lost (%s)", peer, where, broke)
                warned, delay = None, _BACKOFF_MIN
            elif warned != "closed":
                # Closed at once: the peer refused this replica (its log says
                # why: a certificate it does not accept, other settings). The
                # backoff keeps growing, and this is said once per streak.
                log.warning(
                    "replica %d at %s closed the connection at once (%s): it refuses "
                    "this replica? retrying",
                    peer,
                    where,
                    broke if isinstance(broke, str) else _handshake_failure(broke),
                )
                warned = "closed"
            delay = await _backoff(delay)

    async def _secure_to_replica(
        self, raw: trio.SocketStream, peer: int, where: str
    ) -> trio.abc.Stream:
        """``raw`` over TLS to replica ``peer`` (itself without TLS).

        Raises ``trio.BrokenResourceError`` (with the reason as its message)
        when the handshake fails, :class:`~.tls.TlsIdentityError` when the
        certificate is not replica ``peer``'s."""
        try:
            stream = await _open_tls(raw, self._client_tls, server_side=False)
        except trio.BrokenResourceError as error:
            raise trio.BrokenResourceError(
                f"TLS handshake failed: {_handshake_failure(error)}"
            ) from None
        if isinstance(stream, trio.SSLStream):
            check_replica_peer(
                stream.getpeercert(), cluster_id=self.cluster_id, replica=peer, peer=where
            )
        return stream

    async def _accept_tls(self, raw: trio.SocketStream, peer: str) -> trio.abc.Stream | None:
        """``raw`` after the server side of a TLS handshake (itself without
        TLS); None when the handshake failed (refused, counted and logged)."""
        try:
            return await _open_tls(raw, self._server_tls, server_side=True)
        except trio.BrokenResourceError as error:
            reason = f"TLS handshake failed: {_handshake_failure(error)}"
        except trio.TooSlowError:
            reason = f"no TLS handshake within {_HELLO_TIMEOUT} s"
        self.counters.connections_refused += 1
        self._refusals.warn("refused the connection from", peer, reason)
        await raw.aclose()
        return None

    def _check_certificate(self, stream: trio.abc.Stream, role: str, ident: int, peer: str) -> None:
        """With TLS, require the certificate to be the member the hello claims.

        Raises :class:`FrameError` when it is not."""
        if not isinstance(stream, trio.SSLStream):
            return
        try:
            if role == "replica":
                check_replica_peer(
                    stream.getpeercert(), cluster_id=self.cluster_id, replica=ident, peer=peer
                )
            else:
                check_member(stream.getpeercert(), cluster_id=self.cluster_id, peer=peer)
        except TlsIdentityError as error:
            raise FrameError(f"refused a hello as {role} {ident}: {error}", peer=peer) from None

    async def _handle(self, raw: trio.SocketStream) -> None:
        peer = _peer_name(raw)
        stream = await self._accept_tls(raw, peer)
        if stream is None:
            return
        reader = _FrameReader(stream, peer)
        async with stream:
            try:
                with trio.move_on_after(_HELLO_TIMEOUT) as hello_scope:
                    first = await reader.next(HELLO_MAX_BYTES)
                if hello_scope.cancelled_caught or first is None:
                    return
                if _is_status_hello(first[1]):
                    self._check_certificate(stream, "status", 0, peer)
                    # Read-only, answered whatever the cluster id (a status tool
                    # need not know it; the answer names it). Nothing else is
                    # accepted on this connection.
                    answer = dict(
                        self.status() if self.status is not None else {"status": "starting"}
                    )
                    answer["cluster_id"] = self.cluster_id
                    await stream.send_all(encode_frame(self.cluster_id, cbor2.dumps(answer)))
                    return
                role, ident = self._check_hello(first, peer)
                self._check_certificate(stream, role, ident, peer)
                if role == "replica":
                    await _read_messages(
                        reader,
                        cluster_id=self.cluster_id,
                        peer=peer,
                        max_bytes=self._max,
                        deliver=lambda m: self._inbox.deliver(ident, m),
                        counters=self.counters,
                        refusal=lambda m: _refusal_from_replica(m, ident),
                    )
                else:
                    await self._serve_client(stream, reader, ident, peer)
            except FrameError as error:
                # Counted before the close, so whoever sees the close sees the count.
                self.counters.connections_refused += 1
                self._refusals.warn("closed the connection from", peer, error.reason)
                if error.reason.startswith("refused"):
                    # A refused hello: tell the peer why (best effort) so its
                    # log says so, instead of it reconnecting blind.
                    with (
                        trio.move_on_after(_HELLO_TIMEOUT),
                        contextlib.suppress(
                            OSError, trio.BrokenResourceError, trio.ClosedResourceError
                        ),
                    ):
                        await stream.send_all(_refusal_notice(self.cluster_id, error.reason))
            except trio.BrokenResourceError as error:
                cause = error.__cause__
                if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
                    # Bytes that are not TLS records of this session (tampering,
                    # or a peer that is not speaking TLS any more). An end
                    # without close_notify is only a peer that went away.
                    self.counters.connections_refused += 1
                    self._refusals.warn(
                        "closed the connection from", peer, _handshake_failure(error)
                    )
            except (OSError, trio.ClosedResourceError):
                pass  # the peer went away; it reconnects if it wants to

    def _check_hello(self, frame: tuple[int, bytes], peer: str) -> tuple[str, int]:
        ident, payload = frame
        if ident != self.cluster_id:
            raise FrameError(
                f"refused a hello for cluster {ident} (this is cluster {self.cluster_id})",
                peer=peer,
            )
        try:
            hello = cbor2.loads(payload)
        except Exception:
            hello = None
        if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL_VERSION:
            raise FrameError(
                f"refused a connection that did not say hello in protocol {PROTOCOL_VERSION}",
                peer=peer,
            )
        replica = hello.get("replica")
        client = hello.get("client")
        if type(replica) is int and 0 <= replica < len(self.addresses) and replica != self.replica:
            # Replicated state must evolve the same way everywhere: a peer
            # formatted with another clients_max would evict other sessions.
            theirs = hello.get("settings") or {}
            if theirs != self.settings:
                differ = ", ".join(
                    f"{key} {theirs.get(key)} (here {self.settings.get(key)})"
                    for key in sorted(set(theirs) | set(self.settings))
                    if theirs.get(key) != self.settings.get(key)
                )
                raise FrameError(
                    f"refused replica {replica}: its settings differ: {differ}; they must be "
                    "equal on every replica (set at format time)",
                    peer=peer,
                )
            return "replica", replica
        if type(client) is int and 1 <= client < 2**127:
            return "client", client
        raise FrameError("refused a hello naming no valid replica or client", peer=peer)

    async def _serve_client(
        self, stream: trio.abc.Stream, reader: _FrameReader, client: int, peer: str
    ) -> None:
        """Read the client's requests here; its replies go out from a writer task.
        Raises :class:`FrameError` (never wrapped in a group) when its stream is bad."""
        address = client_address(client)
        outbox = _Outbox.new(self._queue_size)
        self._clients[address] = outbox
        failure: FrameError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_frames, stream, b"", outbox, nursery.cancel_scope)
                try:
                    await _read_messages(
                        reader,
                        cluster_id=self.cluster_id,
                        peer=peer,
                        max_bytes=self._max,
                        deliver=lambda m: self._inbox.deliver(address, m),
                        counters=self.counters,
                        refusal=lambda m: _refusal_from_client(m, client),
                    )
                except FrameError as error:
                    failure = error
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()
        finally:
            if self._clients.get(address) is outbox:
                del self._clients[address]
        if failure is not None:
            raise failure

    async def _serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self._handle, listeners)


@asynccontextmanager
async def open_tcp_replica_transport(
    cluster_id: int,
    addresses: Sequence[str],
    replica: int,
    *,
    listen: str | None = None,
    listeners: list[trio.SocketListener] | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    queue_size: int = 256,
    tls: TlsFiles | None = None,
    settings: Mapping[str, int] | None = None,
) -> AsyncIterator[TcpReplicaTransport]:
    """Run replica ``replica``'s TCP transport for the block.

    ``addresses`` are every replica's ``host:port`` (index order).
    It listens on ``listen`` (default: its own address), or on the already
    open ``listeners`` (tests open them on port 0). ``settings``: values
    every replica must share (``{"clients_max": n}``), sent in the hello; a
    peer whose hello carries others is refused (logged at WARNING). With
    ``tls`` every
    connection is mutual TLS (module docstring); without, plain TCP, logged
    at WARNING. Raises :class:`AddressError` for an address that does not
    parse, :class:`~.tls.TlsConfigError` when a TLS file cannot be used and
    ``OSError`` when it cannot listen.
    """
    parsed = [parse_address(a) for a in addresses]
    if not 0 <= replica < len(parsed):
        raise ValueError(f"replica {replica} is not in a cluster of {len(parsed)}")
    if tls is None:
        log.warning(
            "replica %d of cluster %d uses plain TCP: anyone who can reach its port can "
            "read its traffic and speak for a member",
            replica,
            cluster_id,
        )
    else:
        server_context(tls)  # a file that cannot be used fails here, before listening
    if listeners is None:
        host, port = parse_address(listen) if listen else parsed[replica]
        listeners = await trio.open_tcp_listeners(port, host=host)
    async with task_nursery() as nursery:  # the caller's error stays itself
        transport = TcpReplicaTransport(
            cluster_id,
            parsed,
            replica,
            nursery=nursery,
            max_frame_bytes=max_frame_bytes,
            queue_size=queue_size,
            tls=tls,
            settings=settings,
        )
        for listener in listeners:
            name = listener.socket.getsockname()
            transport.listening.append(format_address(str(name[0]), int(name[1])))
        nursery.start_soon(transport._serve, listeners)
        for peer in transport._peers:
            nursery.start_soon(transport._connect_peer, peer)
        try:
            yield transport
        finally:
            nursery.cancel_scope.cancel()


class TcpClientTransport:
    """A client's transport: one connection per replica, opened on first send."""

    def __init__(
        self,
        cluster_id: int,
        addresses: Sequence[tuple[str, int]],
        *,
        nursery: trio.Nursery,
        max_frame_bytes: int,
        queue_size: int,
        tls: TlsFiles | None = None,
    ):
        self.cluster_id = cluster_id
        self.addresses = tuple(addresses)
        self._tls = client_context(tls) if tls is not None else None
        self.counters = TransportCounters()
        self.connected: set[int] = set()
        """Replicas this client is connected to now."""
        self.refused: str | None = None
        """Why a replica refused this client's hello (another cluster id, a
        certificate that is not the cluster's), as the replica said in its
        refusal notice; None while none did. Logged at WARNING once per
        replica and streak."""
        self.tls_failures = 0
        """Connections given up because the TLS handshake or the replica's
        certificate failed, or that the replica closed at once after the
        handshake, before answering (it refused this client's certificate);
        each logged at WARNING."""
        self._nursery = nursery
        self._max = max_frame_bytes
        self._queue_size = queue_size
        self._inbox = _Inbox(queue_size)
        self._client = 0
        self._outboxes: dict[int, _Outbox] = {}

    def new_client_id(self) -> int:
        """A random 63-bit client id (clients on many machines must not collide)."""
        return secrets.randbits(63) + 1

    def endpoint(self, address: int) -> _Endpoint:
        """The client's endpoint (``address`` is ``client_address(id)``; one per transport)."""
        if address < CLIENT_ADDRESS_BASE or self._client:
            raise ValueError("a client transport has one client endpoint")
        self._client = address - CLIENT_ADDRESS_BASE
        return _Endpoint(address, self._inbox, self._send)

    def _send(self, destination: int, message: Any) -> None:
        if not 0 <= destination < len(self.addresses):
            self.counters.messages_dropped += 1
            return
        outbox = self._outboxes.get(destination)
        if outbox is None:
            outbox = self._outboxes[destination] = _Outbox.new(self._queue_size)
            self._nursery.start_soon(self._connect, destination, outbox)
        frame = encode_frame(self.cluster_id, encode_message(message))
        before = outbox.dropped
        outbox.put(frame)
        self.counters.messages_dropped += outbox.dropped - before

    async def _connect(self, replica: int, outbox: _Outbox) -> None:
        host, port = self.addresses[replica]
        where = format_address(host, port)
        hello = encode_frame(
            self.cluster_id, cbor2.dumps({"protocol": PROTOCOL_VERSION, "client": self._client})
        )  # sent after the TLS handshake, if any
        delay = _BACKOFF_MIN
        while True:
            try:
                raw = await trio.open_tcp_stream(host, port)
            except OSError as error:
                log.debug("replica %d at %s does not answer (%s)", replica, where, error)
                delay = await _backoff(delay)
                continue
            try:
                stream = await _open_tls(raw, self._tls, server_side=False)
                if isinstance(stream, trio.SSLStream):
                    check_replica_peer(
                        stream.getpeercert(),
                        cluster_id=self.cluster_id,
                        replica=replica,
                        peer=where,
                    )
            except (trio.BrokenResourceError, trio.TooSlowError, TlsIdentityError) as error:
                await raw.aclose()
                reason = (
                    f"TLS handshake failed: {_handshake_failure(error)}"
                    if isinstance(error, trio.BrokenResourceError)
                    else str(error) or "TLS handshake timed out"
                )
                self.tls_failures += 1
                log.warning("refused replica %d at %s: %s", replica, where, reason)
                delay = await _backoff(delay)
                continue
            opened = trio.current_time()
            received = self.counters.messages_received
            refusal: list[str] = []
            refused_by = refusal.append
            self.connected.add(replica)
            try:
                async with stream, trio.open_nursery() as nursery:
                    nursery.start_soon(_write_frames, stream, hello, outbox, nursery.cancel_scope)
                    try:
                        await _read_messages(
                            _FrameReader(stream, where),
                            cluster_id=self.cluster_id,
                            peer=where,
                            max_bytes=self._max,
                            deliver=lambda m: self._inbox.deliver(replica, m),
                            counters=self.counters,
                            refused=refused_by,
                        )
                    except (OSError, trio.BrokenResourceError, FrameError) as error:
                        log.debug("connection to replica %d at %s lost (%s)", replica, where, error)
                    nursery.cancel_scope.cancel()
            finally:
                self.connected.discard(replica)
            if refusal:
                if self.refused != refusal[0]:
                    log.warning(
                        "replica %d at %s refused this client: %s", replica, where, refusal[0]
                    )
                self.refused = refusal[0]
            elif trio.current_time() - opened >= _SETTLED_SECONDS:
                delay = _BACKOFF_MIN
            elif self._tls is not None and self.counters.messages_received == received:
                # In TLS 1.3 the client's handshake ends before the replica has
                # checked the client's certificate; a replica that refuses it
                # closes the connection at once, before any answer.
                self.tls_failures += 1
                log.warning(
                    "replica %d at %s closed the connection at once: it refuses this "
                    "client's certificate? (its log says why)",
                    replica,
                    where,
                )
            delay = await _backoff(delay)


@asynccontextmanager
async def open_tcp_client_transport(
    cluster_id: int,
    addresses: Sequence[str],
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    queue_size: int = 64,
    tls: TlsFiles | None = None,
) -> AsyncIterator[TcpClientTransport]:
    """A client transport to the cluster at ``addresses`` for the block
    (use it with :func:`~trio_replica.cluster.open_cluster_client`).

    With ``tls``, each connection is mutual TLS and the replica at index
    ``j`` must present replica ``j``'s certificate. Raises
    :class:`AddressError` for an address that does not parse and
    :class:`~.tls.TlsConfigError` when a TLS file cannot be used. A replica
    that does not answer (or fails TLS) is retried with backoff; bound a
    submit with ``trio.fail_after`` to give up.
    """
    parsed = [parse_address(a) for a in addresses]
    async with task_nursery() as nursery:  # the caller's error stays itself
        transport = TcpClientTransport(
            cluster_id,
            parsed,
            nursery=nursery,
            max_frame_bytes=max_frame_bytes,
            queue_size=queue_size,
            tls=tls,
        )
        try:
            yield transport
        finally:
            nursery.cancel_scope.cancel()
