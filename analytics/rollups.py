"""Rollups: continuous aggregates of metrics and events on plain PostgreSQL.

Each raw row is counted once in every width of ``ROLLUP_WIDTHS``. Two paths
keep the rollup tables current, both built on the same upsert:

* ``analytics.ingest`` aggregates each batch in Python (it reads every row
  anyway) and adds the result in the ingest transaction
  (``metric_rollups_add`` / ``event_rollups_add``), so bulk-ingested data is
  in the rollups the moment it is committed;
* ``rollups_refresh`` (``manage.py refresh_rollups``) recomputes every bucket
  from a point in time on from raw rows. It picks up rows written by other
  paths (single ``Event`` rows published on state changes, the ORM) and is
  idempotent; run it every few minutes.

The two must not interleave: a refresh that replaced a bucket while an ingest
transaction was adding to it would lose either the refresh or the increment.
Ingest holds a shared advisory lock until its transaction ends, a refresh the
exclusive one, so a refresh waits for running ingests and reads their rows
after they commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection, transaction

from analytics.cache import invalidate_on_commit
from analytics.models import ROLLUP_ORIGIN, ROLLUP_WIDTHS

# Aggregates of one batch, keyed by (organization id, series, width, bucket start).
MetricAggregates = dict[tuple[UUID, str, timedelta, datetime], list[float]]  # [count, sum, min, max]
EventAggregates = dict[tuple[UUID, str, timedelta, datetime], int]

# Any bigint that no other part of CompanyOS uses as an advisory lock key.
_ROLLUP_LOCK_KEY = 0x616E_616C_7974_6963  # "analytic"

FINEST_WIDTH: timedelta = min(ROLLUP_WIDTHS)
COARSEST_WIDTH: timedelta = max(ROLLUP_WIDTHS)

# Both paths add to what a bucket holds; after the refresh's DELETE nothing conflicts.
_METRIC_UPSERT = """
INSERT INTO analytics_metricrollup AS r (organization_id, name, width, bucket, count, sum, min, max)
{select}
ON CONFLICT (organization_id, name, width, bucket) DO UPDATE SET
    count = r.count + EXCLUDED.count,
    sum = r.sum + EXCLUDED.sum,
    min = LEAST(r.min, EXCLUDED.min),
    max = GREATEST(r.max, EXCLUDED.max)
"""

_EVENT_UPSERT = """
INSERT INTO analytics_eventrollup AS r (organization_id, event_type, width, bucket, count)
{select}
ON CONFLICT (organization_id, event_type, width, bucket) DO UPDATE SET count = r.count + EXCLUDED.count
"""

# Ingest sends buckets aggregated in Python, sorted so that concurrent ingests
# lock rollup rows in one order and cannot deadlock.
_METRIC_FROM_ARRAYS = """
SELECT * FROM unnest(%(o)s::uuid[], %(n)s::text[], %(w)s::interval[], %(b)s::timestamptz[],
                     %(c)s::bigint[], %(s)s::float8[], %(mn)s::float8[], %(mx)s::float8[])
"""

_EVENT_FROM_ARRAYS = """
SELECT * FROM unnest(%(o)s::uuid[], %(t)s::text[], %(w)s::interval[], %(b)s::timestamptz[], %(c)s::bigint[])
"""

# A refresh groups raw rows into the finest buckets once, then regroups those
# into every width.
_METRIC_FROM_RAW = """
SELECT fine.o, fine.n, w.width, date_bin(w.width, fine.b, %(origin)s),
       sum(fine.c), sum(fine.s), min(fine.mn), max(fine.mx)
