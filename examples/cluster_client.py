"""Submit one JSON command to a running cluster and print the reply.

    python examples/cluster_client.py --tls-dir certs '{"type": "create_stream", "name": "orders"}'
    python examples/cluster_client.py --cluster-id 1 --tls-dir certs \\
        --addresses 127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403 '{"type": ...}'

The defaults match the cluster of the README's "Run a cluster by hand".
``--tls-dir DIR`` is a directory made by ``trio-replica certs`` (the client
presents ``DIR/client.pem``, or ``DIR/NAME.pem`` with ``--tls-name NAME``);
``--insecure`` talks plain TCP to a cluster formatted with ``--insecure``.
Prints the state machine's result as JSON and exits 0; otherwise prints one
line on stderr and exits 1 (the command was rejected by the state machine)
or 2 (bad JSON, bad arguments, or no cluster answered in time). The command
is applied at most once: a reply means exactly once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import trio

from trio_replica.cluster import (
    AddressError,
    ClusterConfig,
    TlsFiles,
    open_cluster_client,
    open_tcp_client_transport,
    parse_address,
)
from trio_replica.errors import InvalidCommand

DEFAULT_ADDRESSES = "127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403"


async def submit(
    cluster_id: int, addresses: list[str], command: Any, wait: float, tls: TlsFiles | None
) -> Any:
    config = ClusterConfig(cluster_id, len(addresses), tls=tls)
    async with (
        open_tcp_client_transport(cluster_id, addresses, tls=config.tls) as transport,
        open_cluster_client(config, transport=transport, retry_seconds=0.5) as client,
    ):
        with trio.move_on_after(wait):
            return await client.submit(command)
        if transport.refused is not None:
            raise NoCluster(f"the replicas refused this client: {transport.refused}")
        if transport.tls_failures and not transport.connected:
            raise NoCluster(
                "the TLS handshake with the replicas failed (a certificate of another CA, "
                "expired, or not the replica at that address; or a cluster without TLS)"
            )
        if not transport.connected:
            raise NoCluster(f"no replica is running at {', '.join(addresses)}")
        raise NoCluster(
            f"no reply within {wait:g} s from the cluster at {', '.join(addresses)} "
            "(is the cluster id right? does it have a majority up?); "
            "the command may or may not be applied"
        )


class NoCluster(Exception):
    pass


def fail(message: str, status: int) -> int:
    print(f"cluster_client: {message}", file=sys.stderr)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description="Submit one JSON command to a cluster.")
    parser.add_argument("command", help="the command, as JSON")
    parser.add_argument("--cluster-id", type=int, default=1)
    parser.add_argument("--addresses", default=DEFAULT_ADDRESSES, help="host:port,...")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a reply")
    parser.add_argument("--tls-dir", help="a directory made by `trio-replica certs`")
    parser.add_argument("--tls-name", default="client", help="the client in --tls-dir")
    parser.add_argument("--insecure", action="store_true", help="plain TCP, no TLS")
    args = parser.parse_args()
    try:
        command = json.loads(args.command)
    except json.JSONDecodeError as error:
        return fail(f"the command is not JSON: {error}", 2)
    if (args.tls_dir is None) == (not args.insecure):
        return fail("give --tls-dir DIR (the cluster's certificates) or --insecure", 2)
    tls = None
    if args.tls_dir is not None:
        root = os.path.abspath(args.tls_dir)
        tls = TlsFiles(
            os.path.join(root, "ca.pem"),
            os.path.join(root, f"{args.tls_name}.pem"),
            os.path.join(root, f"{args.tls_name}.key"),
        )
        for path in (tls.ca, tls.certificate, tls.key):
            if not os.path.isfile(path):
                return fail(f"{path}: no such file", 2)
    # Refused handshakes are summed up in one line below, not logged one by one.
    logging.getLogger("trio_replica").setLevel(logging.CRITICAL)
    addresses = [a.strip() for a in args.addresses.split(",")]
    try:
        for address in addresses:
            parse_address(address)
    except AddressError as error:
        return fail(str(error), 2)
    try:
        result = trio.run(submit, args.cluster_id, addresses, command, args.wait, tls)
    except NoCluster as error:
        return fail(str(error), 2)
    except InvalidCommand as error:
        return fail(f"rejected: {error}", 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
