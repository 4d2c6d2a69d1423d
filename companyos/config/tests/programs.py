"""The Debian programs some tests drive besides PostgreSQL and Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_program(path: str, package: str) -> None:
    """Skip the calling test, saying how to install ``package``, when ``path`` is missing.

    Under CI (``CI=true``, as ``.ci/run`` sets after installing both packages)
    the test fails instead: there a missing program is a broken setup, and a
    skip would hide the browser and failover tests.
    """
    if Path(path).exists():
        return
    message = f"Debian's {package} is not installed (apt-get install -y {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
