"""``open_cluster_client``: submit commands to a cluster, exactly once.

A client registers first (a committed op; its op number is the session),
then sends one request at a time with increasing request numbers. It sends
to the primary it believes in, follows ``Redirect`` hints, and on a timeout
resends the SAME request (same number) and, every other attempt, rotates to
the next replica. Because the cluster caches each session's last reply and
de-duplicates at commit, a retried request is applied once, whatever was
lost: that is what makes :meth:`ClusterClient.submit` safe to retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cbor2
import trio

from .. import codec
from ..errors import CommandEncodingError, InvalidCommand
from .config import ClusterConfig
from .errors import ClusterError
from .header import Operation
from .messages import Eviction, Redirect, Reply, Request
from .transport import Endpoint, Transport, client_address

__all__ = ["ClusterClient", "SessionEvictedError", "open_cluster_client"]


class SessionEvictedError(ClusterError):
    """The cluster evicted this client's session (its client table was full):
    the outcome of ``request`` is unknown (it may or may not have been
    applied). The client registers again on its next submit."""

    def __init__(self, message: str, *, client: int, request: int):
        super().__init__(message)
        self.client = client
        self.request = request


class ClusterClient:
    """A session with a cluster (build with :func:`open_cluster_client`)."""

    def __init__(
        self, config: ClusterConfig, endpoint: Endpoint, client: int, retry_seconds: float
    ):
        self.config = config
        self.client = client
        """This client's id (its address is derived from it)."""
        self.session = 0
        """The op that registered this client (0: not registered yet)."""
        self.retries = 0
        """Requests resent after a timeout, since open."""
        self._endpoint = endpoint
        self._retry = retry_seconds
        self._request = 0
        self._target = 0
        self._lock = trio.Lock()

    async def submit(self, command: Any) -> Any:
        """Have the cluster apply ``command`` exactly once; return its result.

        Waits as long as it takes (wrap it in ``trio.move_on_after`` to bound
        it; a cancelled submit's outcome is unknown, and the next submit moves
        on to a new request number). Raises
        :class:`~trio_replica.errors.InvalidCommand` when the state machine
        rejected the command, :class:`~trio_replica.errors.CommandEncodingError`
        (before sending anything) when CBOR cannot encode it, and
        :class:`SessionEvictedError` when the
        session was evicted while the request was in flight.
        """
        try:
            body, _ = codec.encode(command)
        except codec.UnencodableError as error:
            raise CommandEncodingError(
                f"command is refused: {error.reason}; nothing was sent"
            ) from error
        reply = await self._request_once(Operation.REQUEST, body)
        if reply.rejected is not None:
            raise InvalidCommand(reply.rejected)
        return reply.result

    async def switch_version(self, version: int) -> int:
        """Switch the cluster's state machine to ``version`` at a committed op;
        return that op. Every replica switches at that op (its machine's
        :meth:`~trio_replica.stm.protocol.StateMachine.switch_version` is
        called between the ops before and after it).

        Raises :class:`~trio_replica.errors.InvalidCommand` when the primary
        refuses: ``version`` is not a non-negative integer, or is above the
        version of the primary's own state machine code (nothing committed).
        A replica whose code is older than ``version`` stops at that op with
        :class:`~trio_replica.errors.MachineVersionError`: upgrade every
        replica's code first. Retried safely, like :meth:`submit`.
        """
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"a version is a non-negative int, got {version!r}")
        reply = await self._request_once(Operation.SWITCH_VERSION, cbor2.dumps(version))
        if reply.rejected is not None:
            raise InvalidCommand(reply.rejected)
        return reply.op

    async def _request_once(self, operation: Operation, body: bytes) -> Reply:
        async with self._lock:
            if self.session == 0:
                reply = await self._call(Request(self.client, 0, 0, Operation.REGISTER, b""))
                self.session = int(reply.result)
            self._request += 1
            request = Request(self.client, self.session, self._request, operation, body)
            return await self._call(request)

    async def _call(self, request: Request) -> Reply:
        attempt = 0
        while True:
            self._endpoint.send(self._target, request)
            with trio.move_on_after(self._retry):
                while True:
                    _, message = await self._endpoint.receive()
                    if isinstance(message, Redirect) and message.client == self.client:
                        if message.primary != self._target:
                            self._target = message.primary
                            break  # resend at once to the primary named
                    elif isinstance(message, Eviction) and message.session == request.session:
                        if request.session == 0:
                            continue
                        self.session = 0
                        raise SessionEvictedError(
                            f"session {request.session} of client {self.client} was evicted; "
                            f"request {request.request} may or may not have been applied",
                            client=self.client,
                            request=request.request,
                        )
                    elif isinstance(message, Reply) and message.request == request.request:
                        self._target = message.replica
                        return message
                continue
            attempt += 1
            self.retries += 1
            if attempt % 2 == 0:
                self._target = (self._target + 1) % self.config.replica_count


@asynccontextmanager
async def open_cluster_client(
    config: ClusterConfig,
    *,
    transport: Transport,
    client: int | None = None,
    retry_seconds: float = 0.5,
) -> AsyncIterator[ClusterClient]:
    """A client of ``config``'s cluster on ``transport`` for the block.

    ``client``: this client's id (default: a new one from the transport);
    two clients must never share an id. ``retry_seconds``: how long to wait
    for a reply before resending.

    Raises :class:`ValueError` when the transport knows the replicas'
    addresses (a TCP client transport does) and their number is not
    ``config.replica_count``: the client would count a quorum of the wrong
    size and never reach some replicas.
    """
    addresses = getattr(transport, "addresses", None)
    if addresses is not None and len(addresses) != config.replica_count:
        raise ValueError(
            f"the ClusterConfig says {config.replica_count} replicas but the transport has "
            f"{len(addresses)} address(es): give every replica's address, in replica order"
        )
    ident = transport.new_client_id() if client is None else client
    if ident < 1:
        raise ValueError(f"client ids start at 1, got {ident}")
    endpoint = transport.endpoint(client_address(ident))
    yield ClusterClient(config, endpoint, ident, retry_seconds)
