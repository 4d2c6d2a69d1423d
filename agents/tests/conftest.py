"""Fixtures for the agent queue tests: agents, tasks, and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from agents.models import Agent
from agents.tests.factories import AgentFactory
from companyos.foundation.tests.support import current_database_url

BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture
def agent(db) -> Agent:
    return AgentFactory()


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``manage.py run_agent_worker`` processes on the test database.

    They only see committed rows: use them from ``transaction=True`` tests.
    Each process logs to ``process.log_path`` under ``tmp_path``; every process still
    running at the end of the test is killed.
    """
    processes: list[subprocess.Popen] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(processes)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "run_agent_worker", *args],
                cwd=BASE_DIR,
                env={**os.environ, "DATABASE_URL": current_database_url(), "LOG_LEVEL": "INFO", **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process.log_path = log_path
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
