"""What a caller can send that we refuse, and that nothing a caller sends is a 500."""

import json
import uuid

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procrastinate.contrib.django.models import ProcrastinateJob

from development.models import PullRequest
from integrations.jobs import process_delivery
from integrations.models import Integration, WebhookDelivery
from integrations.selectors import webhook_refusals
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from integrations.tests.webhook_helpers import (
    endpoint,
    github_payload,
    post_github,
    post_vercel,
    run_queued_deliveries,
    vercel_event,
)
from integrations.webhooks.signatures import github_signature, vercel_signature

# Committed rows: the view reads and writes on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

Status = WebhookDelivery.Status
OPENED = github_payload("pull_request/opened.payload.json")


def assert_counted_rejection(webhook, code: int) -> WebhookDelivery:
    """The delivery is logged as rejected, without payload, and counted as a failure."""
    webhook.refresh_from_db()
    assert (webhook.delivery_count, webhook.failure_count, webhook.last_delivery_status) == (1, 1, code)
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert (delivery.status, delivery.response_code, delivery.payload) == (Status.REJECTED, code, None)
    assert delivery.error
    assert not PullRequest.objects.exists()
    return delivery


def assert_refused_in_redis_only(webhook, code: int) -> None:
    """An unverified request: counted in Redis for the admin, nothing written to the database."""
    assert not WebhookDelivery.objects.filter(webhook=webhook).exists()
    webhook.refresh_from_db()
    assert (webhook.delivery_count, webhook.failure_count) == (0, 0)
    assert webhook_refusals(webhook=webhook) == {code: 1}
    assert not PullRequest.objects.exists()


def test_acknowledging_commits_the_delivery_its_job_and_the_count_in_one_transaction(client, github_webhook):
    response = post_github(client, github_webhook, "pull_request", OPENED, process=False)

    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.RECEIVED
    job = ProcrastinateJob.objects.get(task_name=process_delivery.name, args={"delivery_pk": str(delivery.pk)})
    assert (job.queue_name, job.status) == ("webhooks", "todo")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xmin::text FROM integrations_webhookdelivery WHERE id = %s"
            " UNION SELECT xmin::text FROM procrastinate_jobs WHERE id = %s"
            " UNION SELECT xmin::text FROM integrations_webhook WHERE id = %s",
            [delivery.pk, job.id, github_webhook.pk],
        )
        assert len(cursor.fetchall()) == 1, "written by one transaction"


