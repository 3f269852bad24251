"""The metadata state machine of a streaming server, served over TCP.

One replica; one Trio task per connection, all submitting to it. The
protocol is one JSON object per line each way:

    -> {"type": "create_stream", "name": "orders"}
    <- {"ok": true, "op": 1, "result": {"id": 1, "name": "orders", "created_op": 1}}
    -> {"type": "delete_stream", "stream": "nope"}
    <- {"ok": false, "op": 2, "error": "delete_stream: stream 'nope' does not exist"}
    -> {"query": "describe"}
    <- {"ok": true, "result": {"streams": 1, "topics": 0, ...}}

A command is acknowledged only once it is durable and applied. The server
listens on 127.0.0.1 only.

    python examples/metadata_server.py                         # self-contained demonstration
    python examples/metadata_server.py serve --dir DIR --port 7400
    python examples/metadata_server.py client --port 7400 '{"type": "create_stream", "name": "a"}'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from typing import Any

import trio

from trio_replica import CommandEncodingError, InvalidCommand, ReplicaError, open_replica
from trio_replica.machines.metadata import MetadataStateMachine

HOST = "127.0.0.1"
MAX_LINE = 64 * 1024  # a longer request is refused and the connection closed


class LineStream:
    """Newline-delimited messages over a Trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def receive_line(self) -> bytes | None:
        """The next line without its newline; None at end of stream."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE:
                raise ValueError(f"line longer than {MAX_LINE} bytes")
            chunk = await self.stream.receive_some()
            if not chunk:
                return None
            self._buffer += chunk

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send ``message`` as one line of JSON."""
        await self.stream.send_all(json.dumps(message).encode() + b"\n")


async def handle_request(
    replica: Any, machine: MetadataStateMachine, line: bytes
) -> dict[str, Any]:
    """Answer one request line."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    if isinstance(request, dict) and "query" in request:
        if request["query"] == "describe":
            return {"ok": True, "result": machine.describe()}
        return {"ok": False, "error": f"unknown query {request['query']!r}"}
    try:
        applied = await replica.execute(request)
    except InvalidCommand as exc:
        # Rejected, but journaled like any command: exc.op is where.
        return {"ok": False, "op": exc.op, "error": exc.reason}
    except CommandEncodingError as exc:
        # Refused before journaling (too large, too deeply nested): no op.
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "op": applied.op, "result": applied.result}


async def serve(
    directory: str,
    *,
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the replica in ``directory`` and serve it on ``HOST:port`` until cancelled.

    Reports the port actually bound (useful with ``port=0``) through ``task_status``.
    """
    machine = MetadataStateMachine()
    async with open_replica(directory, machine, snapshot_every=1000) as replica:

        async def connection(stream: trio.SocketStream) -> None:
            """Serve one client: requests in order, each answered before the next is read."""
            lines = LineStream(stream)
            async with stream:
                while True:
                    try:
                        line = await lines.receive_line()
                    except ValueError as exc:
                        await lines.send_json({"ok": False, "error": str(exc)})
                        return
                    if line is None:
                        return
                    await lines.send_json(await handle_request(replica, machine, line))

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, connection, port, host=HOST))
            task_status.started(listeners[0].socket.getsockname()[1])


class Client:
    """A connection to the metadata server: one request, one reply, in order."""

    def __init__(self, lines: LineStream) -> None:
        self._lines = lines

    @classmethod
    async def connect(cls, port: int) -> Client:
        """Connect to the server on ``HOST:port``."""
        return cls(LineStream(await trio.open_tcp_stream(HOST, port)))

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        await self._lines.send_json(message)
        line = await self._lines.receive_line()
        if line is None:
            raise ConnectionError("the server closed the connection")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def aclose(self) -> None:
        """Close the connection."""
        await self._lines.stream.aclose()


