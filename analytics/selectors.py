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
from django.db import connection

from analytics.cache import organization_cache
from analytics.models import ROLLUP_ORIGIN, ROLLUP_WIDTHS
from analytics.rollups import bucket_floor
from core.models import Organization

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


def _query(sql: str, *, start: datetime, end: datetime, bucket: timedelta, source: ReadSource, **params) -> list[tuple]:
    plan = _plan(start=start, end=end, bucket=bucket, source=source)
    with connection.cursor() as cursor:
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
            _METRIC_SERIES_SQL, start=start, end=end, bucket=bucket, source=source, org=organization_id, name=name
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
        rows = _query(_EVENT_COUNTS_SQL, start=start, end=end, bucket=bucket, source=source, org=organization_id)
        return [EventCount(_moment(bucket), event_type, count) for bucket, event_type, count in rows]

    key = f"events:{start.isoformat()}:{end.isoformat()}:{bucket.total_seconds():g}:{source}"
    return _cached(organization_id, key, compute, cached)


def metric_names(*, organization: Organization | UUID) -> list[str]:
    """The metric names an organization has rollups for (the dashboard's name filter)."""
    organization_id = _organization_id(organization)

    def compute() -> list[str]:
        # A loose index scan over the rollup primary key: one probe per name,
        # not a scan of the organization's buckets.
        sql = """
        WITH RECURSIVE names(name) AS (
            (SELECT name FROM analytics_metricrollup WHERE organization_id = %(org)s ORDER BY name LIMIT 1)
            UNION ALL
            SELECT (SELECT r.name FROM analytics_metricrollup r
                    WHERE r.organization_id = %(org)s AND r.name > names.name ORDER BY r.name LIMIT 1)
            FROM names WHERE names.name IS NOT NULL
        )
        SELECT name FROM names WHERE name IS NOT NULL
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, {"org": organization_id})
            return [row[0] for row in cursor.fetchall()]

    return _cached(organization_id, "metric-names", compute, True)
