"""The README's Python examples run as written (in a scratch folder)."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO_ROOT


def test_readme_python_blocks_run(tmp_path, stempeg_example):
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "the README shows the Python API"
    for i, code in enumerate(blocks):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"README Python block {i + 1} failed:\n{result.stderr[-2000:]}"
    assert (tmp_path / "separated").is_dir()
