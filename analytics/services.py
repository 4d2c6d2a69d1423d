"""Write paths of analytics beyond ingest: retention.

Ingest lives in ``analytics.ingest``, rollup maintenance in ``analytics.rollups``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from analytics.models import Event, EventRollup, Metric, MetricRollup


@dataclass(frozen=True)
class PruneResult:
    metrics: int
    events: int
    metric_rollups: int
    event_rollups: int


def _delete_in_batches(model, time_column: str, before: datetime, batch_size: int) -> int:
    """Delete rows older than ``before`` a batch per transaction, so locks and WAL stay small.

    Raw SQL rather than ``QuerySet.delete()``: the collector would load every
    row to look for cascades, and nothing points at these tables.
    """
    table = model._meta.db_table
    # By physical row address: works for the composite-key rollup tables too.
    sql = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - names come from model metadata
        f'SELECT ctid FROM {table} WHERE "{time_column}" < %s LIMIT %s))'
    )
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [before, batch_size])
            deleted += cursor.rowcount
            if cursor.rowcount < batch_size:
                return deleted


def analytics_prune(
    *, before: datetime, rollups_before: datetime | None = None, batch_size: int = 50_000
) -> PruneResult:
    """Remove raw metrics and events older than ``before`` (and rollups older than ``rollups_before``).

    Rollups are kept by default: they are a few hundred rows per series and
    day, and keep long-range charts working after raw rows are gone.
    """
    return PruneResult(
        metrics=_delete_in_batches(Metric, "timestamp", before, batch_size),
        events=_delete_in_batches(Event, "occurred_at", before, batch_size),
        metric_rollups=_delete_in_batches(MetricRollup, "bucket", rollups_before, batch_size) if rollups_before else 0,
        event_rollups=_delete_in_batches(EventRollup, "bucket", rollups_before, batch_size) if rollups_before else 0,
    )
