"""Print the path of the newest Python on this machine that the project supports.

Supported means listed in pyproject.toml's "Programming Language :: Python ::
3.N" classifiers. Candidates are python3.N on PATH and in pyenv's versions
directory; one counts only if it runs and can create a virtual environment.
Prints the running interpreter's ``python3`` path when nothing newer is found.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def supported() -> list[tuple[int, int]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = []
    for classifier in project["classifiers"]:
        match = re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", classifier)
        if match:
            found.append((3, int(match.group(1))))
    return sorted(found)


def candidates(minor: int) -> list[str]:
    name = f"python3.{minor}"
    paths = [shutil.which(name)]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    paths += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"3.{minor}.*", "bin", name)))
    return [p for p in paths if p]


def works(path: str, version: tuple[int, int]) -> bool:
    probe = "import sys, venv, ensurepip; print('{}.{}'.format(*sys.version_info[:2]))"
    try:
        done = subprocess.run([path, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == f"{version[0]}.{version[1]}"


def main() -> None:
    current = sys.version_info[:2]
    for version in reversed(supported()):
        if version <= current:
            break
        for path in candidates(version[1]):
            if works(path, version):
                print(path)
                return
    print(shutil.which("python3") or sys.executable)


if __name__ == "__main__":
    main()
