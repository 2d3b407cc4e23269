"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_examples_run_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "rejects.jsonl").exists()


@pytest.mark.parametrize("framework", ["django", "sqlalchemy"])
def test_framework_examples_run(tmp_path: Path, framework: str) -> None:
    """The Django and SQLAlchemy ORM sections, each a complete program of its own (in
    a fresh interpreter: Django is configured once per process)."""
    blocks = re.findall(rf"```python {framework}\n(.*?)```", README, re.S)
    assert len(blocks) == 1
    script = tmp_path / f"{framework}_example.py"
    script.write_text(blocks[0])
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)


def test_quick_start_loads_the_sample(tmp_path: Path) -> None:
    line = next(x for x in README.splitlines() if x.startswith("pip install . && bulkops load"))
    args = line.split("&& ", 1)[1].split()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    sample = ROOT / "examples" / "products.csv"
    args = [str(sample) if a == "examples/products.csv" else a for a in args]
    result = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "inserted" in result.stdout and "20" in result.stdout
    assert (tmp_path / "bulkops.db").exists()


def test_ci_runs_the_readme_test_command() -> None:
    command = "python -m pip install -e '.[test]' && python -m pytest"
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text()
