"""Repositories, pull requests and deployments: constraints and deletion rules."""

import datetime as dt

import pytest
from django.utils import timezone

from agents.tests.factories import AgentFactory
from core.tests.factories import OrganizationFactory, UserFactory
from core.tests.utils import violates
from development.models import Deployment, PullRequest, Repository
from development.tests.factories import DeploymentFactory, PullRequestFactory, RepositoryFactory

pytestmark = pytest.mark.django_db


class TestRepository:
    def test_full_name_is_unique_per_organization(self):
        repository = RepositoryFactory(name="web")
        with violates("development_repository_full_name_unique"):
            RepositoryFactory(organization=repository.organization, name="web")
        RepositoryFactory(name="web")  # another organization may track the same repository

    def test_external_id_is_unique_per_organization(self):
        repository = RepositoryFactory()
        with violates("development_repository_external_id_unique"):
            RepositoryFactory(organization=repository.organization, external_id=repository.external_id)

    def test_repositories_without_an_external_id_do_not_collide(self):
        org = OrganizationFactory()
        RepositoryFactory.create_batch(2, organization=org, external_id=None)
        assert Repository.objects.filter(organization=org, external_id__isnull=True).count() == 2

    def test_deleting_the_organization_deletes_repositories_pull_requests_and_deployments(self):
        deployment = DeploymentFactory(pull_request=None)
        pull_request = PullRequestFactory(repository=deployment.repository)
        deployment.organization.delete()
        assert not Repository.objects.filter(pk=deployment.repository_id).exists()
        assert not PullRequest.objects.filter(pk=pull_request.pk).exists()
        assert not Deployment.objects.filter(pk=deployment.pk).exists()


class TestPullRequest:
    def test_number_is_unique_per_repository(self):
        pull_request = PullRequestFactory()
        with violates("development_pullrequest_number_unique"):
            PullRequestFactory(repository=pull_request.repository, number=pull_request.number)

    def test_number_is_positive(self):
        with violates("development_pullrequest_number_positive"):
            PullRequestFactory(number=0)

    def test_state_check(self):
        with violates("development_pullrequest_state_valid"):
            PullRequestFactory(state="abandoned")

    def test_review_status_check(self):
        with violates("development_pullrequest_agent_review_status_valid"):
            PullRequestFactory(agent_review_status="lgtm")

    def test_a_merged_pull_request_has_merged_at(self):
        with violates("development_pullrequest_merged_has_merged_at"):
            PullRequestFactory(state="merged", closed_at=timezone.now())
        assert PullRequestFactory(merged=True).merged_at is not None

    @pytest.mark.parametrize("field", ["merged_at", "closed_at"])
    def test_an_open_pull_request_is_neither_merged_nor_closed(self, field):
        with violates("development_pullrequest_open_not_closed"):
            PullRequestFactory(state="open", **{field: timezone.now()})

    def test_a_closed_pull_request_may_be_unmerged(self):
        pull_request = PullRequestFactory(state="closed", closed_at=timezone.now())
        assert pull_request.merged_at is None

    def test_labels_array_round_trips(self):
        pull_request = PullRequestFactory(labels=["security", "needs review", "ünïcode"])
        assert PullRequest.objects.get(pk=pull_request.pk).labels == ["security", "needs review", "ünïcode"]
        assert PullRequest.objects.filter(labels__contains=["security"]).get() == pull_request
        assert PullRequest.objects.filter(labels__overlap=["docs", "ünïcode"]).get() == pull_request

    def test_deleting_the_author_keeps_the_pull_request(self):
        author = UserFactory()
        pull_request = PullRequestFactory(author=author, author_login="gone")
        author.delete()
        pull_request.refresh_from_db()
        assert (pull_request.author, pull_request.author_login) == (None, "gone")

    def test_deleting_the_reviewing_agent_keeps_the_review(self):
        agent = AgentFactory()
        pull_request = PullRequestFactory(reviewed_by_agent=agent, agent_review_status="approved")
        agent.delete()
        pull_request.refresh_from_db()
        assert (pull_request.reviewed_by_agent, pull_request.agent_review_status) == (None, "approved")

    def test_metadata_jsonb_round_trips(self):
        value = {"github": {"node_id": "PR_kw", "requested_reviewers": [{"login": "ana"}]}, "emoji": "🚀"}
        pull_request = PullRequestFactory(metadata=value)
        assert PullRequest.objects.get(pk=pull_request.pk).metadata == value
        assert PullRequest.objects.filter(metadata__github__requested_reviewers__0__login="ana").exists()


class TestDeployment:
    def test_external_id_is_globally_unique(self):
        deployment = DeploymentFactory()
        with violates("development_deployment_external_id_unique"):
            DeploymentFactory(external_id=deployment.external_id)

    def test_environment_check(self):
        with violates("development_deployment_environment_valid"):
            DeploymentFactory(environment="staging")

    def test_state_check(self):
        with violates("development_deployment_state_valid"):
            DeploymentFactory(state="done")

    def test_a_ready_deployment_has_ready_at(self):
        with violates("development_deployment_ready_has_ready_at"):
            DeploymentFactory(state="ready", ready_at=None, build_duration_ms=None)

    def test_ready_cannot_come_before_start(self):
        now = timezone.now()
        with violates("development_deployment_ready_after_start"):
            DeploymentFactory(started_at=now, ready_at=now - dt.timedelta(seconds=1))

    def test_deleting_repository_pull_request_or_creator_keeps_the_deployment(self):
        creator = UserFactory()
        deployment = DeploymentFactory(creator=creator)
        deployment.pull_request = PullRequestFactory(repository=deployment.repository)
        deployment.save()
        deployment.pull_request.delete()
        deployment.refresh_from_db()
        assert deployment.pull_request is None
        creator.delete()
        deployment.repository.delete()
        deployment.refresh_from_db()
        assert (deployment.creator, deployment.repository) == (None, None)
