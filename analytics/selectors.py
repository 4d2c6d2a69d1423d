"""Reads of metrics and events over time, from raw rows or rollups behind one API.

``metric_series`` and ``event_counts`` bucket a time range with ``date_bin``.
Ranges up to ``ANALYTICS_RAW_MAX_RANGE`` read raw rows; longer ones read the
coarsest rollup width that divides the requested bucket, and raw rows only
for the partial rollup buckets at either end, so the answer is exactly what
the raw rows give, only faster. Results are cached per organization in the
"analytics" cache layer; ingest invalidates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import connections, router
from django.db.models import Count

from agents.models import AgentTask
from analytics.cache import organization_cache
from analytics.models import ROLLUP_ORIGIN, ROLLUP_WIDTHS, Event, Metric
from analytics.rollups import bucket_floor
from core.models import Organization
from development.models import Deployment
from integrations.models import WebhookDelivery

ReadSource = Literal["auto", "raw", "rollup"]


# Named tuples rather than frozen dataclasses: a 30-day hourly series builds
# 720 of them, and a tuple is several times cheaper to construct.
class MetricPoint(NamedTuple):
    """One bucket of a metric series."""

    bucket: datetime
    count: int
    sum: float
    min: float
    max: float

    @property
    def avg(self) -> float:
        return self.sum / self.count


class EventCount(NamedTuple):
    """How many events of one type fell in one bucket."""

    bucket: datetime
    event_type: str
    count: int


@dataclass(frozen=True)
class _Plan:
    """Which parts of [start, end) come from raw rows and which from a rollup width."""

    width: timedelta | None
    rollup_start: datetime
    rollup_end: datetime


def _plan(*, start: datetime, end: datetime, bucket: timedelta, source: ReadSource) -> _Plan:
    usable = [w for w in ROLLUP_WIDTHS if bucket % w == timedelta(0)]
    wants_rollup = source == "rollup" or (source == "auto" and end - start > settings.ANALYTICS_RAW_MAX_RANGE)
    if not (wants_rollup and usable):
        return _Plan(width=None, rollup_start=end, rollup_end=end)
    width = max(usable)
    # Whole rollup buckets inside the range; the partial ones at the edges come from raw rows.
    rollup_start = bucket_floor(start, width)
    if rollup_start < start:
        rollup_start = min(rollup_start + width, end)
    rollup_end = max(bucket_floor(end, width), rollup_start)
    return _Plan(width=width, rollup_start=rollup_start, rollup_end=rollup_end)


def _moment(epoch: float) -> datetime:
    # Buckets travel as epoch seconds: a float loads many times faster than a timestamptz.
    return datetime.fromtimestamp(epoch, tz=UTC)


def _organization_id(organization: Organization | UUID) -> UUID:
    return organization.pk if isinstance(organization, Organization) else organization


def _cached(organization_id: UUID, key: str, compute: Callable[[], list], cached: bool) -> list:
    if not cached:
        return compute()
    return organization_cache(organization_id).get_or_set(key, compute, ttl=settings.ANALYTICS_CACHE_TTL)


_METRIC_SERIES_SQL = """
WITH parts (t, c, s, mn, mx) AS (
    SELECT "timestamp", 1, value, value, value FROM analytics_metric
    WHERE organization_id = %(org)s AND name = %(name)s AND "timestamp" >= %(start)s AND "timestamp" < %(rollup_start)s
    UNION ALL
    SELECT bucket, count, sum, min, max FROM analytics_metricrollup
    WHERE organization_id = %(org)s AND name = %(name)s AND width = %(width)s
      AND bucket >= %(rollup_start)s AND bucket < %(rollup_end)s
    UNION ALL
    SELECT "timestamp", 1, value, value, value FROM analytics_metric
    WHERE organization_id = %(org)s AND name = %(name)s AND "timestamp" >= %(rollup_end)s AND "timestamp" < %(end)s
)
SELECT date_part('epoch', date_bin(%(bucket)s, t, %(origin)s)) AS b, sum(c)::bigint, sum(s), min(mn), max(mx)
FROM parts GROUP BY b ORDER BY b
"""

_EVENT_COUNTS_SQL = """
WITH parts (t, event_type, c) AS (
    SELECT occurred_at, event_type, 1 FROM analytics_event
    WHERE organization_id = %(org)s AND occurred_at >= %(start)s AND occurred_at < %(rollup_start)s
    UNION ALL
    SELECT bucket, event_type, count FROM analytics_eventrollup
    WHERE organization_id = %(org)s AND width = %(width)s AND bucket >= %(rollup_start)s AND bucket < %(rollup_end)s
    UNION ALL
    SELECT occurred_at, event_type, 1 FROM analytics_event
    WHERE organization_id = %(org)s AND occurred_at >= %(rollup_end)s AND occurred_at < %(end)s
)
SELECT date_part('epoch', date_bin(%(bucket)s, t, %(origin)s)) AS b, event_type, sum(c)::bigint
FROM parts GROUP BY b, event_type ORDER BY b, event_type
"""


def _cursor_reading(model):
    """A cursor on the database the ORM would read ``model`` from (a replica when the router allows it),
    so the hand-written SQL goes where the page's ORM queries go."""
    return connections[router.db_for_read(model)].cursor()


