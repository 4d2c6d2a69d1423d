"""Factories for integrations and webhooks (credentials are obviously fake)."""

import factory
from factory.django import DjangoModelFactory

from core.tests.factories import OrganizationFactory
from integrations.models import Integration, Webhook, WebhookDelivery


class IntegrationFactory(DjangoModelFactory):
    class Meta:
        model = Integration

    organization = factory.SubFactory(OrganizationFactory)
    service = Integration.Service.GITHUB
    name = factory.LazyAttribute(lambda o: f"{o.service.title()} account")
    status = Integration.Status.ACTIVE
    credentials = factory.Sequence(lambda n: {"access_token": f"fake-token-{n:06d}", "token_type": "bearer"})
    scopes = factory.LazyFunction(lambda: ["repo", "read:org"])
    config = factory.LazyFunction(dict)
    external_account_id = factory.Sequence(lambda n: str(100_000 + n))


class WebhookFactory(DjangoModelFactory):
    class Meta:
        model = Webhook

    integration = factory.SubFactory(IntegrationFactory)
    name = factory.Sequence(lambda n: f"Webhook {n}")
    events = factory.LazyFunction(lambda: ["pull_request", "push"])


class WebhookDeliveryFactory(DjangoModelFactory):
    """A verified GitHub delivery waiting to be processed."""

    class Meta:
        model = WebhookDelivery

    webhook = factory.SubFactory(WebhookFactory)
    delivery_id = factory.Faker("uuid4")
    event = "pull_request"
    action = "opened"
    response_code = 202
    signature_valid = True
    payload = factory.LazyFunction(lambda: {"action": "opened", "number": 1})
    headers = factory.LazyAttribute(lambda o: {"X-GitHub-Event": o.event, "X-GitHub-Delivery": o.delivery_id})
