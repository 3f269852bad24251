"""The README's two quick-start commands, exactly as written, in a fresh copy of the project.

They create their own virtual environment, so they work where the system
Python refuses ``pip install`` (PEP 668). pip's download cache is reused;
the second command's test run is narrowed to one file through
``PYTEST_ADDOPTS`` (it would otherwise run this suite inside itself).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*_cache", ".hypothesis", "demo-data", "_build", "*.egg-info"
)


def readme_commands() -> list[str]:
    """The ``sh`` blocks of the README's quick start, in order."""
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"^```sh\n(.*?)^```", quick_start, flags=re.M | re.S)]


def test_the_readme_has_two_commands_that_make_their_own_environment() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    for command in commands:
        assert "\n" not in command
        assert command.startswith("python3 -m venv .venv && .venv/bin/python -m pip install ")
        assert "sudo" not in command and "--break-system-packages" not in command


def test_the_cluster_demo_command_installs_what_it_needs() -> None:
    """``demo --cluster`` makes certificates with the ``certs`` extra: its
    README command installs that extra in the same virtual environment."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The cluster demo", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/python -m pip install '.[certs]' "
        "&& .venv/bin/trio-replica demo --cluster"
    ]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^certs = \[.*cryptography", pyproject, flags=re.M)


@pytest.mark.slow
def test_the_readme_commands_work_in_a_fresh_copy(tmp_path: Path) -> None:
    project = tmp_path / "trio-replica"
    shutil.copytree(ROOT, project, ignore=_IGNORE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST"))}
    install_and_demo, install_and_test = readme_commands()

    demo = subprocess.run(
        ["bash", "-c", install_and_demo],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "consistency: OK" in demo.stdout
    assert demo.stdout.rstrip().splitlines()[-1].startswith("result: CONSISTENT")

    env["PYTEST_ADDOPTS"] = "-p no:cacheprovider tests/project/test_packaging.py"
    tests = subprocess.run(
        ["bash", "-c", install_and_test],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert re.search(r"\b\d+ passed\b", tests.stdout), tests.stdout[-3000:]
    assert (project / ".venv" / "bin" / "sphinx-build").exists()  # the dev extra: docs tools too
