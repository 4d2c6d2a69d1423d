"""Background jobs of the webhook intake (docs/jobs.md, docs/webhooks.md)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from procrastinate import RetryStrategy
from procrastinate.contrib.django import app

from companyos.foundation.db import CONNECTION_LOST

# The module, not its functions: the services queue process_delivery, so they import this module too.
from integrations import services

# A delivery whose connection was lost (a failover, a restarted server) is applied again once the
# database is back, after 2, 4, 8, 16 and 32 s, rather than at the sweep's next period.
CONNECTION_RETRY = RetryStrategy(max_attempts=5, exponential_wait=2, retry_exceptions=CONNECTION_LOST)


@app.task(queue="webhooks", retry=CONNECTION_RETRY)
def process_delivery(delivery_pk: str) -> None:
    """Apply one stored delivery; queued by the statement that stored it (``webhook_delivery_record``).

    Locking the delivery with SKIP LOCKED in the service makes a second run
    (a retried stalled job, the sweep below) a no-op.
    """
    services.webhook_delivery_process(delivery_pk=uuid.UUID(delivery_pk))


@app.periodic(cron=settings.SCHEDULE_PROCESS_WEBHOOK_DELIVERIES)
@app.task(queue="webhooks", lock="process_pending_deliveries")
def process_pending_deliveries(timestamp: int) -> int:
    """Apply whatever is still ``received``: a delivery whose job failed or was lost."""
    total = 0
    while processed := services.webhook_deliveries_process_pending(limit=100):
        total += processed
    return total


@app.periodic(cron=settings.SCHEDULE_PRUNE_WEBHOOK_DELIVERIES)
@app.task(queue="system", lock="prune_webhook_deliveries")
def prune_webhook_deliveries(timestamp: int) -> int:
    """Delete delivery log rows older than ``WEBHOOK_DELIVERY_RETENTION_DAYS``."""
    return services.webhook_deliveries_prune(older_than=timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS))
