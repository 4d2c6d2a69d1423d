"""The intake's bounds: nesting, numbers, request rates; and the admin still shows what was stored."""

import json
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse

from integrations.models import Integration, WebhookDelivery
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from integrations.tests.webhook_helpers import github_payload, post_github

# Committed rows: the view reads and writes on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

OPENED = github_payload("pull_request/opened.payload.json")


def nested(depth: int) -> bytes:
    """A delivery-shaped object whose arrays nest ``depth`` levels in all (the object counts as one)."""
    return json.dumps({"action": "opened", "deep": json.loads("[" * (depth - 1) + "]" * (depth - 1))}).encode()


@pytest.fixture
def superuser_client(db):
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(email="root@example.com", password="x" * 20))
    return client


def admin_pages(webhook, delivery) -> list[str]:
    return [
        reverse("admin:integrations_webhookdelivery_change", args=[delivery.pk]),
        reverse("admin:integrations_webhookdelivery_changelist"),
        reverse("admin:integrations_webhook_change", args=[webhook.pk]),
    ]


def test_json_nested_deeper_than_the_bound_is_refused_at_the_door(client, github_webhook, settings):
    # Just under what the door refused before (Python's recursion limit), and far over the bound.
    response = post_github(client, github_webhook, "ping", nested(900))

    assert response.status_code == 400
    assert f"deeper than {settings.JSON_MAX_DEPTH} levels" in response.json()["error"]
    assert WebhookDelivery.objects.get().payload is None


def test_json_at_the_bound_is_stored_and_every_admin_page_shows_it(client, superuser_client, github_webhook, settings):
    response = post_github(client, github_webhook, "ping", nested(settings.JSON_MAX_DEPTH))
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["action"] == "opened"

    for page in admin_pages(github_webhook, delivery):
        assert superuser_client.get(page).status_code == 200, page


@pytest.mark.parametrize("number", ["1e1000000", "-1e400", "9" * 5000], ids=["huge exponent", "-inf", "5000 digits"])
def test_a_number_out_of_range_is_400_without_our_internals(client, github_webhook, number):
    response = post_github(client, github_webhook, "ping", b'{"zen": ' + number.encode() + b"}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("Malformed delivery: ")
    for internal in ("numeric", "jsonb", "INSERT", "SELECT", "integrations_", "psycopg"):
        assert internal not in error


def test_unverified_requests_are_counted_in_redis_and_shown_on_the_webhook_page(
    client, superuser_client, github_webhook
):
    def row_version():
        with connection.cursor() as cursor:
            cursor.execute("SELECT xmin::text FROM integrations_webhook WHERE id = %s", [github_webhook.pk])
            return cursor.fetchone()[0]

    before = row_version()
    assert post_github(client, github_webhook, "ping", OPENED, secret="forged").status_code == 401
    post_github(client, github_webhook, "ping", OPENED, secret="forged")

    assert row_version() == before, "the webhook's row was not written"
    assert not WebhookDelivery.objects.exists()
    page = superuser_client.get(reverse("admin:integrations_webhook_change", args=[github_webhook.pk]))
    assert "2 × 401" in page.content.decode()


def another_github_webhook():
    return WebhookFactory(integration=IntegrationFactory(service=Integration.Service.GITHUB), events=[])


@pytest.mark.usefixtures("rate_limit_window")
def test_one_address_is_limited_per_minute_with_retry_after(client, github_webhook, settings):
    settings.WEBHOOK_RATE_LIMIT_PER_ADDRESS = 3
    # An address of this test's own: other tests in the same minute count against the usual one.
    client.defaults["REMOTE_ADDR"] = f"198.51.100.{secrets.randbelow(250) + 1}"
    other = another_github_webhook()
    for webhook in (github_webhook, github_webhook, other):
        assert post_github(client, webhook, "ping", OPENED).status_code == 202

    refused = post_github(client, other, "ping", OPENED, headers={"X-GitHub-Delivery": "never-stored"})
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert not WebhookDelivery.objects.filter(delivery_id="never-stored").exists()

    # Another address is not affected (no proxy is trusted: the socket's address counts).
    client.defaults["REMOTE_ADDR"] = "2001:db8::7"
    assert post_github(client, github_webhook, "ping", OPENED).status_code == 202


@pytest.mark.usefixtures("rate_limit_window")
def test_one_endpoint_is_limited_per_minute_whatever_the_address(client, github_webhook, settings):
    settings.WEBHOOK_RATE_LIMIT_PER_ENDPOINT = 2
    for address in ("192.0.2.1", "192.0.2.2"):
        client.defaults["REMOTE_ADDR"] = address
        assert post_github(client, github_webhook, "ping", OPENED).status_code == 202

    client.defaults["REMOTE_ADDR"] = "192.0.2.3"
    refused = post_github(client, github_webhook, "ping", OPENED)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert post_github(client, another_github_webhook(), "ping", OPENED).status_code == 202
