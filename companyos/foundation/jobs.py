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

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from django.conf import settings
from procrastinate import JobContext, PsycopgConnector
from procrastinate.contrib.django import app
from procrastinate.contrib.django.utils import connector_params
from procrastinate.exceptions import ConnectorException
from procrastinate.manager import JobManager
from procrastinate.tasks import Task

from companyos.foundation.db import connection_lost, error_summary, session_alias

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


# The pauses before starting a loop of Procrastinate's again: the first, and the
# longest while it keeps failing. A run this long counts as recovered.
RESTART_FIRST_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
RECOVERED_AFTER_SECONDS = 60.0


class Loop(Protocol):
    """One of Procrastinate's loops (its worker, its periodic deferrer), as :class:`Supervisor` runs it."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Supervisor:
    """Runs a loop of Procrastinate's until stopped, starting a new one whenever it ends on a database error.

    Procrastinate's worker and periodic deferrer end at their first one (a
    failover, a restarted server); the process that runs them must go on.
    """

    def __init__(self, name: str, loop_name: str, new_loop: Callable[[], Loop]) -> None:
        self._name = name
        self._loop_name = loop_name
        self._new_loop = new_loop
        self._stopping = asyncio.Event()
        self._loop: Loop | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        if self._loop is not None:
            self._loop.stop()

    async def run(self) -> None:
        event_loop = asyncio.get_running_loop()
        pause = RESTART_FIRST_SECONDS
        while not self.stopping:
            # Nothing awaits between the check above and run() taking the loop: a stop cannot fall in between.
            self._loop = loop = self._new_loop()
            started = event_loop.time()
            error: Exception | None = None
            try:
                await loop.run()
            except (ConnectorException, psycopg.Error) as exc:
                error = exc
            if self.stopping:
                return
            if event_loop.time() - started >= RECOVERED_AFTER_SECONDS:
                pause = RESTART_FIRST_SECONDS
            # Without an error, one of its side tasks (heartbeat, listener) failed and stopped it (logged there).
            cause = f"a database error ({error_summary(error)})" if error else "a failed side task"
            logger.warning("%s: %s ended on %s; starting it again in %g s", self._name, self._loop_name, cause, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(pause * 2, RESTART_MAX_SECONDS)


def waiting_connector() -> PsycopgConnector:
    """The connector of the processes that wait for jobs (``run_worker``, ``run_scheduler``).

    Queueing a job goes through Procrastinate's Django connector on
    ``default``, in the caller's transaction: the job commits with the row it
    is about, through PgBouncer too. Waiting needs LISTEN, which only a
    session of its own hears: past the pooler when ``DATABASE_DIRECT_URL`` is set.
    Its pool waits for a connection as long as Django's (``DATABASE_POOL_TIMEOUT``),
    not psycopg's 30 s: a worker stopped while the database is down waits that
    long for each of its own statements still to go (a fetch, unregistering).
    """
    return PsycopgConnector(kwargs=connector_params(session_alias()), timeout=settings.DATABASE_POOL_TIMEOUT)


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
    """Put back in the queue the jobs of workers that stopped sending heartbeats (killed, lost)."""
    return await requeue_stalled_jobs(context.app.job_manager)


async def requeue_stalled_jobs(job_manager: JobManager) -> int:
    """Put back in the queue the ``doing`` jobs of workers that stopped sending heartbeats or are
    gone (unregistered with jobs in hand); how many.

    A job is retried once per stall: it leaves ``doing`` here, and only a
    live worker can take it again. Two processes may do this at once (a
    restarted jobs' worker does it too): a job the other returned first is
    skipped.
    """
    requeued = 0
    for job in await job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.JOBS_STALLED_WORKER_SECONDS):
        try:
            await job_manager.retry_job(job)
        except ConnectorException as error:
            if connection_lost(error):
                raise
            continue  # no longer doing: returned by the other, or finished meanwhile
        logger.warning("job %s (%s) of a silent worker goes back to the queue", job.id, job.task_name)
        requeued += 1
    return requeued


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
