"""The analytics dashboard: staff-only, renders charts and event counts from real data."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.ingest import record_events, record_metrics
from core.tests.factories import OrganizationFactory, UserFactory

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
    record_events(
        {
            "organization": organization.id,
            "event_type": ("deployment.ready", "pull_request.merged", "pull_request.merged")[i % 3],
            "category": "development",
            "occurred_at": now - timedelta(minutes=7 * i),
        }
        for i in range(30)
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
    assert html.count('<rect class="column"') == len({c for c in response.context["event_chart"].bars})


def test_choosing_a_metric_and_a_long_range_shows_one_chart(client, admin_user, data):
    client.force_login(admin_user)

    response = client.get(URL, {"organization": data.id, "name": "queue.depth", "range": "30d"})

    assert response.status_code == 200
    assert [name for name, _ in response.context["charts"]] == ["queue.depth"]
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
