"""The agent queue in the background worker (docs/jobs.md, docs/agents.md).

Agent tasks keep their own table and state machine (agents/queue.py): the
worker runs :class:`agents.worker.Worker` in a thread beside the system jobs.
"""

from __future__ import annotations

import logging

from django.conf import settings
from procrastinate.contrib.django import app

from agents import services
from agents.worker import Worker
from companyos.foundation.jobs import register_runner

logger = logging.getLogger(__name__)

register_runner("agents", lambda concurrency: Worker(concurrency=concurrency))


@app.periodic(cron=settings.SCHEDULE_REQUEUE_AGENT_LEASES)
@app.task(queue="system", lock="requeue_agent_leases")
def requeue_expired_agent_leases(timestamp: int) -> int:
    """Retry (or fail, when out of attempts) tasks whose worker stopped renewing the lease."""
    requeued = services.tasks_requeue_expired_leases()
    for task in requeued:
        logger.warning("task %s: lease of worker %s expired, now %s", task.pk, task.worker_id, task.status)
    return len(requeued)