FROM (
    SELECT organization_id, name, date_bin(%(finest)s, "timestamp", %(origin)s),
           count(*), sum(value), min(value), max(value)
    FROM analytics_metric WHERE "timestamp" >= %(since)s
    GROUP BY 1, 2, 3
) AS fine(o, n, b, c, s, mn, mx)
CROSS JOIN unnest(%(widths)s::interval[]) AS w(width)
GROUP BY 1, 2, 3, 4
"""

_EVENT_FROM_RAW = """
SELECT fine.o, fine.t, w.width, date_bin(w.width, fine.b, %(origin)s), sum(fine.c)
FROM (
    SELECT organization_id, event_type, date_bin(%(finest)s, occurred_at, %(origin)s), count(*)
    FROM analytics_event WHERE occurred_at >= %(since)s
    GROUP BY 1, 2, 3
) AS fine(o, t, b, c)
CROSS JOIN unnest(%(widths)s::interval[]) AS w(width)
GROUP BY 1, 2, 3, 4
"""


def bucket_floor(moment: datetime, width: timedelta) -> datetime:
    """The start of the bucket of ``width`` holding ``moment`` (as ``date_bin`` computes it)."""
    return moment - (moment - ROLLUP_ORIGIN) % width


def hold_ingest_lock() -> None:
    """Keep refreshes out until the current transaction ends (shared: ingests run side by side)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_ROLLUP_LOCK_KEY])


def _columns(aggregates: dict) -> dict[str, list]:
    keys = sorted(aggregates)
    return {
        "o": [k[0] for k in keys],
        "series": [k[1] for k in keys],
        "w": [k[2] for k in keys],
        "b": [k[3] for k in keys],
        "values": [aggregates[k] for k in keys],
    }


def metric_rollups_add(*, aggregates: MetricAggregates) -> None:
    """Add a batch's aggregates (every width, see ``analytics.ingest``) to the rollups."""
    if not aggregates:
        return
    columns = _columns(aggregates)
    values = columns.pop("values")
    params = {
        "n": columns.pop("series"),
        **columns,
        "c": [v[0] for v in values],
        "s": [v[1] for v in values],
        "mn": [v[2] for v in values],
        "mx": [v[3] for v in values],
    }
    with connection.cursor() as cursor:
        cursor.execute(_METRIC_UPSERT.format(select=_METRIC_FROM_ARRAYS), params)


def event_rollups_add(*, aggregates: EventAggregates) -> None:
    """Add a batch's event counts (every width) to the rollups."""
    if not aggregates:
        return
    columns = _columns(aggregates)
    params = {"t": columns.pop("series"), "c": columns.pop("values"), **columns}
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_UPSERT.format(select=_EVENT_FROM_ARRAYS), params)


@dataclass(frozen=True)
class RefreshResult:
    since: datetime
    metric_buckets: int
    event_buckets: int


def rollups_refresh(*, since: datetime) -> RefreshResult:
    """Recompute every rollup bucket from ``since`` (rounded down to the coarsest width) on.

    Idempotent. Buckets before ``since`` are left alone, so rollups outlive
    raw rows removed by ``prune_analytics``.
    """
    since = bucket_floor(since, COARSEST_WIDTH)
    params = {"since": since, "finest": FINEST_WIDTH, "origin": ROLLUP_ORIGIN, "widths": list(ROLLUP_WIDTHS)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ROLLUP_LOCK_KEY])
        cursor.execute("DELETE FROM analytics_metricrollup WHERE bucket >= %s", [since])
        cursor.execute(_METRIC_UPSERT.format(select=_METRIC_FROM_RAW), params)
        metric_buckets = cursor.rowcount
        cursor.execute("DELETE FROM analytics_eventrollup WHERE bucket >= %s", [since])
        cursor.execute(_EVENT_UPSERT.format(select=_EVENT_FROM_RAW), params)
        event_buckets = cursor.rowcount
        cursor.execute(
            "SELECT organization_id FROM analytics_metricrollup WHERE bucket >= %s"
            " UNION SELECT organization_id FROM analytics_eventrollup WHERE bucket >= %s",
            [since, since],
        )
        invalidate_on_commit(row[0] for row in cursor.fetchall())
    return RefreshResult(since=since, metric_buckets=metric_buckets, event_buckets=event_buckets)
