"""The upserts and deployment_set_state, in field values: ordering rules, lifecycle, fill-ins, validation."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from analytics.models import Event
from core.tests.factories import UserFactory
from development.models import Deployment, PullRequest, Repository
from development.services import deployment_set_state, deployment_upsert, pull_request_upsert, repository_upsert
from development.tests.factories import DeploymentFactory, RepositoryFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def event_types(subject) -> list[str]:
    events = Event.objects.filter(subject_id=subject.pk).order_by("occurred_at", "id")
    return list(events.values_list("event_type", flat=True))


def repository_fields(**overrides):
    return {"full_name": "acme/web", "name": "web", "owner": "acme", **overrides}


def pull_request_fields(**overrides):
    fields = {"title": "Add search", "state": "open", "head_branch": "search", "base_branch": "main", "opened_at": T0}
    return fields | overrides


def upsert_pull_request(repository, at, **overrides):
    return pull_request_upsert(repository_id=repository.pk, number=7, fields=pull_request_fields(**overrides), at=at)


def upsert_deployment(organization, state, at, **fields):
    return deployment_upsert(
        organization_id=organization.pk,
        external_id="dpl_1",
        state=state,
        at=at,
        fields={"project_name": "web", **fields},
    )


class TestRepositoryUpsert:
    def test_creates_then_applies_a_newer_event(self, organization):
        created, applied = repository_upsert(
            organization_id=organization.pk, external_id=42, fields=repository_fields(), at=T0
        )
        assert applied and (created.external_id, created.last_event_at) == (42, T0)

        renamed, applied = repository_upsert(
            organization_id=organization.pk,
            external_id=42,
            fields=repository_fields(full_name="acme/site", name="site"),
            at=LATER,
        )

        # Found by the provider's id, so a rename updates the same row.
        assert applied and renamed.pk == created.pk
        assert Repository.objects.get().full_name == "acme/site"

    def test_an_older_event_is_not_applied(self, organization):
        repository_upsert(organization_id=organization.pk, external_id=42, fields=repository_fields(), at=LATER)

        _, applied = repository_upsert(
            organization_id=organization.pk, external_id=42, fields=repository_fields(description="old"), at=T0
        )

        assert not applied
        assert Repository.objects.get().description == ""

    def test_a_repository_known_by_name_is_adopted(self, organization):
        known = Repository.objects.create(organization=organization, full_name="acme/web", name="web", owner="acme")

        adopted, _ = repository_upsert(
            organization_id=organization.pk, external_id=42, fields=repository_fields(), at=T0
        )

        assert adopted.pk == known.pk
        assert Repository.objects.get().external_id == 42

    def test_an_invalid_value_is_refused(self, organization):
        # The savepoint stands for the caller's transaction, which a refusal rolls back.
        with pytest.raises(ValidationError) as refused, transaction.atomic():
            repository_upsert(
                organization_id=organization.pk, external_id=42, fields=repository_fields(url="not a url"), at=T0
            )

        assert list(refused.value.message_dict) == ["url"]


class TestPullRequestUpsert:
    def test_the_author_is_linked_by_github_username(self):
        repository = RepositoryFactory()
        author = UserFactory(github_username="octocat")

        pull_request, applied = upsert_pull_request(repository, T0, author_login="octocat")

        assert applied and pull_request.author == author
        assert event_types(pull_request) == ["pull_request.opened"]

    def test_an_older_event_is_not_applied(self):
        repository = RepositoryFactory()
        upsert_pull_request(repository, LATER, state="closed", closed_at=LATER)

        _, applied = upsert_pull_request(repository, T0)

        assert not applied
        assert PullRequest.objects.get().state == "closed"

    def test_a_merged_pull_request_stays_merged(self):
        repository = RepositoryFactory()
        upsert_pull_request(repository, T0, state="merged", merged_at=T0, closed_at=T0)

        # An event from the same second that arrives later, still showing it open.
        _, applied = upsert_pull_request(repository, T0, labels=["bug"])

        assert not applied
        assert PullRequest.objects.get().state == "merged"

    def test_the_same_values_again_write_nothing(self):
        repository = RepositoryFactory()
        pull_request, _ = upsert_pull_request(repository, T0)
        updated_at = pull_request.updated_at

        _, applied = upsert_pull_request(repository, T0)

        assert applied and PullRequest.objects.get().updated_at == updated_at
        assert event_types(pull_request) == ["pull_request.opened"]


class TestDeploymentUpsert:
    def test_building_then_ready(self, organization):
        upsert_deployment(organization, "building", T0)
        deployment, applied = upsert_deployment(organization, "ready", T0 + timedelta(seconds=42))

        assert applied and deployment.state == "ready"
        assert (deployment.started_at, deployment.ready_at) == (T0, T0 + timedelta(seconds=42))
        assert deployment.build_duration_ms == 42_000
        assert event_types(deployment) == ["deployment.created", "deployment.ready"]

    def test_a_late_start_fills_in_without_undoing_ready(self, organization):
        upsert_deployment(organization, "ready", T0 + timedelta(seconds=30))

        deployment, applied = upsert_deployment(organization, "building", T0)

        assert not applied and deployment.state == "ready"
        assert (deployment.started_at, deployment.build_duration_ms) == (T0, 30_000)
        assert event_types(deployment) == ["deployment.created", "deployment.ready"]

    def test_a_start_after_readiness_is_not_filled_in(self, organization):
        upsert_deployment(organization, "ready", T0)

        deployment, applied = upsert_deployment(organization, "building", LATER)

        assert not applied and deployment.started_at is None

    def test_a_finished_deployment_never_goes_back_even_for_a_newer_event(self, organization):
        upsert_deployment(organization, "error", T0)

        deployment, applied = upsert_deployment(organization, "building", LATER)

        assert not applied
        assert Deployment.objects.get().state == "error"

    def test_a_finish_dated_before_the_start_still_finishes(self, organization):
        upsert_deployment(organization, "building", LATER)

        deployment, applied = upsert_deployment(organization, "ready", T0)

        assert applied and deployment.state == "ready"
        assert deployment.ready_at == deployment.started_at == LATER  # never before the start
        assert deployment.last_event_at == LATER

    def test_an_older_finish_does_not_overwrite_a_newer_one(self, organization):
        upsert_deployment(organization, "canceled", LATER)

        _, applied = upsert_deployment(organization, "ready", T0)

        deployment = Deployment.objects.get()
        assert not applied and deployment.state == "canceled" and deployment.ready_at is None
        assert event_types(deployment) == ["deployment.created", "deployment.canceled"]

    def test_an_unknown_state_is_refused(self, organization):
        with pytest.raises(ValidationError, match="Unknown"):
            upsert_deployment(organization, "exploded", T0)


def test_deployment_set_state_refuses_to_leave_a_finished_state():
    deployment = DeploymentFactory(state="ready", ready_at=T0, started_at=T0 - timedelta(minutes=1), last_event_at=T0)

    with pytest.raises(ValidationError, match="cannot go back"):
        deployment_set_state(deployment=deployment, state="building", at=LATER)
    with pytest.raises(ValidationError, match="Unknown"):
        deployment_set_state(deployment=deployment, state="exploded", at=LATER)
    with pytest.raises(ValidationError, match="older"):
        deployment_set_state(deployment=deployment, state="error", at=T0 - timedelta(minutes=1))

    deployment_set_state(deployment=deployment, state="error", at=LATER, error_message="Boom")
    deployment.refresh_from_db()
    assert (deployment.state, deployment.error_message) == ("error", "Boom")
    assert event_types(deployment)[-1] == "deployment.error"
