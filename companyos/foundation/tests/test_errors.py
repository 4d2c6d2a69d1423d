"""Debug error pages show no secret: passwords inside URLs are hidden like Django hides *_KEY settings."""

import sys

import pytest
from django.test import RequestFactory
from django.views.debug import technical_500_response

REDIS_PASSWORD = "redis-pw-4f9a1c"  # noqa: S105 - a test value, looked for in the page
DATABASE_PASSWORD = "db-pw-77e0b2"  # noqa: S105


@pytest.fixture
def secrets_in_settings(settings):
    redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    settings.REDIS_URL = redis_url
    settings.CACHES = {alias: {**config, "LOCATION": redis_url} for alias, config in settings.CACHES.items()}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "x", "CONFIG": {"hosts": [redis_url]}}}
    settings.REPLICA_URL = f"postgres://app:{DATABASE_PASSWORD}@db.internal:5432/companyos"
    settings.FIELD_ENCRYPTION_KEYS = ["fernet-key-material-0123456789"]
    settings.DEBUG = True


def debug_page() -> str:
    request = RequestFactory().get("/boom")
    connection_url = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:6379/0"  # a frame variable the page shows
    kwargs = {"url": f"postgres://app:{DATABASE_PASSWORD}@db.internal/x"}
    try:
        raise ConnectionError(f"cannot reach {connection_url.split('@')[1]}: {len(kwargs)}")
    except ConnectionError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


def test_the_debug_page_hides_passwords_in_urls_and_encryption_keys(secrets_in_settings):
    page = debug_page()

    assert "REDIS_URL" in page, "the settings are shown"
    for secret in (REDIS_PASSWORD, DATABASE_PASSWORD, "fernet-key-material"):
        assert secret not in page
    assert "127.0.0.1:6379" in page, "what is not secret stays readable"