def _query(
    sql: str, *, model, start: datetime, end: datetime, bucket: timedelta, source: ReadSource, **params
) -> list[tuple]:
    plan = _plan(start=start, end=end, bucket=bucket, source=source)
    with _cursor_reading(model) as cursor:
        cursor.execute(
            sql,
            {
                "start": start,
                "end": end,
                "bucket": bucket,
                "origin": ROLLUP_ORIGIN,
                # A width that matches no row when the plan reads raw rows only.
                "width": plan.width or timedelta(0),
                "rollup_start": plan.rollup_start,
                "rollup_end": plan.rollup_end,
                **params,
            },
        )
        return cursor.fetchall()


def metric_series(
    *,
    organization: Organization | UUID,
    name: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    source: ReadSource = "auto",
    cached: bool = True,
) -> list[MetricPoint]:
    """One metric of one organization over [start, end), per ``bucket``; empty buckets are absent.

    ``source`` forces raw rows or rollups (benchmarks, tests); "auto" picks by range.
    """
    organization_id = _organization_id(organization)

    def compute() -> list[MetricPoint]:
        rows = _query(
            _METRIC_SERIES_SQL,
            model=Metric,
            start=start,
            end=end,
            bucket=bucket,
            source=source,
            org=organization_id,
            name=name,
        )
        return [MetricPoint(_moment(bucket), count, total, low, high) for bucket, count, total, low, high in rows]

    key = f"metric:{name}:{start.isoformat()}:{end.isoformat()}:{bucket.total_seconds():g}:{source}"
    return _cached(organization_id, key, compute, cached)


def event_counts(
    *,
    organization: Organization | UUID,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    source: ReadSource = "auto",
    cached: bool = True,
) -> list[EventCount]:
    """Events of one organization over [start, end) per type and ``bucket``; see ``metric_series``."""
    organization_id = _organization_id(organization)

    def compute() -> list[EventCount]:
        rows = _query(
            _EVENT_COUNTS_SQL, model=Event, start=start, end=end, bucket=bucket, source=source, org=organization_id
        )
        return [EventCount(_moment(bucket), event_type, count) for bucket, event_type, count in rows]

    key = f"events:{start.isoformat()}:{end.isoformat()}:{bucket.total_seconds():g}:{source}"
    return _cached(organization_id, key, compute, cached)


