"""The runnable examples: each runs as a script and exits 0; the server's protocol in process."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_counter_runs_and_recovers() -> None:
    out = run_example("counter.py").stdout
    assert "10 clients added 1..200: total 20100 at op 201" in out
    assert "rejected, and still serving" in out
    assert "opened " in out and ": total 0; recovered an empty data directory in " in out
    assert re.search(
        r"reopened: total 20100; recovered to op 201 in [\d.]+ ms: snapshot at op 200 \+ "
        r"1 op replayed \(1 rejected again, as when first applied\)",
        out,
    ), out


def test_counter_keeps_its_total_across_processes(tmp_path: Path) -> None:
    run_example("counter.py", "--dir", str(tmp_path / "data"))
    out = run_example("counter.py", "--dir", str(tmp_path / "data")).stdout
    assert re.search(r": total 20100; recovered to op 201 in [\d.]+ ms: snapshot at op 200", out)
    assert "reopened: total 40200" in out


def test_metadata_server_demonstration_runs() -> None:
    out = run_example("metadata_server.py").stdout
    assert "serving " in out and " on 127.0.0.1:" in out
    assert '"streams": 3' in out and '"group_members": 3' in out
    assert out.splitlines()[-1] == "ok"
    # Every reply is printed whole, as JSON (never cut, never a Python repr).
    replies = [line.split(" -> ", 1)[1] for line in out.splitlines() if " -> " in line]
    assert len(replies) == 19
    for reply in replies:
        assert isinstance(json.loads(reply), dict)
    state = next(line for line in out.splitlines() if line.startswith("state: "))
    assert json.loads(state.removeprefix("state: "))["streams"] == 3


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "metadata_server.py"), "client", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_metadata_client_errors_are_one_line(tmp_path: Path) -> None:
    not_json = _client("--port", "1", "{nope")
    assert not_json.returncode == 2 and not_json.stdout == ""
    [line] = not_json.stderr.splitlines()
    assert line.startswith("metadata_server.py client: error: request 1 is not JSON")
    # Nothing listens on a port we just bound and closed.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nobody = _client("--port", str(port), '{"query": "describe"}')
    assert nobody.returncode == 1 and nobody.stdout == ""
    [line] = nobody.stderr.splitlines()
    assert line.startswith(f"metadata_server.py client: error: no answer from 127.0.0.1:{port}")
    assert "is a server running?" in line


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_metadata_server_protocol(tmp_path: Path) -> None:
    server = _load("metadata_server")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve, str(tmp_path / "data"))
        client = await server.Client.connect(port)
        created = await client.request({"type": "create_stream", "name": "orders"})
        assert created == {
            "ok": True,
            "op": 1,
            "result": {"id": 1, "name": "orders", "created_op": 1},
        }
        duplicate = await client.request({"type": "create_stream", "name": "orders"})
        assert duplicate["ok"] is False and "orders" in duplicate["error"]
        assert duplicate["op"] == 2
        # The rejected command was journaled too: the next op is 3.
        topic = await client.request(
            {"type": "create_topic", "stream": "orders", "name": "t", "partitions": 2}
        )
        assert topic["ok"] is True and topic["op"] == 3
        described = await client.request({"query": "describe"})
        assert described["result"]["streams"] == 1 and described["result"]["partitions"] == 2
        # A command the replica refuses before journaling (nested too deeply
        # to encode safely) is an error reply, not a crash of the server.
        deep: Any = {"type": "create_stream", "name": "deep"}
        for _ in range(300):
            deep = {"x": deep}
        refused = await client.request(deep)
        assert refused["ok"] is False and "nested deeper" in refused["error"]
        assert "op" not in refused
        after = await client.request({"type": "create_stream", "name": "after"})
        assert after["ok"] is True and after["op"] == 4
        await client.aclose()

        # Raw bytes: a line that is not JSON, then one that is far too long.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        lines = server.LineStream(stream)
        await stream.send_all(b"{nope\n")
        reply = json.loads(await lines.receive_line())
        assert reply["ok"] is False and reply["error"].startswith("not JSON")
        await stream.send_all(b"x" * (server.MAX_LINE + 10))
        reply = json.loads(await lines.receive_line())
        assert reply == {"ok": False, "error": f"line longer than {server.MAX_LINE} bytes"}
        assert await lines.receive_line() is None  # the server closed the connection
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_metadata_server_on_a_directory_in_use_is_one_line(tmp_path: Path) -> None:
    """A second server on a directory a replica holds: one line naming it, no traceback."""
    from trio_replica import open_replica
    from trio_replica.machines.metadata import MetadataStateMachine

    directory = tmp_path / "data"
    async with open_replica(directory, MetadataStateMachine()):
        proc = await trio.run_process(
            [sys.executable, str(EXAMPLES / "metadata_server.py"), "serve", "--dir", directory],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 1
    [line] = proc.stderr.decode().splitlines()
    assert line.startswith(f"metadata_server.py serve: error: cannot open {directory}: ")
    assert "Traceback" not in proc.stderr.decode()


def test_cluster_example_survives_killed_primaries() -> None:
    out = run_example("cluster.py").stdout
    assert out.count("SIGKILLed the primary") == 2
    assert out.count("the cluster answered again after") == 2
    assert "exit statuses [0, 0, 0]" in out
    assert out.count("verify replica") == 3 and out.count(": clean:") == 3
    assert out.splitlines()[-1] == "ok"


def _cluster_client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "cluster_client.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cluster_client_errors_are_one_line() -> None:
    bad = _cluster_client("{not json")
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # Nothing listens on these ports (bound and released just now).
    import socket

    ports = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    none = _cluster_client(
        "--addresses", addresses, "--wait", "1", "--insecure", '{"type": "x"}'
    )  # fmt: skip
    assert none.returncode == 2 and "no replica is running" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1
    # Neither TLS files nor --insecure; TLS files that are not there.
    unsure = _cluster_client("--addresses", addresses, '{"type": "x"}')
    assert unsure.returncode == 2 and "--tls-dir" in unsure.stderr
    missing = _cluster_client("--tls-dir", "no-such-dir", '{"type": "x"}')
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
