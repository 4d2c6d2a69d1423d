"""The selectors answer the same from rollups and raw rows, and pick rollups for long ranges."""

from datetime import UTC, datetime, timedelta

import pytest

from analytics.ingest import record_events, record_metrics
from analytics.models import Metric
from analytics.selectors import event_counts, metric_names, metric_series

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def series(organization):
    """Three days of one sample every 97 s, with values that vary."""
    rows = [
        {
            "organization": organization.id,
            "name": "api.latency_ms",
            "value": float(i * 7919 % 500),
            "timestamp": T0 + i * timedelta(seconds=97),
        }
        for i in range(3 * 86400 // 97)
    ]
    record_metrics(rows)
    return organization


def as_tuples(points):
    return [(p.bucket, p.count, round(p.sum, 6), p.min, p.max) for p in points]


@pytest.mark.parametrize(
    ("start", "end", "bucket"),
    [
        (T0, T0 + timedelta(days=3), HOUR),  # aligned
        (T0 + timedelta(minutes=7, seconds=3), T0 + timedelta(days=2, minutes=53), HOUR),  # ragged edges
        (T0 + timedelta(minutes=2), T0 + timedelta(hours=30, minutes=4), timedelta(minutes=15)),  # 5m rollups
        (T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), timedelta(minutes=5)),  # inside one bucket
    ],
)
def test_rollups_answer_exactly_what_raw_rows_answer(series, start, end, bucket):
    kwargs = {"organization": series, "name": "api.latency_ms", "start": start, "end": end, "bucket": bucket}

    from_raw = metric_series(**kwargs, source="raw", cached=False)
    from_rollups = metric_series(**kwargs, source="rollup", cached=False)

    assert from_raw
    assert as_tuples(from_rollups) == as_tuples(from_raw)
    assert sum(p.count for p in from_raw) == Metric.objects.filter(timestamp__gte=start, timestamp__lt=end).count()


def test_long_ranges_read_rollups_and_short_ranges_raw_rows(series, settings):
    settings.ANALYTICS_RAW_MAX_RANGE = timedelta(hours=6)
    # Raw rows vanish without touching the rollups: whichever source answers shows.
    Metric.objects.filter(timestamp__lt=T0 + timedelta(days=1)).delete()
    query = {"organization": series, "name": "api.latency_ms", "bucket": HOUR, "cached": False}

    long_range = metric_series(**query, start=T0, end=T0 + timedelta(days=1))
    short_range = metric_series(**query, start=T0, end=T0 + timedelta(hours=6))

    assert len(long_range) == 24 and sum(p.count for p in long_range) == 86400 // 97 + 1
    assert short_range == []


def test_a_bucket_no_rollup_width_divides_reads_raw_rows(series):
    Metric.objects.filter(timestamp__lt=T0 + timedelta(days=1)).delete()

    odd = metric_series(
        organization=series,
        name="api.latency_ms",
        start=T0,
        end=T0 + timedelta(days=1),
        bucket=timedelta(minutes=7),
        cached=False,
    )

    assert odd == []


def test_reads_are_cached_until_the_next_ingest(series, django_capture_on_commit_callbacks):
    query = {"organization": series, "name": "api.latency_ms", "start": T0, "end": T0 + HOUR, "bucket": HOUR}
    first = metric_series(**query)
    Metric.objects.filter(timestamp__lt=T0 + HOUR).delete()  # no invalidation: the cache answers

    assert metric_series(**query) == first

    with django_capture_on_commit_callbacks(execute=True):
        record_metrics([{"organization": series.id, "name": "other", "value": 1.0, "timestamp": T0}])
    assert metric_series(**query) == []
    assert metric_names(organization=series) == ["api.latency_ms", "other"]


def test_event_counts_by_type_from_rollups_and_raw(organization):
    record_events(
        [
            {
                "organization": organization.id,
                "event_type": ("signup.completed", "checkout.failed", "invoice.paid")[i % 3],
                "category": "development",
                "occurred_at": T0 + i * timedelta(minutes=11),
            }
            for i in range(400)
        ]
    )
    kwargs = {
        "organization": organization,
        "start": T0 + timedelta(minutes=3),
        "end": T0 + timedelta(days=4),
        "bucket": HOUR,
        "cached": False,
    }

    from_raw = event_counts(**kwargs, source="raw")
    from_rollups = event_counts(**kwargs, source="rollup")

    assert from_rollups == from_raw
    assert sum(c.count for c in from_raw) == 399
    assert {c.event_type for c in from_raw} == {"signup.completed", "checkout.failed", "invoice.paid"}
