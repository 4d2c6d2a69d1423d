"""End to end: signed deliveries over HTTP to a real uvicorn process, applied by a ``run_worker`` process."""

import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
from django.db import connection

from analytics.models import Event
from companyos.foundation.tests.support import manage_py
from companyos.foundation.topology import wait_for
from development.models import Deployment, PullRequest
from integrations.models import WebhookDelivery
from integrations.selectors import webhook_refusals
from integrations.services import webhook_deliveries_process_pending
from integrations.tests.asgi_server import uvicorn_server
from integrations.tests.webhook_helpers import endpoint, github_payload, vercel_event
from integrations.webhooks.signatures import github_signature, vercel_signature

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = WebhookDelivery.Status
OPENED = github_payload("pull_request/opened.payload.json")


def send(base_url: str, path: str, body: bytes, headers: dict[str, str], *, chunked: bool = False):
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        started = time.perf_counter()
        if chunked:
            conn.request("POST", path, body=iter([body]), headers=headers, encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def github_headers(webhook, body: bytes, delivery_id: str, event: str = "pull_request") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": github_signature(webhook.secret, body),
    }


def test_deliveries_over_http_are_acknowledged_then_applied(github_webhook):
    with uvicorn_server() as base_url, manage_py("run_worker", "--queue", "webhooks"):
        status, _ = send(base_url, endpoint(github_webhook), OPENED, github_headers(github_webhook, OPENED, "e2e-1"))
        assert status == 202
        wait_for(lambda: WebhookDelivery.objects.filter(status=Status.PROCESSED).exists(), "the delivery", timeout=10)
        pull_request = PullRequest.objects.get()
        assert Event.objects.filter(subject_id=pull_request.pk, event_type="pull_request.opened").count() == 1

        again, _ = send(base_url, endpoint(github_webhook), OPENED, github_headers(github_webhook, OPENED, "e2e-1"))
        assert again == 200

        unsigned = {"Content-Type": "application/json", "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "e2e-2"}
        assert send(base_url, endpoint(github_webhook), OPENED, unsigned)[0] == 401

        # No Content-Length to check first: the bound on what is read catches it.
        huge = b'{"a": "' + b"x" * (1024 * 1024) + b'"}'
        headers = github_headers(github_webhook, huge, "e2e-3")
        assert send(base_url, endpoint(github_webhook), huge, headers, chunked=True)[0] == 413

    github_webhook.refresh_from_db()
    # The unsigned and the oversized requests are counted in Redis only.
    assert (github_webhook.delivery_count, github_webhook.failure_count) == (2, 0)
    assert webhook_refusals(webhook=github_webhook) == {401: 1, 413: 1}
    assert Event.objects.filter(event_type__startswith="pull_request").count() == 1


def test_deliveries_acknowledged_while_no_worker_runs_are_applied_by_the_next_one(vercel_webhook):
    events = [
        vercel_event("deployment.ready", created_at_ms=2000),
        vercel_event("deployment.created", created_at_ms=1000),
    ]
    with uvicorn_server() as base_url:
        for event in events:
            body = json.dumps(event).encode()
            headers = {
                "Content-Type": "application/json",
                "x-vercel-signature": vercel_signature(vercel_webhook.secret, body),
            }
            assert send(base_url, endpoint(vercel_webhook), body, headers)[0] == 202

    assert WebhookDelivery.objects.filter(status=Status.RECEIVED).count() == 2
    with manage_py("run_worker", "--queue", "webhooks") as worker:
        wait_for(
            lambda: not WebhookDelivery.objects.filter(status=Status.RECEIVED).exists(), "the deliveries", timeout=20
        )
    assert worker.returncode == 0, worker.output()

    deployment = Deployment.objects.get()
    assert deployment.state == "ready"  # the late "created" did not take it back
    assert not WebhookDelivery.objects.exclude(status__in=[Status.PROCESSED, Status.IGNORED]).exists()


def test_concurrent_deliveries_about_one_deployment_serialize(vercel_webhook):
    """Many workers racing on one deployment: one row, the newest state, one event per change."""
    states = ["deployment.created", "deployment.succeeded", "deployment.ready", "deployment.created"]
    with uvicorn_server() as base_url:
        for offset, event_type in enumerate(states):
            body = json.dumps(vercel_event(event_type, created_at_ms=1000 + offset)).encode()
            headers = {
                "Content-Type": "application/json",
                "x-vercel-signature": vercel_signature(vercel_webhook.secret, body),
            }
            assert send(base_url, endpoint(vercel_webhook), body, headers)[0] == 202

    errors = []

    def work() -> None:
        try:
            while webhook_deliveries_process_pending(limit=1):
                pass
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert not WebhookDelivery.objects.filter(status__in=[Status.RECEIVED, Status.FAILED]).exists()
    deployment = Deployment.objects.get()
    assert deployment.state == "ready"
    assert sorted(Event.objects.filter(subject_id=deployment.pk).values_list("event_type", flat=True)) == [
        "deployment.created",
        "deployment.ready",
    ]


def test_unknown_endpoint_over_http_is_404(transactional_db):
    with uvicorn_server() as base_url:
        assert send(base_url, f"/webhooks/{uuid.uuid4().hex}/", b"{}", {"Content-Type": "application/json"})[0] == 404
