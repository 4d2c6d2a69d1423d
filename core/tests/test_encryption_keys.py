"""A missing, malformed or wrong FIELD_ENCRYPTION_KEYS fails at start, loudly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings

from companyos.foundation import crypto
from companyos.foundation.checks import check_encryption_keys, verify_encryption_keys
from companyos.foundation.tests.support import current_database_url
from integrations.tests.factories import IntegrationFactory, WebhookFactory

BASE_DIR = Path(settings.BASE_DIR)


@pytest.mark.parametrize("keys", [[], [""], ["not-a-key"], [crypto.generate_key(), "short"]])
def test_build_fernet_refuses_missing_or_malformed_keys(keys):
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        crypto.build_fernet(keys)


def test_build_fernet_never_echoes_the_key():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        crypto.build_fernet(["my-secret-but-malformed-key"])
    assert "my-secret-but-malformed-key" not in str(excinfo.value)


def django_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "companyos.config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize("value", ["not-a-key", ""])
def test_django_refuses_to_start_with_a_malformed_or_missing_key(value):
    # django.setup() is what every entry point (manage.py, ASGI, WSGI) runs first.
    result = django_process("-c", "import django; django.setup()", env={**os.environ, "FIELD_ENCRYPTION_KEYS": value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "FIELD_ENCRYPTION_KEYS" in result.stderr


def test_the_key_check_is_a_system_check_that_runserver_also_runs():
    assert check_encryption_keys in checks.registry.registry.get_checks()
    # Not tagged "database": runserver and every command run it, not only migrate.
    assert checks.Tags.database not in check_encryption_keys.tags


@pytest.mark.django_db
class TestWrongKey:
    def test_the_right_keys_pass(self):
        IntegrationFactory()
        WebhookFactory()
        assert check_encryption_keys() == []
        verify_encryption_keys()

    def test_a_wrong_key_is_an_error_naming_each_column(self):
        IntegrationFactory()
        WebhookFactory()
        with override_settings(FIELD_ENCRYPTION_KEYS=[crypto.generate_key()]):
            errors = check_encryption_keys()
            assert [e.id for e in errors] == ["companyos.E002", "companyos.E002"]
            assert "integrations_integration.credentials" in errors[0].msg
            assert "integrations_webhook.secret" in errors[1].msg
            with pytest.raises(ImproperlyConfigured, match="integrations_integration.credentials"):
                verify_encryption_keys()
            with pytest.raises(SystemCheckError, match="integrations_webhook.secret"):
                call_command("check", tags=["encryption"])

    def test_a_new_key_in_front_of_the_old_one_passes(self, settings):
        IntegrationFactory()
        with override_settings(FIELD_ENCRYPTION_KEYS=[crypto.generate_key(), *settings.FIELD_ENCRYPTION_KEYS]):
            assert check_encryption_keys() == []

    def test_plaintext_in_a_column_is_an_error(self):
        webhook = WebhookFactory()
        with connection.cursor() as cursor:
            cursor.execute("UPDATE integrations_webhook SET secret = 'plaintext!' WHERE id = %s", [webhook.pk])
        (error,) = check_encryption_keys()
        assert "integrations_webhook.secret" in error.msg and "not even encrypted" in error.msg

    def test_empty_tables_pass(self):
        assert check_encryption_keys() == []


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_servers_and_commands_refuse_to_start_with_a_wrong_key():
    """End to end, against committed rows: ASGI, `migrate` and `runserver` stop, naming the column."""
    IntegrationFactory()
    url = current_database_url()

    def run(*args: str, key: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DATABASE_URL": url, "FIELD_ENCRYPTION_KEYS": key}
        return django_process(*args, env=env)

    right_key = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    assert run("-c", "import companyos.config.asgi", key=right_key).returncode == 0

    wrong_key = crypto.generate_key()
    asgi = run("-c", "import companyos.config.asgi", key=wrong_key)
    assert asgi.returncode != 0
    assert "ImproperlyConfigured" in asgi.stderr and "integrations_integration.credentials" in asgi.stderr

    # runserver checks before it binds: with the check passing it would serve (and time out here).
    for command in (["migrate"], ["runserver", "--noreload", "127.0.0.1:0"]):
        result = run("manage.py", *command, key=wrong_key)
        assert result.returncode != 0, command
        assert "companyos.E002" in result.stderr and "integrations_integration.credentials" in result.stderr, command
