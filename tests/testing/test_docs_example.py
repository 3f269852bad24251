"""The complete example in docs/testing.md runs and passes, exactly as written there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def example_source() -> str:
    """The fenced python block of the guide that starts with ``# test_inventory.py``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    examples = [b for b in blocks if b.startswith("# test_inventory.py\n")]
    assert len(examples) == 1, "docs/testing.md must hold exactly one test_inventory.py"
    return examples[0]


def test_the_guide_example_passes_under_pytest(tmp_path: Path) -> None:
    (tmp_path / "test_inventory.py").write_text(example_source())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "test_inventory.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "2 passed" in out
    recovered = re.search(r"(\d+) crash states recovered", out)
    cancelled = re.search(r"cancelled at (\d+) schedule points", out)
    assert recovered is not None and int(recovered.group(1)) > 10, out
    assert cancelled is not None and int(cancelled.group(1)) > 10, out
    print(recovered.group(0), "/", cancelled.group(0))
