"""The sample data: the data model's exact counts, idempotent loading, nothing in plaintext."""

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection

from companyos.foundation import crypto

pytestmark = pytest.mark.django_db

FIXTURES = ["core", "integrations", "development", "design", "social", "agents", "analytics"]

EXPECTED = {
    "core.User": 3,
    "core.Organization": 1,
    "core.OrganizationMember": 3,
    "integrations.Integration": 5,
    "integrations.Webhook": 2,
    "development.Repository": 2,
    "development.PullRequest": 3,
    "development.Deployment": 3,
    "design.FigmaFile": 2,
    "design.DesignComponent": 3,
    "social.SocialAccount": 2,
    "social.SocialPost": 4,
    "agents.Agent": 4,
    "agents.AgentTask": 4,
    "agents.AgentCollaboration": 2,
    # Loading fixtures is a raw save: it must not publish events of its own.
    "analytics.Event": 5,
    "analytics.Metric": 5,
}


def counts() -> dict[str, int]:
    return {label: apps.get_model(label).objects.count() for label in EXPECTED}


@pytest.fixture
def loaded():
    call_command("loaddata", *FIXTURES, verbosity=0)


@pytest.mark.usefixtures("loaded")
class TestSampleData:
    def test_counts_match_schema_md(self):
        assert counts() == EXPECTED

    def test_loading_again_changes_no_counts(self):
        call_command("loaddata", *FIXTURES, verbosity=0)
        assert counts() == EXPECTED

    def test_the_sample_story(self):
        User, Organization = apps.get_model("core.User"), apps.get_model("core.Organization")
        assert sorted(User.objects.values_list("name", flat=True)) == ["Alice Chen", "Bob Martínez", "Charlie Okafor"]
        assert Organization.objects.get().name == "Acme Corp"
        services = apps.get_model("integrations.Integration").objects.values_list("service", flat=True)
        assert sorted(services) == ["figma", "github", "slack", "twitter", "vercel"]
        environments = apps.get_model("development.Deployment").objects.values_list("environment", flat=True)
        assert {"production", "preview"} <= set(environments)

    def test_nobody_can_log_in_with_a_known_password(self):
        for user in apps.get_model("core.User").objects.all():
            assert user.password.startswith("!") and not user.has_usable_password()

    def test_credentials_and_secrets_are_encrypted_in_the_database(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT credentials FROM integrations_integration UNION ALL SELECT secret FROM integrations_webhook"
            )
            stored = [row[0] for row in cursor.fetchall()]
        assert len(stored) == 7
        assert all(crypto.looks_like_token(value) and "FAKE" not in value for value in stored)
        github = apps.get_model("integrations.Integration").objects.get(service="github")
        assert github.credentials["access_token"].startswith("FAKE-")

    def test_generated_agent_columns_are_computed(self):
        reviewer = apps.get_model("agents.Agent").objects.get(slug="code-reviewer")
        assert reviewer.success_rate == pytest.approx(148 / 151)
        assert reviewer.avg_duration_ms == 41_000

    def test_agent_tasks_point_at_their_targets(self):
        task = apps.get_model("agents.AgentTask").objects.get(title__startswith="Review acme-corp/web#142")
        assert task.target.number == 142
        assert task.target.reviewed_by_agent == task.agent
