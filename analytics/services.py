"""Write paths of analytics beyond ingest: retention.

Ingest lives in ``analytics.ingest``, rollup maintenance in ``analytics.rollups``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from analytics.models import Event, EventRollup, Metric, MetricRollup
from companyos.foundation.batches import delete_in_batches


@dataclass(frozen=True)
class PruneResult:
    metrics: int
    events: int
    metric_rollups: int
    event_rollups: int


def analytics_prune(
    *, before: datetime, rollups_before: datetime | None = None, batch_size: int = 50_000
) -> PruneResult:
    """Remove raw metrics and events older than ``before`` (and rollups older than ``rollups_before``).

    Rollups are kept by default: they are a few hundred rows per series and
    day, and keep long-range charts working after raw rows are gone.
    """
    metrics = delete_in_batches(Metric.objects.filter(timestamp__lt=before), batch_size)
    events = delete_in_batches(Event.objects.filter(occurred_at__lt=before), batch_size)
    metric_rollups = event_rollups = 0
    if rollups_before:
        metric_rollups = delete_in_batches(MetricRollup.objects.filter(bucket__lt=rollups_before), batch_size)
        event_rollups = delete_in_batches(EventRollup.objects.filter(bucket__lt=rollups_before), batch_size)
    return PruneResult(metrics=metrics, events=events, metric_rollups=metric_rollups, event_rollups=event_rollups)
