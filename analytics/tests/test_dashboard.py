"""The analytics dashboard: staff-only, renders charts and event counts from real data."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from analytics.ingest import record_events, record_metrics
from core.tests.factories import OrganizationFactory, UserFactory
from development.models import Deployment
from development.tests.factories import DeploymentFactory
from integrations.models import WebhookDelivery
from integrations.tests.factories import WebhookDeliveryFactory, WebhookFactory

URL = reverse("analytics:dashboard")


@pytest.fixture
def data(organization):
    now = timezone.now()
    record_metrics(
        {
            "organization": organization.id,
            "name": name,
            "value": float(i % 17),
            "timestamp": now - timedelta(minutes=i),
        }
        for i in range(600)
        for name in ("api.latency_ms", "queue.depth")
    )
    # The sample data's kind of past: the platform's own events.
    record_events(
        (
            {
                "organization": organization.id,
                "event_type": ("deployment.ready", "pull_request.merged", "pull_request.merged")[i % 3],
                "category": "development",
                "occurred_at": now - timedelta(minutes=7 * i),
            }
            for i in range(30)
        ),
        as_platform=True,
    )
    return organization


def test_anonymous_visitors_are_sent_to_the_login_page(db, client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_users_are_sent_to_the_login_page(db, client):
    client.force_login(UserFactory())

    assert client.get(URL).status_code == 302


def test_staff_see_metric_charts_and_event_counts(client, admin_user, data):
    client.force_login(admin_user)

    response = client.get(URL, {"organization": data.id, "range": "24h"})

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<polyline class="line"') == 2  # one chart per metric
    assert "api.latency_ms" in html and "queue.depth" in html
    assert "<h2>Events <small>(30)</small></h2>" in html
    assert [(t, n) for t, n, _ in response.context["event_types"]] == [
        ("pull_request.merged", 20),
        ("deployment.ready", 10),
    ]
    assert html.count('<rect class="column') == len({c for c in response.context["event_chart"].bars})


def test_choosing_a_metric_and_a_long_range_shows_one_chart(client, admin_user, data):
    client.force_login(admin_user)

    response = client.get(URL, {"organization": data.id, "name": "queue.depth", "range": "30d"})

    assert response.status_code == 200
    assert [name for name, _, _ in response.context["charts"]] == ["queue.depth"]
    assert not response.context["charts"][0][1].empty


def test_an_organization_without_data_renders_empty_states(client, admin_user):
    client.force_login(admin_user)

    response = client.get(URL, {"organization": OrganizationFactory().id})

    assert response.status_code == 200
    assert b"No metrics for this organization yet." in response.content
    assert b"No events in this range." in response.content


def test_the_page_is_cached_per_organization(client, admin_user, data, django_assert_max_num_queries):
    client.force_login(admin_user)
    client.get(URL, {"organization": data.id})

    # Second view: session, user, organization lookups only; the charts come from the cache.
    with django_assert_max_num_queries(5):
        assert client.get(URL, {"organization": data.id}).status_code == 200


def _event(organization, occurred_at) -> dict:
    return {
        "organization": organization.id,
        "event_type": "signup.completed",
        "category": "development",
        "occurred_at": occurred_at,
    }


def test_the_page_opens_on_the_newest_data_with_the_organization_selected_and_buckets_named(client, admin_user):
    organization = OrganizationFactory(name="Aardvark Ltd")  # first by name: the page's default
    record_events([_event(organization, timezone.now() - timedelta(days=4))])
    client.force_login(admin_user)

    response = client.get(URL)

    html = response.content.decode()
    assert response.context["range_key"] == "7d"
    assert f'<option value="{organization.pk}" selected>' in html
    assert "metric buckets of 1 h" in html and "Events per type, per 2 h" in html
    assert "<h2>Events <small>(1)</small></h2>" in html


def test_data_older_than_the_longest_range_ends_the_opening_range(client, admin_user, organization):
    long_ago = timezone.now() - timedelta(days=400)
    record_events([_event(organization, long_ago)])
    client.force_login(admin_user)

    response = client.get(URL, {"organization": organization.pk})

    assert response.context["range_key"] == "90d"
    assert response.context["start"] < long_ago < response.context["end"] <= long_ago + timedelta(days=1)
    assert response.context["event_total"] == 1


def test_tasks_deployments_and_webhooks_are_charted_with_their_numbers(client, admin_user, organization):
    now = timezone.now()
    for duration_ms, status in ((4_000, AgentTask.Status.COMPLETED), (90_000, AgentTask.Status.COMPLETED)):
        AgentTaskFactory(
            organization=organization, status=status, started_at=now - timedelta(minutes=5),
            completed_at=now - timedelta(minutes=5) + timedelta(milliseconds=duration_ms), duration_ms=duration_ms,
        )  # fmt: skip
    AgentTaskFactory(organization=organization, status=AgentTask.Status.QUEUED)
    for state in (Deployment.State.READY, Deployment.State.READY, Deployment.State.READY, Deployment.State.ERROR):
        DeploymentFactory(
            organization=organization, state=state, ready_at=now if state == Deployment.State.READY else None
        )
    webhook = WebhookFactory(integration__organization=organization)
    WebhookDeliveryFactory(webhook=webhook, status=WebhookDelivery.Status.PROCESSED)
    client.force_login(admin_user)

    response = client.get(URL, {"organization": organization.pk, "range": "1h"})

    html = response.content.decode()
    assert [(label, count) for label, count, _, _ in response.context["task_outcomes"]] == [
        ("Completed", 2),
        ("Queued", 1),
    ]
    assert [count for _, count, _ in response.context["task_durations"]] == [1, 0, 1, 0, 0]
    assert "failure rate 25.0 %" in html
    assert not response.context["lead_time_chart"].empty
    assert [(label, count) for label, count, _, _ in response.context["webhook_outcomes"]] == [("Processed", 1)]
    assert html.count('class="visually-hidden"') >= 2  # the numbers behind the SVG charts


def test_the_favicon_is_a_static_icon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == static("companyos/favicon.ico")
    assert Path(finders.find("companyos/favicon.ico")).read_bytes()[:4] == b"\x00\x00\x01\x00"  # an ICO header
