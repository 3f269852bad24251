"""docs/invariants.md cites tests that exist: every ``tests/...py`` it names is
a file, and every ``::name`` after it is a test function defined there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "invariants.md"


def test_every_cited_test_exists() -> None:
    text = DOC.read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)?)`((?:, `::\w+`)*)", text)
    assert len(cited) >= 20, "the invariants must cite their tests"
    missing = []
    for path, first, more in cited:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
            continue
        names = [first[2:]] if first else []
        names += re.findall(r"`::(\w+)`", more)
        defined = {
            node.name
            for node in ast.walk(ast.parse(file.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        missing += [f"{path}::{name}" for name in names if name not in defined]
    assert missing == []


def test_every_invariant_cites_a_test() -> None:
    sections = re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]
    uncited = [s.splitlines()[0] for s in sections if "`tests/" not in s]
    assert len(sections) >= 10 and uncited == []
