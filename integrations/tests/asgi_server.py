"""A real ASGI server process (uvicorn) on loopback, for end-to-end tests and the benchmark."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from companyos.foundation.tests import support
from companyos.foundation.tests.support import current_database_url


@contextmanager
def uvicorn_server(
    app: str = "companyos.config.asgi:application", *, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[str]:
    """Serve ``app`` on the test database; yields ``http://127.0.0.1:<port>``."""
    process_env = {**os.environ, "DATABASE_URL": current_database_url(), **(env or {})}
    args = ["--no-access-log", "--lifespan", "off", "--workers", str(workers)]
    with support.uvicorn_server(app, env=process_env, args=args) as port:
        yield f"http://127.0.0.1:{port}"
