"""Rollups hold exactly the aggregates of the raw rows, however the rows arrived."""

import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections, transaction

from analytics.ingest import record_events, record_metrics
from analytics.models import ROLLUP_WIDTHS, Event, EventRollup, Metric, MetricRollup
from analytics.rollups import bucket_floor, rollups_refresh
from analytics.services import analytics_prune
from analytics.tests.factories import EventFactory, MetricFactory
from core.tests.factories import OrganizationFactory

T0 = datetime(2026, 11, 2, 9, 58, 30, tzinfo=UTC)


def metric_rows(organization, count, *, start=T0, step=timedelta(seconds=37), names=("a", "b")):
    return [
        {
            "organization": organization.id,
            "name": names[i % len(names)],
            "value": (i * 7919 % 1000) / 10 - 30,
            "timestamp": start + i * step,
        }
        for i in range(count)
    ]


def expected_metric_rollups():
    """The rollups computed in Python from the raw rows."""
    expected = {}
    for width in ROLLUP_WIDTHS:
        groups = defaultdict(list)
        for m in Metric.objects.all():
            groups[(m.organization_id, m.name, width, bucket_floor(m.timestamp, width))].append(m.value)
        for key, values in groups.items():
            expected[key] = (len(values), sum(values), min(values), max(values))
    return expected


def actual_metric_rollups():
    return {
        (r.organization_id, r.name, r.width, r.bucket): (r.count, r.sum, r.min, r.max)
        for r in MetricRollup.objects.all()
    }


def assert_metric_rollups_match_raw():
    expected, actual = expected_metric_rollups(), actual_metric_rollups()
    assert actual.keys() == expected.keys()
    for key, (count, total, low, high) in expected.items():
        assert actual[key][0] == count
        assert actual[key][1] == pytest.approx(total)
        assert actual[key][2:] == (low, high)


def assert_event_rollups_match_raw():
    expected = defaultdict(int)
    for width in ROLLUP_WIDTHS:
        for e in Event.objects.all():
            expected[(e.organization_id, e.event_type, width, bucket_floor(e.occurred_at, width))] += 1
    actual = {(r.organization_id, r.event_type, r.width, r.bucket): r.count for r in EventRollup.objects.all()}
    assert actual == dict(expected)


def test_incremental_ingest_in_several_overlapping_batches_matches_raw(organization):
    rows = metric_rows(organization, 900)
    # Batches overlap the same buckets and arrive out of order.
    for batch in (rows[600:], rows[:250], rows[250:600]):
        record_metrics(batch)

    assert_metric_rollups_match_raw()
    hour = MetricRollup.objects.get(name="a", width=timedelta(hours=1), bucket=datetime(2026, 11, 2, 10, tzinfo=UTC))
    assert hour.avg == pytest.approx(hour.sum / hour.count)


def test_event_ingest_keeps_event_rollups(organization):
    record_events(
        [
            {"organization": organization.id, "event_type": t, "category": "development", "occurred_at": T0 + i * d}
            for i, (t, d) in enumerate([("signup.completed", timedelta(minutes=3))] * 40)
        ]
    )
    record_events([{"organization": organization.id, "event_type": "invoice.paid", "category": "development"}])

    assert_event_rollups_match_raw()


def test_refresh_picks_up_rows_written_by_other_paths(organization):
    record_metrics(metric_rows(organization, 100))
    MetricFactory.create_batch(5, organization=organization, name="a", timestamp=T0 + timedelta(minutes=2))
    EventFactory.create_batch(3, organization=organization, occurred_at=T0)
    assert actual_metric_rollups() != expected_metric_rollups()  # the ORM rows are not rolled up yet

    out = StringIO()
    call_command("refresh_rollups", since="2026-11-02T00:00:00+00:00", stdout=out)

    assert "Refreshed rollups since 2026-11-02T00:00:00+00:00" in out.getvalue()
    assert_metric_rollups_match_raw()
    assert_event_rollups_match_raw()


def test_refresh_is_idempotent_and_leaves_older_buckets_alone(organization):
    record_metrics(metric_rows(organization, 300, step=timedelta(minutes=1)))
    early = bucket_floor(T0, timedelta(hours=1))
    Metric.objects.filter(timestamp__lt=early + timedelta(hours=1)).delete()  # raw gone, rollups stay
    before = {k: v for k, v in actual_metric_rollups().items() if k[3] < early + timedelta(hours=1)}

    first = rollups_refresh(since=early + timedelta(hours=1, minutes=20))  # rounded down to the hour
    after_first = actual_metric_rollups()
    second = rollups_refresh(since=early + timedelta(hours=1))

    assert first.since == second.since == early + timedelta(hours=1)
    assert actual_metric_rollups() == after_first
    assert {k: v for k, v in after_first.items() if k[3] < first.since} == before


def test_prune_removes_old_raw_rows_and_keeps_rollups(organization):
    record_metrics(metric_rows(organization, 200, step=timedelta(minutes=1)))
    EventFactory(organization=organization, occurred_at=T0)
    cutoff = T0 + timedelta(minutes=100)
    rollups_before = MetricRollup.objects.count()

    result = analytics_prune(before=cutoff, batch_size=30)

    assert result.metrics == 100 and result.events == 1
    assert not Metric.objects.filter(timestamp__lt=cutoff).exists()
    assert Metric.objects.count() == 100
    assert MetricRollup.objects.count() == rollups_before

    result = analytics_prune(before=cutoff, rollups_before=cutoff)
    assert result.metric_rollups > 0
    assert not MetricRollup.objects.filter(bucket__lt=cutoff).exists()


@pytest.mark.django_db(transaction=True)
def test_a_refresh_waits_for_a_running_ingest_and_loses_none_of_it():
    organization = OrganizationFactory()
    record_metrics(metric_rows(organization, 50))
    ingested, release = threading.Event(), threading.Event()
    refreshed = threading.Event()

    def ingest_and_hold() -> None:
        try:
            with transaction.atomic():
                # New buckets: no rollup row for the refresh to trip over; only the lock holds it back.
                record_metrics(metric_rows(organization, 50, start=T0 + timedelta(days=1)))
                ingested.set()
                release.wait(10)
        finally:
            connections.close_all()

    def refresh() -> None:
        try:
            rollups_refresh(since=T0 - timedelta(days=1))
            refreshed.set()
        finally:
            connections.close_all()

    ingester = threading.Thread(target=ingest_and_hold)
    ingester.start()
    assert ingested.wait(10)
    refresher = threading.Thread(target=refresh)
    refresher.start()

    assert not refreshed.wait(0.5)  # blocked by the uncommitted ingest
    release.set()
    ingester.join(10)
    refresher.join(10)

    assert refreshed.is_set()
    assert Metric.objects.count() == 100
    assert_metric_rollups_match_raw()
