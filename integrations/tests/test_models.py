"""Integrations and webhooks: constraints and deletion rules, against PostgreSQL."""

import pytest

from core.tests.factories import OrganizationFactory, UserFactory
from core.tests.utils import violates
from design.tests.factories import FigmaFileFactory
from development.tests.factories import DeploymentFactory, RepositoryFactory
from integrations.models import Integration, Webhook
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from social.tests.factories import SocialAccountFactory

pytestmark = pytest.mark.django_db


class TestIntegration:
    def test_one_integration_per_organization_service_and_account(self):
        integration = IntegrationFactory(external_account_id="acme")
        with violates("integrations_integration_account_unique"):
            IntegrationFactory(
                organization=integration.organization, service=integration.service, external_account_id="acme"
            )

    def test_the_same_account_may_be_connected_by_two_organizations_or_services(self):
        integration = IntegrationFactory(external_account_id="acme")
        IntegrationFactory(external_account_id="acme")
        IntegrationFactory(organization=integration.organization, service="vercel", external_account_id="acme")
        assert Integration.objects.filter(external_account_id="acme").count() == 3

    def test_service_check(self):
        with violates("integrations_integration_service_valid"):
            IntegrationFactory(service="myspace")

    def test_status_check(self):
        with violates("integrations_integration_status_valid"):
            IntegrationFactory(status="broken")

    def test_scopes_array_and_config_jsonb_round_trip(self):
        integration = IntegrationFactory(
            scopes=["repo", "read:org", "admin:repo_hook"], config={"repos": ["a/b"], "naïve": {"ok": True}}
        )
        integration = Integration.objects.get(pk=integration.pk)
        assert integration.scopes == ["repo", "read:org", "admin:repo_hook"]
        assert integration.config == {"repos": ["a/b"], "naïve": {"ok": True}}
        assert Integration.objects.filter(scopes__contains=["read:org"]).get() == integration

    def test_deleting_the_organization_deletes_integrations_and_their_webhooks(self):
        webhook = WebhookFactory()
        webhook.integration.organization.delete()
        assert not Integration.objects.filter(pk=webhook.integration_id).exists()
        assert not Webhook.objects.filter(pk=webhook.pk).exists()

    def test_deleting_the_creator_keeps_the_integration(self):
        creator = UserFactory()
        integration = IntegrationFactory(created_by=creator)
        creator.delete()
        integration.refresh_from_db()
        assert integration.created_by is None

    def test_deleting_an_integration_keeps_what_was_synced_through_it(self):
        org = OrganizationFactory()
        integration = IntegrationFactory(organization=org)
        repository = RepositoryFactory(organization=org, integration=integration)
        deployment = DeploymentFactory(organization=org, repository=repository, integration=integration)
        figma_file = FigmaFileFactory(organization=org, integration=integration)
        account = SocialAccountFactory(organization=org, integration=integration)
        integration.delete()
        for obj in (repository, deployment, figma_file, account):
            obj.refresh_from_db()
            assert obj.integration is None


class TestWebhook:
    def test_endpoint_token_is_unique(self):
        webhook = WebhookFactory()
        with violates("integrations_webhook_token_unique"):
            WebhookFactory(endpoint_token=webhook.endpoint_token)

    def test_new_webhooks_get_random_tokens_and_secrets(self):
        first, second = WebhookFactory(), WebhookFactory()
        assert len(first.endpoint_token) >= 32 and first.endpoint_token != second.endpoint_token
        assert len(first.secret) == 64 and first.secret != second.secret

    def test_failures_cannot_exceed_deliveries(self):
        with violates("integrations_webhook_failures_lte_deliveries"):
            WebhookFactory(delivery_count=3, failure_count=4)

    def test_events_array_round_trips(self):
        webhook = WebhookFactory(events=["deployment.created", "deployment.succeeded"])
        assert Webhook.objects.get(pk=webhook.pk).events == ["deployment.created", "deployment.succeeded"]
        assert Webhook.objects.filter(events__contains=["deployment.succeeded"]).get() == webhook
