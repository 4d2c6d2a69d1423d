"""``manage.py run_worker``: the one background worker (docs/jobs.md).

One process runs the system jobs (Procrastinate, on asyncio; sync jobs in
threads) and every app's own worker loop registered with
:func:`companyos.foundation.jobs.register_runner` (the agent tasks), each in a
thread. Periodic jobs are deferred by ``run_scheduler``, not here.

SIGTERM or SIGINT: no new job or task is taken; the running ones finish,
agent tasks claimed but not started are handed back, then it exits. A worker
killed outright stops sending heartbeats: ``retry_stalled_jobs`` puts its
jobs back in the queue, and its agent tasks' leases run out.

Procrastinate's worker ends at its first database error (a fetch, a
heartbeat, its listener): a failover or a restarted server would stop the
whole process, agent tasks too. So the jobs' worker is started again, after
a pause that doubles while it keeps failing, and the agent runners, which
reconnect on their own, go on meanwhile. A job's outcome that a lost
connection kept from being written is written again (``JobWorker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from procrastinate import worker as procrastinate_worker
from procrastinate.contrib.django import app
from procrastinate.exceptions import ConnectorException
from procrastinate.jobs import Job

from companyos.foundation.db import connection_lost, error_summary
from companyos.foundation.jobs import RUNNERS, Supervisor, requeue_stalled_jobs, waiting_connector

logger = logging.getLogger("companyos.jobs")

# The pauses before recording a job's outcome again after a lost connection: the first, and the longest.
RECORD_RETRY_FIRST_SECONDS = 0.2
RECORD_RETRY_MAX_SECONDS = 5.0


# A job read back after a lost connection: whether this worker still runs this attempt of it (writing
# the outcome, or a retry, counts the attempt; the retry may already be running here again).
_JOB_HELD_SQL = "SELECT status::text AS status, worker_id, attempts FROM procrastinate_jobs WHERE id = %(job_id)s"


class JobWorker(procrastinate_worker.Worker):
    """Procrastinate's worker without its periodic deferrer (``run_scheduler`` does that, on its own),
    which records a job's outcome again after a lost connection, and which, on starting, returns to
    the queue the jobs that workers gone before it left ``doing``."""

    def __init__(self, *, replaces: Sequence[JobWorker] = (), **options: Any) -> None:
        super().__init__(**options)
        # This process's jobs' workers that ended before this one.
        self._replaces = replaces

    async def run(self) -> None:
        """Take over from the workers this one replaces, then run.

        One that ended on a database error can leave a job ``doing`` that it no
        longer runs: its fetch committed but the answer was lost, or the outcome
        was still being retried when it stopped. ``retry_stalled_jobs`` would
        return such a job once its heartbeat is stale, a minute or more later;
        the job's ``lock`` holds back every job with the same lock meanwhile.
        So a worker that could not unregister itself (the database was down)
        is unregistered now, and every job left by a worker that is gone goes
        back to the queue before this one fetches.
        """
        for ended in self._replaces:
            if ended.worker_id is not None:
                await self.app.job_manager.unregister_worker(ended.worker_id)
                ended.worker_id = None
        await requeue_stalled_jobs(self.app.job_manager)
        await super().run()

    async def _periodic_deferrer(self) -> None:
        return None

    async def _persist_job_status(self, **outcome: Any) -> None:
        """Record a finished job's status (or its retry), again after each lost connection until it
        is written or the worker stops.

        Procrastinate's own call gives up at the first error: the job then stays ``doing`` under a
        worker that is alive and sends heartbeats, so ``retry_stalled_jobs`` never returns it, and
        its ``lock`` blocks every later job holding the same lock until the process restarts. The
        failed attempt may have committed before its connection went, so a retry first reads the job
        back and writes only if this worker still runs that attempt of it.
        """
        job = outcome["job"]
        pause, again = RECORD_RETRY_FIRST_SECONDS, False
        while True:
            try:
                if not again or await self._still_running_here(job):
                    await super()._persist_job_status(**outcome)
                return
            except ConnectorException as error:
                if not connection_lost(error) or self._stop_event.is_set():
                    raise
                logger.warning(
                    "job %s (%s): could not record its outcome; retrying in %g s (%s)",
                    job.id, job.task_name, pause, error_summary(error),
                )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), pause)
            pause, again = min(pause * 2, RECORD_RETRY_MAX_SECONDS), True

    async def _still_running_here(self, job: Job) -> bool:
        rows = await self.app.connector.execute_query_all_async(_JOB_HELD_SQL, job_id=job.id)
        held = ("doing", self.worker_id, job.attempts)
        return bool(rows) and (rows[0]["status"], rows[0]["worker_id"], rows[0]["attempts"]) == held


class Command(BaseCommand):
    help = "Run system jobs and agent tasks until SIGTERM/SIGINT, which lets the running ones finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency", type=int, default=2,
            help="System jobs run at once, and agent tasks run at once (threads each). Default 2.",
        )  # fmt: skip
        parser.add_argument(
            "--queue", action="append", default=[], metavar="NAME", help="Only jobs of this queue (repeatable)."
        )
        parser.add_argument(
            "--without", action="append", default=[], metavar="RUNNER", choices=sorted(RUNNERS),
            help=f"Do not run this app's worker loop (repeatable; one of {', '.join(sorted(RUNNERS))}).",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.")
        name = f"{socket.gethostname()}:{os.getpid()}"
        runners = {
            runner: factory(options["concurrency"])
            for runner, factory in RUNNERS.items()
            if runner not in options["without"]
        }
        threads = [threading.Thread(target=runner.run, name=runner_name) for runner_name, runner in runners.items()]
        with app.replace_connector(waiting_connector()):
            asyncio.run(self._serve(name, options, runners.values(), threads))
        self.stdout.write(f"Worker {name} stopped.")

    async def _serve(self, name: str, options: dict, runners: Any, threads: list[threading.Thread]) -> None:
        async with app.open_async():
            app.perform_import_paths()

            workers: list[JobWorker] = []

            def new_worker() -> JobWorker:
                worker = JobWorker(
                    app=app,
                    replaces=list(workers),
                    **{
                        **app.worker_defaults,
                        "name": name,
                        "queues": options["queue"] or None,
                        "concurrency": options["concurrency"],
                        "install_signal_handlers": False,  # ours stop the runners too
                        "fetch_job_polling_interval": settings.JOBS_POLL_SECONDS,
                        "update_heartbeat_interval": settings.JOBS_HEARTBEAT_SECONDS,
                        "stalled_worker_timeout": settings.JOBS_STALLED_WORKER_SECONDS,
                    },
                )
                workers.append(worker)
                return worker

            jobs = Supervisor(f"worker {name}", "the jobs' worker", new_worker)

            def stop() -> None:
                if jobs.stopping:
                    return
                logger.info("worker %s stopping: finishing the running jobs and tasks", name)
                jobs.stop()
                for runner in runners:
                    runner.stop()

            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop)
            for thread in threads:
                thread.start()
            try:
                await jobs.run()
            finally:
                stop()
                # A runner finishes its running task before returning.
                await asyncio.gather(*(asyncio.to_thread(thread.join) for thread in threads))