def metric_names(*, organization: Organization | UUID) -> list[str]:
    """The metric names an organization has samples or rollups of (the dashboard's name filter).

    Rollups outlive pruned samples; samples loaded outside ingest (the sample
    data) have no rollups until ``refresh_rollups`` runs.
    """
    organization_id = _organization_id(organization)

    def compute() -> list[str]:
        rollups, samples = _metric_names_sql("analytics_metricrollup"), _metric_names_sql("analytics_metric")
        sql = f"({rollups}) UNION ({samples}) ORDER BY 1"
        with _cursor_reading(Metric) as cursor:
            cursor.execute(sql, {"org": organization_id})
            return [row[0] for row in cursor.fetchall()]

    return _cached(organization_id, "metric-names", compute, True)


def _metric_names_sql(table: str) -> str:
    # A loose index scan over (organization_id, name, ...): one probe per name,
    # not a scan of the organization's rows.
    return f"""
    WITH RECURSIVE names(name) AS (
        (SELECT name FROM {table} WHERE organization_id = %(org)s ORDER BY name LIMIT 1)
        UNION ALL
        SELECT (SELECT r.name FROM {table} r
                WHERE r.organization_id = %(org)s AND r.name > names.name ORDER BY r.name LIMIT 1)
        FROM names WHERE names.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
    """  # noqa: S608 - the table is one of two constants


def newest_activity(*, organization: Organization | UUID) -> datetime | None:
    """When the organization's newest event or metric sample happened, or None for neither.

    The dashboard opens on a range that holds it. One probe of the events'
    (organization, -occurred_at) index, and one of the metrics' series index
    per metric name.
    """
    organization_id = _organization_id(organization)

    def compute() -> list[datetime]:
        sql = f"""
        SELECT max(t) FROM (
            (SELECT occurred_at AS t FROM analytics_event WHERE organization_id = %(org)s
             ORDER BY occurred_at DESC LIMIT 1)
            UNION ALL
            SELECT (SELECT max("timestamp") FROM analytics_metric m
                    WHERE m.organization_id = %(org)s AND m.name = names.name)
            FROM ({_metric_names_sql("analytics_metric")}) names
        ) newest
        """  # noqa: S608 - composed of constants
        with _cursor_reading(Event) as cursor:
            cursor.execute(sql, {"org": organization_id})
            newest = cursor.fetchone()[0]
        return [newest] if newest else []

    found = _cached(organization_id, "newest-activity", compute, True)
    return found[0] if found else None


class Outcome(NamedTuple):
    """How many rows of one status (a task's, a webhook delivery's) fell in a range."""

    status: str
    count: int


def task_outcomes(*, organization: Organization | UUID, start: datetime, end: datetime) -> list[Outcome]:
    """The organization's agent tasks created in [start, end), per status, most first."""
    organization_id = _organization_id(organization)

    def compute() -> list[Outcome]:
        rows = (
            AgentTask.objects.filter(organization_id=organization_id, created_at__gte=start, created_at__lt=end)
            .order_by()
            .values_list("status")
            .annotate(count=Count("*"))
        )
        return sorted((Outcome(status, count) for status, count in rows), key=lambda o: (-o.count, o.status))

    return _cached(organization_id, f"task-outcomes:{start.isoformat()}:{end.isoformat()}", compute, True)


# Task duration classes: (upper bound in ms, label); the last has no bound.
DURATION_CLASSES: tuple[tuple[float, str], ...] = (
    (10_000, "under 10 s"),
    (60_000, "10 s – 1 min"),
    (600_000, "1 – 10 min"),
    (3_600_000, "10 min – 1 h"),
    (float("inf"), "1 h or more"),
)


class DurationSummary(NamedTuple):
    """How long finished tasks ran: a histogram over ``DURATION_CLASSES`` and percentiles in ms."""

    histogram: list[tuple[str, int]]
    median_ms: float | None
    p90_ms: float | None


