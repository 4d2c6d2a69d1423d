"""The real-time events of the delivery log: published by processing, never by receiving."""

import json

import pytest

from analytics.models import Event
from integrations.models import WebhookDelivery
from integrations.services import webhook_delivery_redeliver
from integrations.tests.factories import WebhookDeliveryFactory
from integrations.tests.webhook_helpers import github_payload, post_github, run_queued_deliveries
from integrations.webhooks.providers import PROVIDERS

# Committed rows: the view reads and writes on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

Status = WebhookDelivery.Status
OPENED = github_payload("pull_request/opened.payload.json")


def delivery_events() -> list[Event]:
    return list(Event.objects.filter(event_type__startswith="webhook.delivery.").order_by("id"))


def assert_nothing_secret_in(event: Event, webhook) -> None:
    text = json.dumps(event.payload)
    assert webhook.secret not in text
    for value in webhook.integration.credentials.values():
        assert value not in text
    # Neither the body nor the headers: the pull request's title and the signature are not in it.
    assert {"payload", "headers"}.isdisjoint(event.payload)
    assert json.loads(OPENED)["pull_request"]["title"] not in text
    assert "sha256=" not in text


def test_storing_a_delivery_publishes_nothing(client, github_webhook):
    received = post_github(client, github_webhook, "pull_request", OPENED, process=False)
    ignored = post_github(client, github_webhook, "push", b'{"ref": "refs/heads/main"}', process=False)
    rejected = post_github(client, github_webhook, "pull_request", b"[1, 2]", process=False)

    assert [response.json()["status"] for response in (received, ignored)] == [Status.RECEIVED, Status.IGNORED]
    assert rejected.status_code == 400
    assert sorted(WebhookDelivery.objects.values_list("status", flat=True)) == ["ignored", "received", "rejected"]
    assert not Event.objects.exists()


def test_a_delivery_saved_as_received_or_rejected_publishes_nothing(github_webhook):
    # Not only the intake's raw INSERT: the declaration has no created event and no event for these states.
    WebhookDeliveryFactory(webhook=github_webhook, status=Status.RECEIVED)
    WebhookDeliveryFactory(webhook=github_webhook, status=Status.REJECTED, payload=None)

    assert not Event.objects.exists()


def test_processing_a_delivery_publishes_processed_without_secrets(client, github_webhook):
    post_github(client, github_webhook, "pull_request", OPENED, process=False)
    delivery = WebhookDelivery.objects.get()

    run_queued_deliveries()

    [event] = delivery_events()
    assert event.event_type == "webhook.delivery.processed"
    assert (event.subject_type, event.subject_id) == ("integrations.webhookdelivery", delivery.pk)
    assert event.organization_id == github_webhook.integration.organization_id
    assert (event.category, event.source) == ("integrations", "system")
    data = event.payload
    assert (data["status"], data["previous_status"], data["attempts"]) == ("processed", "received", 1)
    assert (data["webhook_id"], data["delivery_id"]) == (str(github_webhook.pk), delivery.delivery_id)
    assert (data["event"], data["action"], data["service"]) == ("pull_request", "opened", "github")
    assert data["processed_at"] and data["created_at"]
    assert_nothing_secret_in(event, github_webhook)
    # The pull request's own event is published too, as before.
    assert Event.objects.filter(event_type="pull_request.opened").count() == 1


def test_a_failing_delivery_publishes_failed_without_its_error_text(client, github_webhook, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the mapping broke")

    monkeypatch.setattr(PROVIDERS["github"], "process", broken)

    post_github(client, github_webhook, "pull_request", OPENED)

    [event] = delivery_events()
    assert event.event_type == "webhook.delivery.failed"
    assert event.payload["status"] == "failed"
    assert "error" not in event.payload
    assert "mapping broke" not in str(event.payload)
    assert_nothing_secret_in(event, github_webhook)
    # The rolled-back processing published nothing of its own.
    assert not Event.objects.exclude(pk=event.pk).exists()


def test_a_redelivery_publishes_only_a_changed_outcome(client, github_webhook, monkeypatch):
    monkeypatch.setattr(PROVIDERS["github"], "process", lambda **kwargs: 1 / 0)
    post_github(client, github_webhook, "pull_request", OPENED)
    delivery = WebhookDelivery.objects.get()

    webhook_delivery_redeliver(delivery=delivery)  # fails again: the status did not change
    monkeypatch.undo()
    webhook_delivery_redeliver(delivery=delivery)

    types = [event.event_type for event in delivery_events()]
    assert types == ["webhook.delivery.failed", "webhook.delivery.processed"]
    assert delivery_events()[-1].payload["previous_status"] == "failed"
