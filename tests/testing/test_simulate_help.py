"""``python -m trio_replica.testing.simulate --help`` documents every option and its default."""

from __future__ import annotations

import re
import subprocess
import sys


def test_every_option_is_explained_with_its_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_replica.testing.simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    entries: list[str] = []
    for line in done.stdout.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            entries.append(line.strip())
        elif line.startswith("    ") and entries:
            entries[-1] += "  " + line.strip()  # the help text on the next line
    options = []
    for entry in entries:
        spec, _, text = entry.partition("  ")
        name = spec.split()[0].rstrip(",")
        if name != "-h":
            options.append((name, text.strip()))
    named = {name for name, _ in options}
    assert named == {
        "--seed",
        "--ticks",
        "--seeds",
        "--crash-probability",
        "--process-crash-probability",
        "--fsync-failure",
        "--read-error",
        "--read-bitflip",
        "--write-corruption",
        "--lost-write",
        "--misdirected-write",
        "--bit-rot",
        "--bad-sector",
        "--submitters",
        "--trace",
    }
    for name, text in options:
        assert len(text.split()) >= 3, name  # a sentence, not a bare metavar
        if name != "--trace":
            assert re.search(r"\(default: [\d.]+\)$", text), (name, text)