def task_durations(*, organization: Organization | UUID, start: datetime, end: datetime) -> DurationSummary:
    """Durations of the organization's tasks that finished (completed or failed) in [start, end)."""
    organization_id = _organization_id(organization)

    def compute() -> list:
        sql = """
        WITH finished AS (
            SELECT duration_ms FROM agents_agenttask
            WHERE organization_id = %(org)s AND completed_at >= %(start)s AND completed_at < %(end)s
              AND duration_ms IS NOT NULL
        )
        SELECT width_bucket(duration_ms::float8, %(bounds)s::float8[]) AS class, count(*), NULL, NULL
        FROM finished GROUP BY class
        UNION ALL
        SELECT -1, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms)
        FROM finished
        """
        bounds = [bound for bound, _ in DURATION_CLASSES[:-1]]
        with _cursor_reading(AgentTask) as cursor:
            cursor.execute(sql, {"org": organization_id, "start": start, "end": end, "bounds": bounds})
            return cursor.fetchall()

    rows = _cached(organization_id, f"task-durations:{start.isoformat()}:{end.isoformat()}", compute, True)
    counts = {index: count for index, count, _, _ in rows if index >= 0}
    median, p90 = next((m, p) for index, _, m, p in rows if index == -1)
    histogram = [(label, counts.get(index, 0)) for index, (_, label) in enumerate(DURATION_CLASSES)]
    return DurationSummary(histogram, median, p90)


class DeploymentBucket(NamedTuple):
    """Deployments that finished in one bucket: how many became ready or failed, and the median lead time."""

    bucket: datetime
    ready: int
    failed: int
    median_lead_seconds: float | None

    @property
    def failure_rate(self) -> float:
        return self.failed / (self.ready + self.failed) if self.ready + self.failed else 0.0


def deployment_outcomes(
    *, organization: Organization | UUID, start: datetime, end: datetime, bucket: timedelta
) -> list[DeploymentBucket]:
    """The organization's deployments created in [start, end) that finished, per ``bucket`` of creation.

    Lead time is from the deployment's creation to ready; failed means the
    ``error`` state (a canceled deployment is neither).
    """
    organization_id = _organization_id(organization)

    def compute() -> list[DeploymentBucket]:
        sql = """
        SELECT date_part('epoch', date_bin(%(bucket)s, created_at, %(origin)s)) AS b,
               count(*) FILTER (WHERE state = 'ready'), count(*) FILTER (WHERE state = 'error'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY date_part('epoch', ready_at - created_at))
                   FILTER (WHERE state = 'ready')
        FROM development_deployment
        WHERE organization_id = %(org)s AND created_at >= %(start)s AND created_at < %(end)s
          AND state IN ('ready', 'error')
        GROUP BY b ORDER BY b
        """
        params = {"org": organization_id, "start": start, "end": end, "bucket": bucket, "origin": ROLLUP_ORIGIN}
        with _cursor_reading(Deployment) as cursor:
            cursor.execute(sql, params)
            return [DeploymentBucket(_moment(b), ready, failed, lead) for b, ready, failed, lead in cursor.fetchall()]

    key = f"deployments:{start.isoformat()}:{end.isoformat()}:{bucket.total_seconds():g}"
    return _cached(organization_id, key, compute, True)


def webhook_outcomes(*, organization: Organization | UUID, start: datetime, end: datetime) -> list[Outcome]:
    """The organization's webhook deliveries received in [start, end), per status, most first."""
    organization_id = _organization_id(organization)

    def compute() -> list[Outcome]:
        rows = (
            WebhookDelivery.objects.filter(
                webhook__integration__organization_id=organization_id, created_at__gte=start, created_at__lt=end
            )
            .order_by()
            .values_list("status")
            .annotate(count=Count("*"))
        )
        return sorted((Outcome(status, count) for status, count in rows), key=lambda o: (-o.count, o.status))

    return _cached(organization_id, f"webhook-outcomes:{start.isoformat()}:{end.isoformat()}", compute, True)
