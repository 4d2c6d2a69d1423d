"""Settings are safe by default and pass ``check --deploy`` when configured for production.

Each case imports the settings in a fresh interpreter with an environment we
control (``ENV_FILE=/dev/null`` hides the local .env), since settings are read
once per process.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import environ
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]


def settings_variables() -> set[str]:
    """Every variable companyos/config/settings.py reads through django-environ."""
    source = (ROOT / "companyos" / "config" / "settings.py").read_text()
    return set(re.findall(r'\benv(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', source))


def url_of_test_database() -> str:
    """A URL for the test database, so the subprocess's start-up checks can read it."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def run_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run a Python command with only these settings (nothing from .env or our environment)."""
    base = {key: value for key, value in os.environ.items() if key not in settings_variables()}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "ENV_FILE": "/dev/null", "DJANGO_SETTINGS_MODULE": "companyos.config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def required_settings() -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": url_of_test_database(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
    }


PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0)"
)


@pytest.mark.django_db
def test_check_deploy_reports_no_issues_with_production_settings():
    production = {**required_settings(), "DEBUG": "False", "ALLOWED_HOSTS": "companyos.example.com"}

    result = run_with(production, "manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_debug_is_off_and_cookies_secure_unless_asked_for():
    result = run_with(required_settings(), "-c", PRINT_SETTINGS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "True"]


@pytest.mark.django_db
def test_debug_true_relaxes_the_https_defaults_for_local_work():
    result = run_with({**required_settings(), "DEBUG": "True"}, "-c", PRINT_SETTINGS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False", "False", "False"]


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL"])
def test_settings_without_a_required_variable_fail_at_start_naming_it(missing):
    env = {key: value for key, value in required_settings().items() if key != missing}

    result = run_with(env, "-c", PRINT_SETTINGS)

    assert result.returncode != 0
    assert f"Set the {missing} environment variable" in result.stderr


@pytest.mark.django_db
def test_test_database_name_derives_from_database_url():
    configured = environ.Env.db_url_config(os.environ["DATABASE_URL"])["NAME"]

    assert connection.settings_dict["NAME"].startswith(f"test_{configured}")
