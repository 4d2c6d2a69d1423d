"""System jobs: Procrastinate on our PostgreSQL, and the apps' own worker loops beside it.

Each app declares its jobs in ``<app>/jobs.py`` next to its services, with
``app.task`` and, for periodic ones, ``app.periodic(cron=settings.SCHEDULE_…)``;
Procrastinate's Django app imports every ``jobs.py`` at start-up
(``PROCRASTINATE_AUTODISCOVER_MODULE_NAME``). An app whose work has a queue
of its own (the agents' task table) registers its loop with
:func:`register_runner`, and ``run_worker`` runs it in a thread of the same
process. The platform names no domain app: they come to it.

docs/jobs.md explains the choice of Procrastinate (measured in
docs/benchmarks.md), the scheduler, and crash recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings
from procrastinate import JobContext, PsycopgConnector
from procrastinate.contrib.django import app
from procrastinate.contrib.django.utils import connector_params
from procrastinate.tasks import Task

from companyos.foundation.db import session_alias

logger = logging.getLogger("companyos.jobs")


class Runner(Protocol):
    """A worker loop of an app's own: ``run()`` blocks until ``stop()`` is called (from another thread)."""

    def run(self) -> object: ...

    def stop(self) -> None: ...


# name -> factory taking the concurrency the worker was started with.
RUNNERS: dict[str, Callable[[int], Runner]] = {}


def register_runner(name: str, factory: Callable[[int], Runner]) -> None:
    """Have every ``run_worker`` process run ``factory(concurrency).run()`` in a thread."""
    RUNNERS[name] = factory


def waiting_connector() -> PsycopgConnector:
    """The connector of the processes that wait for jobs (``run_worker``, ``run_scheduler``).

    Queueing a job goes through Procrastinate's Django connector on
    ``default``, in the caller's transaction: the job commits with the row it
    is about, through PgBouncer too. Waiting needs LISTEN, which only a
    session of its own hears: past the pooler when ``DATABASE_DIRECT_URL`` is set.
    """
    return PsycopgConnector(kwargs=connector_params(session_alias()))


def defer_job_sql(args: str) -> str:
    """An SQL expression queueing a job, with the task parameters of :func:`job_to_defer`.

    ``args`` is an SQL expression for the task's keyword arguments (jsonb),
    so they may come from the statement's own rows. The job goes through
    Procrastinate's own defer function (its insert's trigger sends the NOTIFY
    that wakes a worker): a statement that writes a row and queues its job
    with this expression commits both or neither, in one round trip.
    """
    return (
        "procrastinate_defer_jobs_v1(ARRAY[ROW(%(job_queue)s, %(job_task)s, %(job_priority)s, %(job_lock)s,"
        f" %(job_queueing_lock)s, {args}, %(job_scheduled_at)s)::procrastinate_job_to_defer_v1])"
    )


def job_to_defer(task: Task) -> dict[str, Any]:
    """The parameters of :func:`defer_job_sql` for a job of ``task``: its queue, lock and priority."""
    job = task.configure().job
    return {
        "job_queue": job.queue,
        "job_task": job.task_name,
        "job_priority": job.priority,
        "job_lock": job.lock,
        "job_queueing_lock": job.queueing_lock,
        "job_scheduled_at": job.scheduled_at,
    }


@app.periodic(cron=settings.SCHEDULE_RETRY_STALLED_JOBS)
@app.task(queue="system", pass_context=True, lock="retry_stalled_jobs")
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put back in the queue the jobs of workers that stopped sending heartbeats (killed, lost).

    A job is retried once per stall: it leaves ``doing`` here, and only a
    live worker can take it again.
    """
    stalled = await context.app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.JOBS_STALLED_WORKER_SECONDS
    )
    for job in stalled:
        logger.warning("job %s (%s) of a silent worker goes back to the queue", job.id, job.task_name)
        await context.app.job_manager.retry_job(job)
    return len(stalled)


@app.periodic(cron=settings.SCHEDULE_PRUNE_JOBS)
@app.task(queue="system", pass_context=True, lock="prune_jobs")
async def prune_jobs(context: JobContext, timestamp: int) -> None:
    """Delete finished jobs older than ``JOBS_RETENTION_DAYS`` (failed ones too: they are logged)."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=settings.JOBS_RETENTION_DAYS * 24, include_failed=True, include_cancelled=True
    )


@app.task(queue="bench")
def bench_noop() -> None:
    """Nothing: the unit of work of ``manage.py bench_worker``, so it measures the queue itself."""