@pytest.fixture
def jobs_refused():
    """PostgreSQL refuses to queue any job while the test runs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_jobs() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'no jobs today'; END $$;"
            " CREATE TRIGGER test_refuse_jobs BEFORE INSERT ON procrastinate_jobs"
            " FOR EACH ROW EXECUTE FUNCTION test_refuse_jobs()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_jobs ON procrastinate_jobs; DROP FUNCTION test_refuse_jobs()")


def test_a_delivery_whose_job_cannot_be_queued_is_not_stored_either(github_webhook, jobs_refused):
    response = Client(raise_request_exception=False).post(
        endpoint(github_webhook),
        data=OPENED,
        content_type="application/json",
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "d-lost",
            "X-Hub-Signature-256": github_signature(github_webhook.secret, OPENED),
        },
    )

    assert response.status_code == 500  # the provider delivers it again later
    assert not WebhookDelivery.objects.exists()
    github_webhook.refresh_from_db()
    assert github_webhook.delivery_count == 0


def test_an_ignored_or_duplicate_delivery_queues_no_job(client, github_webhook):
    assert post_github(client, github_webhook, "push", b"{}", process=False).status_code == 202
    post_github(client, github_webhook, "pull_request", OPENED, delivery_id="d-1", process=False)
    duplicate = post_github(client, github_webhook, "pull_request", OPENED, delivery_id="d-1", process=False)

    assert duplicate.status_code == 200
    # Procrastinate's tables outlive each test: only this test's deliveries count.
    delivery_pks = [str(pk) for pk in WebhookDelivery.objects.values_list("pk", flat=True)]
    queued = ProcrastinateJob.objects.filter(task_name=process_delivery.name, args__delivery_pk__in=delivery_pks)
    assert list(queued.values_list("args", flat=True)) == [
        {"delivery_pk": str(WebhookDelivery.objects.get(delivery_id="d-1").pk)}
    ]


@pytest.mark.parametrize("token", ["no-such-token", "nul%00byte", "%F0%9F%92%A5", "x" * 500])
def test_unknown_endpoint_is_404_and_stores_nothing(client, token):
    response = client.post(f"/webhooks/{token}/", data=OPENED, content_type="application/json")

    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: WebhookFactory(is_active=False, events=[]),
        lambda: WebhookFactory(integration=IntegrationFactory(status=Integration.Status.DISCONNECTED), events=[]),
        lambda: WebhookFactory(integration=IntegrationFactory(service=Integration.Service.FIGMA), events=[]),
    ],
    ids=["inactive webhook", "disconnected integration", "provider we do not receive"],
)
def test_inactive_endpoints_are_404(client, make):
    webhook = make()

    response = post_github(client, webhook, "pull_request", OPENED)

    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()
    webhook.refresh_from_db()
    assert webhook.delivery_count == 0


def test_only_post(client, github_webhook):
    assert client.get(endpoint(github_webhook)).status_code == 405


def test_missing_signature_is_401(client, github_webhook):
    response = client.post(
        endpoint(github_webhook),
        data=OPENED,
        content_type="application/json",
        headers={"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1"},
    )

    assert response.status_code == 401
    assert_refused_in_redis_only(github_webhook, 401)


@pytest.mark.parametrize(
    "signature",
    [
        lambda body: github_signature("not the secret", body),
        lambda body: github_signature("not the secret", body).removeprefix("sha256="),
        lambda body: "sha1=" + github_signature("x", body)[7:47],
        lambda body: "sha256=é" * 3,
        lambda body: "",
    ],
    ids=["other secret", "no prefix", "sha1", "not ascii", "empty"],
)
def test_wrong_github_signature_is_401(client, github_webhook, signature):
    response = post_github(
        client, github_webhook, "pull_request", OPENED, headers={"X-Hub-Signature-256": signature(OPENED)}
    )

    assert response.status_code == 401
    assert_refused_in_redis_only(github_webhook, 401)


def test_a_signature_for_other_bytes_is_401(client, github_webhook):
    tampered = OPENED.replace(b"Update the README", b"Delete the README")
    response = post_github(
        client,
        github_webhook,
        "pull_request",
        tampered,
        headers={"X-Hub-Signature-256": github_signature(github_webhook.secret, OPENED)},
    )

    assert response.status_code == 401


def test_wrong_vercel_signature_is_401(client, vercel_webhook):
    response = post_vercel(client, vercel_webhook, vercel_event("deployment.created"), secret="not the secret")

    assert response.status_code == 401
    assert_refused_in_redis_only(vercel_webhook, 401)


def test_a_rejected_delivery_id_cannot_block_the_real_delivery(client, github_webhook):
    post_github(client, github_webhook, "pull_request", OPENED, delivery_id="d-7", secret="forged")

    response = post_github(client, github_webhook, "pull_request", OPENED, delivery_id="d-7")

    assert response.status_code == 202
    assert PullRequest.objects.exists()


def test_a_body_over_the_limit_is_413(client, github_webhook, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = len(OPENED) - 1

    response = post_github(client, github_webhook, "pull_request", OPENED)

    assert response.status_code == 413
    assert_refused_in_redis_only(github_webhook, 413)


def test_a_body_at_the_limit_is_accepted(client, github_webhook, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = len(OPENED)

    assert post_github(client, github_webhook, "pull_request", OPENED).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'"a string"',
        b'{"a": NaN}',
        b'{"a": "\\u0000"}',
        b'{"a": "\\ud800"}',
        b"\xff\xfe{}",
        b'{"a": "\xed\xa0\x80"}',
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({"a": 1}).encode("utf-16"),
    ],
    ids=[
        "broken",
        "empty",
        "array",
        "string",
        "nan",
        "nul",
        "lone surrogate",
        "bom",
        "raw surrogate",
        "deep",
        "utf-16",
    ],
)
def test_a_malformed_body_is_400(client, github_webhook, body):
    response = post_github(client, github_webhook, "pull_request", body)

    assert response.status_code == 400
    delivery = assert_counted_rejection(github_webhook, 400)
    assert delivery.signature_valid


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
@pytest.mark.parametrize("value", ["", "x" * 101, "nul\x00"], ids=["missing", "too long", "nul"])
def test_github_identity_headers_are_required(client, github_webhook, header, value):
    response = post_github(client, github_webhook, "pull_request", OPENED, headers={header: value})

    assert response.status_code == 400
    assert_counted_rejection(github_webhook, 400)


@pytest.mark.parametrize("missing", ["id", "type"])
def test_vercel_identity_fields_are_required(client, vercel_webhook, missing):
    event = vercel_event("deployment.created")
    del event[missing]

    assert post_vercel(client, vercel_webhook, event).status_code == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# Objects shaped a little like deliveries, so some get past identification into processing.
delivery_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=30) | st.integers(),
        "type": st.sampled_from(["deployment.created", "deployment.ready", "deployment.error"]) | st.text(max_size=20),
        "createdAt": st.integers() | st.floats() | st.text(max_size=5),
        "action": st.text(max_size=10),
        "payload": json_values,
        "pull_request": json_values,
        "repository": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    delivery_like.map(lambda value: json.dumps(value).encode()),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=40)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    body=bodies,
    signed=st.booleans(),
    service=st.sampled_from([Integration.Service.GITHUB, Integration.Service.VERCEL]),
    event=st.sampled_from(["ping", "pull_request", "repository", "push"]) | header_text,
    delivery_id=header_text,
)
def test_nothing_a_caller_sends_is_a_500(db, body, signed, service, event, delivery_id):
    webhook = WebhookFactory(integration=IntegrationFactory(service=service), events=[])
    signature = github_signature(webhook.secret if signed else "wrong", body)
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
        "x-vercel-signature": signature.removeprefix("sha256=")[:40],
    }
    if service == Integration.Service.VERCEL and signed:
        headers["x-vercel-signature"] = vercel_signature(webhook.secret, body)

    response = Client().post(endpoint(webhook), data=body, content_type="application/json", headers=headers)
    run_queued_deliveries()

    assert response.status_code in (200, 202, 400, 401), response.content
    delivery = WebhookDelivery.objects.filter(webhook=webhook).first()
    if not signed:
        assert response.status_code == 401
        assert delivery is None
        return
    assert delivery is not None
    assert delivery.status != Status.RECEIVED  # processed (or failed) by the job the view queued
