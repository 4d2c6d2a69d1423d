"""The code is as pyproject.toml's ruff configuration wants it: every lint rule clean, the formatter's layout.

Both checks read the project's whole configuration (its exclusions and
per-file exceptions included), so they fail on what ``ruff check`` and
``ruff format --check`` report in a developer's shell, and on nothing else.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_the_lint_is_clean():
    result = ruff("check", "--output-format", "concise", ".")

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted():
    result = ruff("format", "--check", ".")

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_file_laid_out_by_hand_fails_the_format_check():
    """The check covers the project's modules: one of them, its layout undone, is refused."""
    module = ROOT / "agents" / "services.py"
    squeezed = module.read_text().replace("def tasks_enqueue(\n    *,\n", "def tasks_enqueue(*,\n", 1)
    assert squeezed != module.read_text()

    result = ruff("format", "--check", "--stdin-filename", str(module), "-", stdin=squeezed)

    assert result.returncode == 1, result.stdout + result.stderr
