"""Bulk ingest: validation rules, all-or-nothing batches, COPY, cache invalidation."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from django.db import transaction

from analytics.cache import organization_cache
from analytics.ingest import IngestError, RowError, record_events, record_metrics
from analytics.models import Event, Metric, MetricRollup
from core.tests.factories import OrganizationFactory, UserFactory

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def metric(org, **overrides):
    return {"organization": org.id, "name": "api.latency_ms", "value": 12.5, "timestamp": T0, **overrides}


def event(org, **overrides):
    return {"organization": org.id, "event_type": "signup.completed", "category": "development", **overrides}


def test_record_metrics_writes_every_field_and_returns_counts(organization):
    other = OrganizationFactory()
    rows = [
        metric(organization, unit="ms", dimensions={"region": "eu"}, source="vercel"),
        metric(organization, value=7, timestamp=(T0 + timedelta(seconds=1)).isoformat()),
        metric(other, name="queue.depth", value=3.0),
    ]

    result = record_metrics(rows)

    assert result.rows == 3
    assert result.by_organization == {organization.id: 2, other.id: 1}
    first = Metric.objects.get(organization=organization, value=12.5)
    assert (first.name, first.unit, first.dimensions, first.source, first.timestamp) == (
        "api.latency_ms",
        "ms",
        {"region": "eu"},
        "vercel",
        T0,
    )
    defaulted = Metric.objects.get(organization=organization, value=7.0)
    assert (defaulted.unit, defaulted.dimensions, defaulted.source) == ("", {}, "system")
    assert defaulted.id.version == 7


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"value": float("nan")}, "value", "not finite"),
        ({"value": float("inf")}, "value", "not finite"),
        ({"value": "12"}, "value", "not a number"),
        ({"value": True}, "value", "not a number"),
        ({"timestamp": datetime(2026, 11, 2, 10, 0)}, "timestamp", "timezone-naive timestamp"),
        ({"timestamp": "yesterday"}, "timestamp", "not an ISO 8601 timestamp"),
        ({"organization": "not-a-uuid"}, "organization", "not a UUID"),
        ({"organization": uuid4()}, "organization", "unknown organization"),
        ({"name": ""}, "name", "empty"),
        ({"name": "x" * 201}, "name", "longer than 200 characters"),
        ({"source": "fax"}, "source", "not one of agent, figma, github, linkedin, system, twitter, user, vercel"),
        ({"source": ["system"]}, "source", "not one of agent, figma, github, linkedin, system, twitter, user, vercel"),
        ({"organization": {"id": 1}}, "organization", "not a UUID"),
        ({"dimensions": ["region"]}, "dimensions", "not a JSON object"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_record_metrics_refuses_a_bad_row(organization, overrides, field, reason):
    with pytest.raises(IngestError) as excinfo:
        record_metrics([metric(organization), metric(organization, **overrides)])

    assert excinfo.value.errors == [RowError(1, field, reason)]
    assert not Metric.objects.exists()


def test_required_fields_are_reported_per_row(organization):
    with pytest.raises(IngestError) as excinfo:
        record_metrics([{"organization": organization.id, "value": 1.0}, "not a dict"])

    assert excinfo.value.errors == [
        RowError(0, "name", "required"),
        RowError(0, "timestamp", "required"),
        RowError(1, "", "not a mapping"),
    ]


def test_a_bad_batch_writes_nothing_and_leaves_the_callers_transaction_usable(organization):
    rows = [metric(organization, timestamp=T0 + timedelta(minutes=i)) for i in range(1000)]
    rows[999]["value"] = float("-inf")

    with transaction.atomic():
        with pytest.raises(IngestError) as excinfo:
            record_metrics(rows)
        assert [e.index for e in excinfo.value.errors] == [999]
        record_metrics(rows[:10])  # the transaction goes on

    assert Metric.objects.count() == 10
    assert sum(r.count for r in MetricRollup.objects.filter(width=timedelta(hours=1))) == 10


def test_a_rolled_back_caller_takes_the_batch_with_it(organization):
    with pytest.raises(RuntimeError), transaction.atomic():
        record_metrics([metric(organization)])
        raise RuntimeError

    assert not Metric.objects.exists()
    assert not MetricRollup.objects.exists()


def test_unknown_organizations_cost_one_query_per_batch(organization, django_assert_num_queries):
    rows = [metric(organization, timestamp=T0 + timedelta(seconds=i)) for i in range(500)]
    # lookup, savepoint, lock, COPY, rollup upsert, release savepoint
    with django_assert_num_queries(6):
        record_metrics(rows)


def test_an_empty_batch_writes_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert record_metrics([]).rows == 0


def test_ingest_invalidates_the_organizations_cache_on_commit(organization, django_capture_on_commit_callbacks):
    cache = organization_cache(organization.id)
    cache.set("probe", "stale")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        record_metrics([metric(organization)])
    assert cache.get("probe") == "stale"  # not before the commit

    for callback in callbacks:
        callback()
    assert cache.get("probe") is None


def test_record_events_validates_references_and_fills_defaults(organization):
    user = UserFactory()
    subject = uuid4()

    result = record_events(
        [
            event(organization, actor_user=user.id, subject_type="development.deployment", subject_id=subject),
            event(organization, occurred_at=T0, payload={"environment": "preview"}, source="vercel"),
        ]
    )

    assert result.rows == 2
    with_actor = Event.objects.get(actor_user=user)
    assert (with_actor.subject_id, with_actor.source, with_actor.payload) == (subject, "system", {})
    assert with_actor.occurred_at > T0  # defaulted to now
    assert Event.objects.get(occurred_at=T0).payload == {"environment": "preview"}


def test_record_events_refuses_unknown_actors_and_bad_choices(organization):
    with pytest.raises(IngestError) as excinfo:
        record_events(
            [
                event(organization, actor_user=uuid4()),
                event(organization, category="weather"),
                event(organization, event_type=None, actor_agent=uuid4()),
            ]
        )

    assert [(e.index, e.field) for e in excinfo.value.errors] == [
        (0, "actor_user"),
        (1, "category"),
        (2, "event_type"),
        (2, "actor_agent"),
    ]
    assert excinfo.value.errors[0].reason == "unknown user"
    assert not Event.objects.exists()


def test_record_events_refuses_the_types_the_platforms_changes_publish(organization):
    """A ``deployment.…`` row would reach the websocket's subscribers as a change to a deployment."""
    with pytest.raises(IngestError) as excinfo:
        record_events(
            [
                event(organization, event_type="checkout.failed"),
                event(organization, event_type="deployment.ready"),
                event(organization, event_type="agent.task.completed"),
            ]
        )

    assert [(e.index, e.field, e.reason) for e in excinfo.value.errors] == [
        (1, "event_type", "'deployment.…' events are published by the platform's own changes, not ingested"),
        (2, "event_type", "'agent.task.…' events are published by the platform's own changes, not ingested"),
    ]
    assert not Event.objects.exists()
    # Named like a topic but outside it: the analytics stream's own.
    assert (
        record_events(
            [event(organization, event_type="deployments.weekly"), event(organization, event_type="agent.spawned")]
        ).rows
        == 2
    )


def test_a_synthetic_history_may_hold_the_platforms_event_types(organization):
    assert record_events([event(organization, event_type="deployment.ready")], as_platform=True).rows == 1
    assert Event.objects.get().event_type == "deployment.ready"
