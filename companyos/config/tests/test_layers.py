"""The import contracts in .importlinter hold, and they catch an import that breaks them."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def root_packages() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser["importlinter"]["root_packages"].split()


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    # lint-imports analyses the packages found from its working directory.
    return subprocess.run([LINT_IMPORTS, "--no-cache", CONFIG], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr


def test_an_import_against_the_layers_breaks_the_contracts(tmp_path):
    for package in root_packages():
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    # The platform reaching up into a domain, and a domain into its neighbour.
    (tmp_path / "companyos" / "foundation" / "reaches_up.py").write_text("import agents.models\n")
    (tmp_path / "design" / "reaches_across.py").write_text("import social.models\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "companyos.foundation.reaches_up -> agents.models" in result.stdout
    assert "design.reaches_across -> social.models" in result.stdout
