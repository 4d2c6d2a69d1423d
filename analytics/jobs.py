"""Background jobs of analytics: rollups and retention (docs/jobs.md, docs/analytics.md)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from procrastinate.contrib.django import app

from analytics.rollups import rollups_refresh
from analytics.services import analytics_prune

logger = logging.getLogger(__name__)

# Each run recomputes this far back: events arrive late (webhooks, retried
# ingests), and a run that was missed is covered by the next one.
ROLLUP_REFRESH_WINDOW = timedelta(hours=2)


@app.periodic(cron=settings.SCHEDULE_REFRESH_ROLLUPS)
@app.task(queue="system", lock="refresh_rollups")
def refresh_rollups(timestamp: int) -> None:
    """Fold raw events and metrics written outside the ingest path into the rollups the dashboard reads."""
    result = rollups_refresh(since=timezone.now() - ROLLUP_REFRESH_WINDOW)
    logger.info(
        "rollups refreshed since %s: %d metric buckets, %d event buckets",
        result.since.isoformat(), result.metric_buckets, result.event_buckets,
    )  # fmt: skip


@app.periodic(cron=settings.SCHEDULE_PRUNE_ANALYTICS)
@app.task(queue="system", lock="prune_analytics")
def prune_analytics(timestamp: int) -> None:
    """Delete raw events and metrics older than ``ANALYTICS_RETENTION_DAYS`` (rollups stay)."""
    result = analytics_prune(before=timezone.now() - timedelta(days=settings.ANALYTICS_RETENTION_DAYS))
    logger.info("analytics pruned: %d metrics, %d events", result.metrics, result.events)
