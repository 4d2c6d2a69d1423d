"""A real ASGI server process (uvicorn) on loopback, for end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from companyos.testing import current_database_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def uvicorn_server(
    app: str = "companyos.asgi:application", *, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    process_env = {**os.environ, "DATABASE_URL": current_database_url(), **(env or {})}
    log = Path(f"/tmp/uvicorn-{port}.log")  # noqa: S108 - a throwaway log for failures
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-access-log", "--lifespan", "off", "--workers", str(workers)]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=process_env, stdout=output, stderr=subprocess.STDOUT
        )  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
