"""Security checks in the test command: a static security lint, and known vulnerabilities in our pins.

The static lint is ruff's flake8-bandit rules (``S`` in pyproject.toml). Bandit
itself was run over the code once (1.9.4, medium severity and up): its ten
findings were the same SQL-construction, RawSQL and urlopen sites ruff's
S608/S611/S310 report, each already reviewed and marked in the code, so it
would only have needed the same markers a second time in its own syntax.
"""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PINS = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]


def test_the_security_lint_is_on():
    """Its findings fail the whole lint (test_code_style.py), like any other rule's."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]

    assert "S" in lint["select"]


def test_no_pinned_dependency_has_a_known_vulnerability():
    """pip-audit asks PyPI's vulnerability data about each pinned version; skipped, saying so, when it cannot."""
    command = [sys.executable, "-m", "pip_audit", "--no-deps", "--disable-pip", "--progress-spinner", "off"]
    command += ["--format", "json", "--timeout", "15"]
    for pins in PINS:
        command += ["-r", str(pins)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"pip-audit could not reach the vulnerability service: {result.stderr.strip()[-300:]}")

    dependencies = report["dependencies"]
    audited = [dependency for dependency in dependencies if "skip_reason" not in dependency]
    if not audited:
        reason = dependencies[0]["skip_reason"] if dependencies else "no dependency listed"
        pytest.skip(
            f"the vulnerability service answered for none of the {len(dependencies)} pinned packages, "
            f"so nothing was audited (e.g. {reason})"
        )
    vulnerable = {
        f"{dependency['name']}=={dependency['version']}": [vuln["id"] for vuln in dependency["vulns"]]
        for dependency in audited
        if dependency["vulns"]
    }
    assert vulnerable == {}
