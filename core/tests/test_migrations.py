"""Every app's migrations reverse: `migrate <app> zero`, then forward again.

Runs on a throwaway database of its own (created and dropped here), in a
subprocess (``core/tests/migration_roundtrip.py``) pointed at it through
DATABASE_URL, so it neither depends on nor disturbs the test database.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

OUR_APPS = ("core", "integrations", "development", "design", "social", "agents", "analytics")


@pytest.fixture
def throwaway_database_url():
    """A new empty database on the same server; its URL is DATABASE_URL with another name."""
    db = settings.DATABASES["default"]
    name = f"companyos_migrations_{uuid.uuid4().hex[:10]}"
    server = {"host": db["HOST"], "port": db["PORT"] or None, "user": db["USER"], "password": db["PASSWORD"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.slow
def test_every_app_migrates_to_zero_and_forward_again(throwaway_database_url):
    result = subprocess.run(
        [sys.executable, "-m", "core.tests.migration_roundtrip", *OUR_APPS],
        cwd=Path(settings.BASE_DIR),
        env={
            **os.environ,
            "DATABASE_URL": throwaway_database_url,
            "DJANGO_SETTINGS_MODULE": "companyos.config.settings",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "round trip ok" in result.stdout
