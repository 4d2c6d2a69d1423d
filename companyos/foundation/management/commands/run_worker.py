"""``manage.py run_worker``: the one background worker (docs/jobs.md).

One process runs the system jobs (Procrastinate, on asyncio; sync jobs in
threads) and every app's own worker loop registered with
:func:`companyos.foundation.jobs.register_runner` (the agent tasks), each in a
thread. Periodic jobs are deferred by ``run_scheduler``, not here.

SIGTERM or SIGINT: no new job or task is taken; the running ones finish,
agent tasks claimed but not started are handed back, then it exits. A worker
killed outright stops sending heartbeats: ``retry_stalled_jobs`` puts its
jobs back in the queue, and its agent tasks' leases run out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from procrastinate import worker as procrastinate_worker
from procrastinate.contrib.django import app

from companyos.foundation.jobs import RUNNERS, waiting_connector

logger = logging.getLogger("companyos.jobs")


class JobWorker(procrastinate_worker.Worker):
    """Procrastinate's worker without its periodic deferrer: ``run_scheduler`` does that, on its own."""

    async def _periodic_deferrer(self) -> None:
        return None


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
            worker = JobWorker(
                app=app,
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

            def stop() -> None:
                logger.info("worker %s stopping: finishing the running jobs and tasks", name)
                worker.stop()
                for runner in runners:
                    runner.stop()

            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop)
            for thread in threads:
                thread.start()
            try:
                await worker.run()
            finally:
                stop()
                # A runner finishes its running task before returning.
                await asyncio.gather(*(asyncio.to_thread(thread.join) for thread in threads))