async def demonstrate() -> None:
    """Start a server on an ephemeral port, talk to it from three clients, check."""
    with tempfile.TemporaryDirectory(prefix="metadata-") as directory:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, directory)
            print(f"serving {directory} on {HOST}:{port}")

            async def team(name: str) -> None:
                """One client setting up a stream for team ``name``."""
                client = await Client.connect(port)
                requests: list[dict[str, Any]] = [
                    {"type": "create_stream", "name": name},
                    {"type": "create_topic", "stream": name, "name": "events", "partitions": 3},
                    {
                        "type": "create_user",
                        "username": f"{name}-admin",
                        "permissions": ["manage_streams"],
                    },
                    {
                        "type": "create_consumer_group",
                        "stream": name,
                        "topic": "events",
                        "name": "billing",
                    },
                    {
                        "type": "join_consumer_group",
                        "stream": name,
                        "topic": "events",
                        "group": "billing",
                        "member": "worker-1",
                    },
                    {"type": "delete_stream", "stream": name},  # refused: it still has a topic
                ]
                for request in requests:
                    reply = await client.request(request)
                    print(f"{name:>9} {request['type']:<22} -> {json.dumps(reply)}")
                    assert reply["ok"] == (request["type"] != "delete_stream"), reply
                await client.aclose()

            async with trio.open_nursery() as teams:
                for name in ("orders", "payments", "shipping"):
                    teams.start_soon(team, name)

            client = await Client.connect(port)
            bad = await client.request({"type": "create_widget"})
            print(f"unknown command -> {json.dumps(bad)}")
            summary = await client.request({"query": "describe"})
            print(f"state: {json.dumps(summary['result'])}")
            assert summary["result"]["streams"] == 3
            assert summary["result"]["group_members"] == 3
            await client.aclose()
            nursery.cancel_scope.cancel()
    print("ok")


async def run_client(port: int, requests: list[Any]) -> None:
    """Send each request in turn and print each reply as one line of JSON."""
    client = await Client.connect(port)
    try:
        for request in requests:
            print(json.dumps(await client.request(request)), flush=True)
    finally:
        await client.aclose()


def _parse_requests(texts: list[str]) -> list[Any]:
    """The JSON requests given on the command line; ValueError names a bad one."""
    requests = []
    for number, text in enumerate(texts, start=1):
        try:
            requests.append(json.loads(text))
        except ValueError as exc:
            raise ValueError(f"request {number} is not JSON ({exc}): {text!r}") from None
    return requests


def _fail(prog: str, message: str, status: int) -> None:
    """Exit with one line on stderr, the way every error of this example ends."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(status)


def main() -> None:
    """The demonstration, or ``serve`` / ``client`` mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode")
    serve_parser = modes.add_parser("serve", help="serve a data directory until Ctrl-C")
    serve_parser.add_argument("--dir", required=True)
    serve_parser.add_argument("--port", type=int, default=7400)
    client_parser = modes.add_parser("client", help="send JSON requests, print the replies")
    client_parser.add_argument("--port", type=int, default=7400)
    client_parser.add_argument("requests", nargs="+", metavar="JSON")
    args = parser.parse_args()
    if args.mode == "serve":
        print(f"serving {args.dir} on {HOST}:{args.port} (Ctrl-C stops)", flush=True)
        try:
            trio.run(lambda: serve(args.dir, port=args.port))
        except KeyboardInterrupt:
            print("stopped")
        except ReplicaError as exc:
            # A directory in use, damaged or unreadable: the library's message
            # names the file and what to do; no traceback.
            _fail(serve_parser.prog, f"cannot open {args.dir}: {exc}", 1)
        except OSError as exc:
            _fail(
                serve_parser.prog, f"cannot serve on {HOST}:{args.port}: {exc.strerror or exc}", 1
            )
    elif args.mode == "client":
        try:
            requests = _parse_requests(args.requests)
        except ValueError as exc:
            _fail(client_parser.prog, str(exc), 2)
        try:
            trio.run(run_client, args.port, requests)
        except OSError as exc:
            # trio raises OSError for a refused connection, ConnectionError for a cut one.
            reason = exc.strerror or str(exc) or type(exc).__name__
            _fail(
                client_parser.prog,
                f"no answer from {HOST}:{args.port}: {reason} (is a server running? start "
                f"one with: python examples/metadata_server.py serve --dir DIR --port {args.port})",
                1,
            )
    else:
        trio.run(demonstrate)


if __name__ == "__main__":
    main()
