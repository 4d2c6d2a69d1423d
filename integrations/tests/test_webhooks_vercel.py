"""Vercel deployment deliveries, in order, out of order and repeated."""

from datetime import UTC, datetime

import pytest

from analytics.models import Event
from development.models import Deployment, PullRequest, Repository
from integrations.models import WebhookDelivery
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from integrations.tests.webhook_helpers import github_payload, post_github, post_vercel, vercel_event

# Committed rows: the view reads and writes on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

Status = WebhookDelivery.Status
T0 = 1_700_000_000_000  # ms since the epoch


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def deployment_events(deployment: Deployment) -> list[str]:
    events = Event.objects.filter(subject_id=deployment.pk).order_by("occurred_at", "id")
    return list(events.values_list("event_type", flat=True))


def test_created_then_ready(client, vercel_webhook):
    created = post_vercel(client, vercel_webhook, vercel_event("deployment.created", created_at_ms=T0))
    ready = post_vercel(client, vercel_webhook, vercel_event("deployment.ready", created_at_ms=T0 + 42_000))

    assert (created.status_code, ready.status_code) == (202, 202)
    deployment = Deployment.objects.get()
    assert deployment.organization_id == vercel_webhook.integration.organization_id
    assert deployment.integration_id == vercel_webhook.integration_id
    assert (deployment.external_id, deployment.project_name) == ("dpl_2euZBFqxYdDMDG1jTrHFnNZ2eUVa", "acme-web")
    assert deployment.url == "https://acme-web-4fkq7x1yz.vercel.app"
    assert (deployment.environment, deployment.state) == ("production", "ready")
    assert (deployment.commit_sha[:7], deployment.branch) == ("ec26c3e", "changes")
    assert (deployment.started_at, deployment.ready_at) == (at(T0), at(T0 + 42_000))
    assert deployment.build_duration_ms == 42_000
    assert deployment.metadata["project_id"] == "prj_12HKQaOmR5t5Uy6vdcQsNIiZgHGB"
    assert deployment_events(deployment) == ["deployment.created", "deployment.ready"]
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == [Status.PROCESSED] * 2


def test_the_deployment_links_to_its_repository_and_pull_request(client, vercel_webhook):
    github = IntegrationFactory(organization=vercel_webhook.integration.organization, service="github")
    github_webhook = WebhookFactory(integration=github, events=[])
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))

    post_vercel(client, vercel_webhook, vercel_event("deployment.created", target=None))

    deployment = Deployment.objects.get()
    assert deployment.repository == Repository.objects.get()
    assert deployment.pull_request == PullRequest.objects.get()
    assert deployment.environment == "preview"


def test_ready_before_created_stays_ready(client, vercel_webhook):
    post_vercel(client, vercel_webhook, vercel_event("deployment.ready", created_at_ms=T0 + 30_000))
    late = post_vercel(client, vercel_webhook, vercel_event("deployment.created", created_at_ms=T0))

    assert late.status_code == 202
    deployment = Deployment.objects.get()
    assert deployment.state == "ready" and deployment.ready_at == at(T0 + 30_000)
    # The late event adds what it knows without undoing anything.
    assert deployment.started_at == at(T0) and deployment.build_duration_ms == 30_000
    assert deployment_events(deployment) == ["deployment.created", "deployment.ready"]
    stale = WebhookDelivery.objects.get(event="deployment.created")
    assert stale.status == Status.IGNORED and stale.error.startswith("stale")


@pytest.mark.parametrize(
    ("event_type", "state", "published"),
    [
        ("deployment.error", "error", "deployment.error"),
        ("deployment.canceled", "canceled", "deployment.canceled"),
        ("deployment.succeeded", "ready", "deployment.ready"),
    ],
)
def test_terminal_events(client, vercel_webhook, event_type, state, published):
    post_vercel(client, vercel_webhook, vercel_event("deployment.created", created_at_ms=T0))
    post_vercel(client, vercel_webhook, vercel_event(event_type, created_at_ms=T0 + 1000))

    deployment = Deployment.objects.get()
    assert deployment.state == state
    assert deployment_events(deployment) == ["deployment.created", published]


def test_succeeded_then_ready_is_one_ready_event(client, vercel_webhook):
    post_vercel(client, vercel_webhook, vercel_event("deployment.created", created_at_ms=T0))
    post_vercel(client, vercel_webhook, vercel_event("deployment.succeeded", created_at_ms=T0 + 1000))
    post_vercel(client, vercel_webhook, vercel_event("deployment.ready", created_at_ms=T0 + 2000))

    deployment = Deployment.objects.get()
    assert deployment.ready_at == at(T0 + 1000)
    assert deployment_events(deployment) == ["deployment.created", "deployment.ready"]


def test_a_redelivery_changes_nothing_and_emits_nothing(client, vercel_webhook):
    event = vercel_event("deployment.created", delivery_id="evt_same")
    first = post_vercel(client, vercel_webhook, event)
    before = (Deployment.objects.get().updated_at, Event.objects.count())

    again = post_vercel(client, vercel_webhook, event)

    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert again.json()["delivery"] == first.json()["delivery"] == str(WebhookDelivery.objects.get().pk)
    assert (Deployment.objects.get().updated_at, Event.objects.count()) == before
    assert WebhookDelivery.objects.count() == 1


def test_an_unsupported_vercel_event_is_ignored(client, vercel_webhook):
    response = post_vercel(client, vercel_webhook, vercel_event("deployment.promoted"))

    assert response.status_code == 202 and response.json()["status"] == "ignored"
    assert not Deployment.objects.exists()


def test_a_bad_event_time_fails_the_delivery_only(client, vercel_webhook):
    event = vercel_event("deployment.created") | {"createdAt": "yesterday"}

    response = post_vercel(client, vercel_webhook, event)

    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.error == '"createdAt" must be the event time in milliseconds since the epoch.'
    assert not Deployment.objects.exists()


def test_an_event_without_its_payload_object_fails_with_a_message_that_names_it(client, vercel_webhook):
    event = vercel_event("deployment.created")
    del event["payload"]

    post_vercel(client, vercel_webhook, event)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.error == "The deployment.created payload is not what Vercel sends: no 'payload'."
