"""Background jobs of the staff console: history retention (docs/jobs.md, docs/admin.md)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from procrastinate.contrib.django import app

from companyos.foundation.console.history import history_prune


@app.periodic(cron=settings.SCHEDULE_PRUNE_HISTORY)
@app.task(queue="system", lock="prune_history")
def prune_history(timestamp: int) -> int:
    """Delete change history older than ``HISTORY_RETENTION_DAYS``."""
    return history_prune(before=timezone.now() - timedelta(days=settings.HISTORY_RETENTION_DAYS))
