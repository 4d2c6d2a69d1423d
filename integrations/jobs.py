"""Background jobs of the webhook intake (docs/jobs.md, docs/webhooks.md)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from procrastinate.contrib.django import app
from procrastinate.exceptions import ConnectorException

from integrations.services import (
    webhook_deliveries_process_pending,
    webhook_deliveries_prune,
    webhook_delivery_process,
)

logger = logging.getLogger(__name__)


@app.task(queue="webhooks")
def process_delivery(delivery_pk: str) -> None:
    """Apply one stored delivery; deferred by the webhook view when it answers.

    Locking the delivery with SKIP LOCKED in the service makes a second run
    (a retried stalled job, the sweep below) a no-op.
    """
    webhook_delivery_process(delivery_pk=uuid.UUID(delivery_pk))


def defer_delivery_processing(delivery_pk: uuid.UUID) -> None:
    """Queue :func:`process_delivery`; its NOTIFY wakes a worker at once.

    The delivery is already stored: if queueing fails, the periodic sweep
    below applies it, so the provider still gets its 202.
    """
    try:
        process_delivery.defer(delivery_pk=str(delivery_pk))
    except ConnectorException:
        logger.exception("Could not queue webhook delivery %s; the sweep will apply it", delivery_pk)


@app.periodic(cron=settings.SCHEDULE_PROCESS_WEBHOOK_DELIVERIES)
@app.task(queue="webhooks", lock="process_pending_deliveries")
def process_pending_deliveries(timestamp: int) -> int:
    """Apply whatever is still ``received``: a delivery whose job could not be deferred, or failed."""
    total = 0
    while processed := webhook_deliveries_process_pending(limit=100):
        total += processed
    return total


@app.periodic(cron=settings.SCHEDULE_PRUNE_WEBHOOK_DELIVERIES)
@app.task(queue="system", lock="prune_webhook_deliveries")
def prune_webhook_deliveries(timestamp: int) -> int:
    """Delete delivery log rows older than ``WEBHOOK_DELIVERY_RETENTION_DAYS``."""
    return webhook_deliveries_prune(older_than=timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS))
