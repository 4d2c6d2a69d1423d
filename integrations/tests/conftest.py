"""Fixtures for the webhook tests: one GitHub and one Vercel endpoint."""

import pytest

from integrations.models import Integration
from integrations.tests.factories import IntegrationFactory, WebhookFactory


@pytest.fixture(autouse=True)
def no_address_rate_limit(settings):
    """Every test client sends from 127.0.0.1, far faster than any provider: test_webhooks_limits turns it on."""
    settings.WEBHOOK_RATE_LIMIT_PER_ADDRESS = 0


@pytest.fixture
def github_webhook(db):
    integration = IntegrationFactory(service=Integration.Service.GITHUB)
    return WebhookFactory(integration=integration, events=[])


@pytest.fixture
def vercel_webhook(db):
    integration = IntegrationFactory(service=Integration.Service.VERCEL)
    return WebhookFactory(integration=integration, events=[])
