"""The delivery log services: worker, redeliver, retention, secret and credential rotation."""

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.jobs import Job

from analytics.models import Event
from companyos.foundation.db import CONNECTION_LOST
from development.models import PullRequest
from integrations.jobs import process_delivery, process_pending_deliveries
from integrations.models import WebhookDelivery
from integrations.services import (
    integration_rotate_credentials,
    webhook_deliveries_process_pending,
    webhook_deliveries_prune,
    webhook_delivery_process,
    webhook_delivery_redeliver,
    webhook_rotate_secret,
)
from integrations.tests.webhook_helpers import (
    github_payload,
    post_github,
    post_vercel,
    run_queued_deliveries,
    vercel_event,
)
from integrations.webhooks.providers import PROVIDERS
from integrations.webhooks.signatures import github_signature, signature_matches, vercel_signature

# Committed rows: the view reads and writes on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

Status = WebhookDelivery.Status
OPENED = github_payload("pull_request/opened.payload.json")


def test_github_published_signature_test_vector():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    signature = github_signature("It's a Secret to Everybody", b"Hello, World!")

    assert signature == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_matches(signature, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    assert not signature_matches(signature, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18")
    assert not signature_matches(signature, None)


def test_vercel_signature_is_hex_hmac_sha1():
    # RFC 2202, HMAC-SHA1 test case 2.
    assert vercel_signature("Jefe", b"what do ya want for nothing?") == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"


def test_the_view_queues_one_job_per_received_delivery_and_the_job_applies_it(client, github_webhook):
    post_github(client, github_webhook, "pull_request", OPENED, process=False)
    post_github(client, github_webhook, "ping", github_payload("ping/payload.json"), process=False)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {Status.RECEIVED}
    assert not PullRequest.objects.exists()

    assert run_queued_deliveries() == 2

    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {Status.PROCESSED}
    assert PullRequest.objects.get().state == "open"
    assert webhook_deliveries_process_pending() == 0


def test_the_sweep_applies_what_has_no_job(client, github_webhook):
    post_github(client, github_webhook, "pull_request", OPENED, process=False)
    with connection.cursor() as cursor:  # as if queueing had failed after the delivery was stored
        cursor.execute("DELETE FROM procrastinate_jobs")

    assert process_pending_deliveries(timestamp=0) == 1

    assert WebhookDelivery.objects.get().status == Status.PROCESSED
    assert PullRequest.objects.get().state == "open"


def test_a_delivery_whose_connection_the_server_cut_is_not_failed_and_its_job_runs_it_again(
    client, github_webhook, monkeypatch, caplog
):
    """A failover in the middle of a delivery: not the delivery's failure (nothing could record it
    anyway), so it stays received, and its job is retried soon, not left to the sweep's next period."""
    post_github(client, github_webhook, "pull_request", OPENED, process=False)
    delivery = WebhookDelivery.objects.get()
    (job,) = ProcrastinateJob.objects.filter(task_name=process_delivery.name, args__delivery_pk=str(delivery.pk))

    def cut_own_connection(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr(PROVIDERS["github"], "process", cut_own_connection)
    with caplog.at_level(logging.ERROR, logger="integrations.services"), pytest.raises(CONNECTION_LOST) as raised:
        process_delivery(**job.args)
    monkeypatch.undo()

    assert "failed" not in caplog.text, "a lost connection is not logged as the delivery's failure"
    assert WebhookDelivery.objects.get().status == Status.RECEIVED
    retry = process_delivery.retry_strategy.get_retry_decision(
        exception=raised.value, job=Job(queue=job.queue_name, lock=None, queueing_lock=None, task_name=job.task_name)
    )
    assert retry is not None and retry.retry_at - timezone.now() <= timedelta(seconds=2)
    process_delivery(**job.args)  # the retry, once the database is back
    assert WebhookDelivery.objects.get().status == Status.PROCESSED
    assert PullRequest.objects.get().state == "open"


def test_pending_processing_respects_the_limit(client, github_webhook):
    for _ in range(3):
        post_github(client, github_webhook, "ping", github_payload("ping/payload.json"), process=False)

    assert webhook_deliveries_process_pending(limit=2) == 2
    assert WebhookDelivery.objects.filter(status=Status.RECEIVED).count() == 1


def test_redeliver_applies_a_stored_delivery_again(client, github_webhook):
    post_github(client, github_webhook, "pull_request", OPENED)
    delivery = WebhookDelivery.objects.get()
    PullRequest.objects.all().delete()

    redelivered = webhook_delivery_redeliver(delivery=delivery)

    assert redelivered.status == Status.PROCESSED and redelivered.attempts == 2
    assert PullRequest.objects.get().number == 2


def test_redeliver_of_an_applied_delivery_changes_nothing(client, github_webhook):
    post_github(client, github_webhook, "pull_request", OPENED)
    updated_at, events = PullRequest.objects.get().updated_at, Event.objects.count()

    webhook_delivery_redeliver(delivery=WebhookDelivery.objects.get())

    assert (PullRequest.objects.get().updated_at, Event.objects.count()) == (updated_at, events)


@pytest.mark.parametrize(
    ("post", "queries"),
    [
        (lambda client, hooks: post_github(client, hooks[0], "pull_request", OPENED, process=False), 12),
        (lambda client, hooks: post_vercel(client, hooks[1], vercel_event("deployment.created"), process=False), 10),
    ],
    ids=["pull request", "deployment"],
)
def test_processing_an_unchanged_payload_only_reads(
    client, github_webhook, vercel_webhook, django_assert_num_queries, post, queries
):
    """Lock the delivery, read what it is about, write the outcome and its event; no N+1, no unchanged rows written."""
    for _ in range(2):
        post(client, (github_webhook, vercel_webhook))
    first, second = WebhookDelivery.objects.order_by("created_at")
    webhook_delivery_process(delivery_pk=first.pk)

    with django_assert_num_queries(queries):
        webhook_delivery_process(delivery_pk=second.pk)

    second.refresh_from_db()
    assert second.status == Status.PROCESSED


def test_redeliver_refuses_a_rejected_delivery(client, github_webhook):
    post_github(client, github_webhook, "pull_request", b"{not json")

    with pytest.raises(ValidationError, match="rejected"):
        webhook_delivery_redeliver(delivery=WebhookDelivery.objects.get())


def test_prune_deletes_only_what_is_past_retention(client, github_webhook, settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    for _ in range(5):
        post_github(client, github_webhook, "ping", github_payload("ping/payload.json"))
    old = list(WebhookDelivery.objects.values_list("pk", flat=True)[:3])
    WebhookDelivery.objects.filter(pk__in=old).update(created_at=timezone.now() - timedelta(days=31))

    assert webhook_deliveries_prune(batch_size=2) == 3
    assert WebhookDelivery.objects.count() == 2
    assert not WebhookDelivery.objects.filter(pk__in=old).exists()


def test_prune_command(client, github_webhook):
    post_github(client, github_webhook, "ping", github_payload("ping/payload.json"))
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(days=3))
    out = StringIO()

    call_command("prune_webhook_deliveries", "--days", "7", stdout=out)
    assert WebhookDelivery.objects.count() == 1
    call_command("prune_webhook_deliveries", "--days", "2", stdout=out)
    assert WebhookDelivery.objects.count() == 0
    assert "Deleted 1 webhook deliveries older than 2 days." in out.getvalue()


def test_rotating_the_secret_returns_it_once_and_old_signatures_stop_working(client, github_webhook):
    old_secret = github_webhook.secret

    new_secret = webhook_rotate_secret(webhook=github_webhook)

    assert new_secret != old_secret and len(new_secret) == 64
    github_webhook.refresh_from_db()
    assert github_webhook.secret == new_secret
    assert post_github(client, github_webhook, "ping", b"{}", secret=old_secret).status_code == 401
    assert post_github(client, github_webhook, "ping", b"{}", secret=new_secret).status_code == 202


def test_a_provider_generated_secret_can_be_set(client, vercel_webhook):
    assert webhook_rotate_secret(webhook=vercel_webhook, secret="vercel-made-0123456789") == "vercel-made-0123456789"

    vercel_webhook.refresh_from_db()
    assert vercel_webhook.secret == "vercel-made-0123456789"
    for bad in ("short", " padded-secret-0123456789 "):
        with pytest.raises(ValidationError):
            webhook_rotate_secret(webhook=vercel_webhook, secret=bad)


def test_rotating_credentials_keeps_them_encrypted(github_webhook):
    integration = github_webhook.integration

    integration_rotate_credentials(integration=integration, credentials={"access_token": "ghp_new-fake-token"})

    integration.refresh_from_db()
    assert integration.credentials == {"access_token": "ghp_new-fake-token"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_integration WHERE id = %s", [integration.pk])
        (raw,) = cursor.fetchone()
    assert raw.startswith("gAAAAA") and "ghp_new-fake-token" not in raw


@pytest.mark.parametrize("credentials", [{}, {"token": object()}, ["not", "a", "mapping"]])
def test_rotating_credentials_refuses_bad_input(github_webhook, credentials):
    with pytest.raises(ValidationError):
        integration_rotate_credentials(integration=github_webhook.integration, credentials=credentials)
