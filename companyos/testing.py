"""Helpers for tests and benchmarks that start other processes."""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection


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
