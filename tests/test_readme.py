"""README.md's Python examples run as written, in order, from a fresh folder (as a reader would)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2 and "asyncio.run(main())" in BLOCKS[0]


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the README's relative paths, from a fresh folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_LLM="none")  # the LLM has its own tests; here, the code as written
    outputs = []
    for block in BLOCKS:
        proc = subprocess.run(
            [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0].startswith("4 files, ") and ", 0 failures" in outputs[0]
    assert "1987" in outputs[0] and "examples/corpus/about.md" in outputs[0]
    assert "brewing-guide.txt" in outputs[1]
