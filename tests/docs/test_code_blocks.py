"""Every code block in the README and docs/ is a program that runs, or is marked as text.

A fenced block must say what it is: ``python`` (run as a program, or under
pytest when it starts with ``# test_<name>.py``), ``sh`` (run line by line
with bash), ``text`` (output, diagrams, bytes: not a program) or a MyST
directive (``{...}``). Each program runs in a fresh directory with this
interpreter's environment first on ``PATH``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", flags=re.M | re.S)
# Run by their own tests, which also check what they print.
_COVERED_ELSEWHERE = {
    "# test_inventory.py": "tests/testing/test_docs_example.py",
}
# The README's install commands create a virtual environment and install the
# package: tests/project/test_readme_commands.py runs them in a fresh one.
_README_INSTALL = "python3 -m venv .venv && .venv/bin/python -m pip install"


def _blocks() -> list[tuple[str, int, str, str]]:
    found = []
    for page in PAGES:
        for index, match in enumerate(_FENCE.finditer(page.read_text())):
            language, body = match.group(1).strip(), match.group(2)
            found.append((str(page.relative_to(ROOT)), index, language, body))
    return found


BLOCKS = _blocks()
PROGRAMS = [
    pytest.param(language, body, id=f"{page}#{index}")
    for page, index, language, body in BLOCKS
    if language in ("python", "sh")
    and not body.startswith(tuple(_COVERED_ELSEWHERE))
    and not body.startswith(_README_INSTALL)
]


def test_every_block_says_what_it_is() -> None:
    unmarked = [
        f"{page} block {index}: {language!r}"
        for page, index, language, _ in BLOCKS
        if language not in ("python", "sh", "text") and not language.startswith("{")
    ]
    assert unmarked == []
    assert len(PROGRAMS) >= 3  # the README's API program, the guide's, the simulator's


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.mark.parametrize(("language", "body"), PROGRAMS)
def test_the_block_runs(language: str, body: str, tmp_path: Path) -> None:
    if language == "python" and body.startswith("# test_"):
        name = body.split("\n", 1)[0][2:].strip()
        (tmp_path / name).write_text(body)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
    elif language == "python":
        (tmp_path / "program.py").write_text(body)
        command = [sys.executable, "program.py"]
    else:
        command = ["bash", "-e", "-u", "-o", "pipefail", "-c", body]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=180, env=_environment()
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
