"""Fixtures for the webhook tests: one GitHub and one Vercel endpoint."""

import pytest

from integrations.models import Integration
from integrations.tests.factories import IntegrationFactory, WebhookFactory


@pytest.fixture
def github_webhook(db):
    integration = IntegrationFactory(service=Integration.Service.GITHUB)
    return WebhookFactory(integration=integration, events=[])


@pytest.fixture
def vercel_webhook(db):
    integration = IntegrationFactory(service=Integration.Service.VERCEL)
    return WebhookFactory(integration=integration, events=[])
