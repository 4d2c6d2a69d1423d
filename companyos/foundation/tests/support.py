"""Helpers for tests and benchmarks that start other processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from dev import free_port


def current_database_url() -> str:
    """The URL of the database this process uses (the test database under pytest).

    Child processes (servers, workers, commands) get it as DATABASE_URL so they
    see the rows the test committed.
    """
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def uvicorn_server(
    app: str = "companyos.config.asgi:application", *, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port; yields the port.

    The server runs in a process group of its own, so that ``--workers``
    children stop with it; its output is shown if it fails to start.
    """
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *args]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            cwd=settings.BASE_DIR,
            env=os.environ if env is None else env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        log = output.read().decode(errors="replace")[-4000:]
                        raise RuntimeError(f"uvicorn did not start:\n{log}") from None
                    time.sleep(0.1)
            yield port
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def manage_py(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``manage.py <args>`` on this process's database and Redis prefix (the test run's) for the block.

    Its output goes to a temporary file, read with ``process.output()``. At
    the end it gets SIGTERM (SIGKILL after 30 s) unless it already exited.
    """
    process_env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        **(env or {}),
    }
    with tempfile.TemporaryDirectory() as directory:
        log_path = os.path.join(directory, "output.log")
        with open(log_path, "ab") as log:  # appending: reading it meanwhile moves no write offset
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "manage.py", *args],
                cwd=settings.BASE_DIR,
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def read_output() -> str:
            with open(log_path, "rb") as log:
                return log.read().decode(errors="replace")

        process.output = read_output
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
